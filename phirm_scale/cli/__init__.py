"""Command-line interface: a thin shell over the Python API.

Each sub-module registers its commands on :data:`phirm_scale.cli._app.app`; heavy imports
(torch, dask, zarr) happen inside the command functions so ``phirm-scale --help`` stays fast.
"""

from __future__ import annotations

import sys

from phirm_scale.cli._app import app

# Command modules (import order = order in --help).
from phirm_scale.cli import metric as _metric  # noqa: F401,E402
from phirm_scale.cli import plate as _plate  # noqa: F401,E402
from phirm_scale.cli import inpaint as _inpaint  # noqa: F401,E402
from phirm_scale.cli import score as _score  # noqa: F401,E402
from phirm_scale.cli import run as _run  # noqa: F401,E402
from phirm_scale.cli import train as _train  # noqa: F401,E402
from phirm_scale.cli import experiment as _experiment  # noqa: F401,E402
from phirm_scale.cli import demo as _demo  # noqa: F401,E402

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``phirm-scale`` console script.

    Known user errors (bad input files, mismatched shapes, ...) are printed as a single
    ``error: ...`` line on stderr with exit status 2, never as a traceback.
    """
    from phirm_scale.errors import PhirmError

    try:
        app(args=argv, standalone_mode=True)
    except PhirmError as exc:  # pragma: no cover - exercised through subprocess tests
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
