"""One way to write a file or a store that is never seen half written: :func:`atomic_store`.

Standard library only (no NumPy, Zarr, Dask or torch), so that every module can use it: the
outputs of the stages (:mod:`phirm_scale.outputs` re-exports it), ``run.json`` and ``run``'s
per-field results, and the checkpoints of :mod:`phirm_scale.models` (a maths module, which
never imports Zarr or Dask).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_store"]


@contextlib.contextmanager
def atomic_store(path: str | Path) -> Iterator[Path]:
    """Yield ``<path>.partial`` to write a whole store (or one file) into.

    On success it replaces ``path`` (which the caller has checked, e.g. with
    :func:`phirm_scale.outputs.existing_output`); on failure it is removed and ``path`` is
    left as it was. The one way phirm-scale writes an output that must never be seen half
    written: stores, tables, ``run.json``, checkpoints. A file replaces ``path`` atomically
    (:func:`os.replace`); a store replaces it by removing the old one, then renaming. A
    ``.partial`` left by a killed writer is removed first.

    Parameters
    ----------
    path : str or Path
        The file or store to write.

    Yields
    ------
    Path
        ``<path>.partial``: write the file or the store there.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "run.json"
    >>> with atomic_store(out) as tmp:
    ...     _ = tmp.write_text("{}")
    >>> out.read_text()
    '{}'
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink()
