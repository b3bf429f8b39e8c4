"""Safe outputs: every command writes its outputs through this module.

Three rules keep a user's data safe:

1. **Never write onto an input.** An output equal to, inside, or containing any input of the
   run is refused (:func:`check_not_input`).
2. **Only replace what this command made.** Every store a command writes carries a marker,
   ``attrs[ATTRS_KEY]["command"]`` (:data:`ATTRS_KEY`, defined here and re-exported by
   :mod:`phirm_scale.plate`); ``--overwrite`` replaces an existing output only when it
   carries the marker of the *same* command (:func:`existing_output`, :func:`remove_output`).
   Plates, TIFF folders, other commands' stores, foreign stores and non-empty foreign folders
   are refused with one line.
3. **One writer per output.** A run holds an exclusive lock file ``<output>.lock`` (host, PID,
   start time, command) for its whole duration (:func:`output_lock`). A second writer is
   refused naming the holder; a lock left by a killed run (same host, PID not alive) is taken
   over with a logged line, atomically: of several runs finding it at once, one takes it.

Whole-store and whole-file outputs (QC store, tile store, tables, ``run.json``) are written to
``<output>.partial`` and renamed (:func:`atomic_store`, from the zarr-free
:mod:`phirm_scale._atomic`, which checkpoints use too), so a failed write never leaves a half
output under the output name.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from phirm_scale._atomic import atomic_store
from phirm_scale.errors import OutputError

__all__ = [
    "ATTRS_KEY",
    "check_not_input",
    "store_command",
    "existing_output",
    "remove_output",
    "mark_store",
    "mark_folder",
    "marker_attrs",
    "output_lock",
    "lock_path",
    "atomic_store",
    "prepare_output",
    "guard_output",
    "check_output_folder",
    "check_inputs_not_locked",
]

log = logging.getLogger(__name__)

#: Key of phirm-scale's own attributes in every group it writes (provenance, markers); the
#: plate module uses it too (:data:`phirm_scale.plate.ATTRS_KEY`, the same object).
ATTRS_KEY = "phirm_scale"


# Stores written before the explicit marker existed: recognised by their provenance key.
_LEGACY = {
    "convert": lambda a: "convert" in a.get(ATTRS_KEY, {}),
    "inpaint": lambda a: "inpaint" in a.get(ATTRS_KEY, {}),
    "make-plate": lambda a: "synthetic" in a.get(ATTRS_KEY, {}),
    "tiles": lambda a: str(a.get("format", "")).startswith("phirm-scale-tiles/"),
    "score": lambda a: a.get("software") == "phirm-scale" and "threshold" in a,
}


def _resolve(p: str | Path) -> Path:
    return Path(os.path.abspath(Path(p).expanduser())).resolve()


def check_not_input(
    output: str | Path, inputs: Iterable[str | Path | None], *, what: str = "output"
) -> None:
    """Refuse an ``output`` equal to, inside, or containing any of ``inputs``."""
    out = _resolve(output)
    for inp in inputs:
        if inp is None:
            continue
        src = _resolve(inp)
        if out == src:
            raise OutputError(
                f"{output}: the {what} is an input of this run ({inp}); choose another output path"
            )
        if src in out.parents:
            raise OutputError(
                f"{output}: the {what} lies inside the input {inp}; choose a path outside it"
            )
        if out in src.parents:
            raise OutputError(
                f"{output}: the {what} contains the input {inp}; choose another output path"
            )


def _root_attrs(path: Path) -> dict[str, Any] | None:
    for name in ("zarr.json", ".zattrs"):
        f = path / name
        if f.is_file():
            try:
                meta = json.loads(f.read_text())
            except (OSError, ValueError):
                return {}
            return dict(meta.get("attributes", {})) if name == "zarr.json" else dict(meta)
    if (path / ".zgroup").is_file():
        return {}
    return None


def store_command(path: str | Path) -> str | None:
    """Return the phirm-scale command that made the store at ``path`` (its marker), else None."""
    path = Path(path)
    if not path.is_dir():
        return None
    report = path / ".phirm-scale.json"
    if report.is_file():
        try:
            return str(json.loads(report.read_text()).get("command"))
        except (OSError, ValueError, AttributeError):
            return None
    attrs = _root_attrs(path)
    if attrs is None:
        if (path / "index.html").is_file() and (path / "histogram.png").is_file():
            return "report"  # a report folder written before the marker existed
        return None
    mine = attrs.get(ATTRS_KEY)
    if isinstance(mine, Mapping) and isinstance(mine.get("command"), str):
        return mine["command"]
    for cmd, test in _LEGACY.items():
        try:
            if test(attrs):
                return cmd
        except Exception:  # noqa: BLE001 - odd attrs: not ours
            continue
    return None


def _describe(path: Path) -> str:
    if path.is_file():
        return "a file"
    if not path.is_dir():
        return "something that is not a folder"
    attrs = _root_attrs(path)
    if attrs is not None:
        if isinstance(attrs.get("ome"), Mapping) and "plate" in attrs["ome"]:
            return "an HCS plate"
        return "a Zarr store"
    if any(p.suffix.lower() in (".tif", ".tiff") for p in path.iterdir()):
        return "a TIFF folder"
    return "a folder"


def existing_output(path: str | Path, *, command: str, overwrite: bool) -> bool:
    """Check an output path before a run of ``command``.

    Returns False when nothing is there (or an empty folder), True when there is an output
    made by the same ``command`` (the caller resumes it, or replaces it with
    :func:`remove_output` when ``overwrite``). Anything else raises :class:`OutputError`:
    a plate, a TIFF folder, another command's output, a foreign store or folder, a file.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return False
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return False
    made_by = store_command(path) if not path.is_symlink() else None
    if made_by == command:
        return True
    what = _describe(path)
    if made_by is not None:
        raise OutputError(
            f"{path}: exists and is the output of `phirm-scale {made_by}`, "
            f"not of `{command}`; refusing to {'replace' if overwrite else 'use'} "
            "it (choose another output path)"
        )
    raise OutputError(
        f"{path}: exists and is {what} not made by `phirm-scale {command}`; "
        f"refusing to {'replace' if overwrite else 'write into'} it "
        "(choose another output path)"
    )


def remove_output(path: str | Path, *, command: str) -> None:
    """Delete an output made by ``command`` (re-checks the marker first; never anything else)."""
    path = Path(path)
    if existing_output(path, command=command, overwrite=True):
        shutil.rmtree(path)


def marker_attrs(command: str) -> dict[str, str]:
    """Return the marker to merge into ``attrs[ATTRS_KEY]`` of a store written by ``command``."""
    return {"command": command}


def mark_store(path: str | Path, command: str) -> None:
    """Add the marker of ``command`` to the root attributes of the Zarr store at ``path``."""
    import zarr

    g = zarr.open_group(str(path), mode="r+")
    mine = dict(cast(Mapping[str, Any], dict(g.attrs).get(ATTRS_KEY, {}) or {}))
    mine.update(marker_attrs(command))
    g.attrs.update({ATTRS_KEY: mine})


def mark_folder(path: str | Path, command: str) -> None:
    """Mark a plain output folder (e.g. a report) as made by ``command``."""
    (Path(path) / ".phirm-scale.json").write_text(json.dumps(marker_attrs(command)) + "\n")


# --------------------------------------------------------------------------- lock


def lock_path(path: str | Path) -> Path:
    """Return the lock file of an output: ``<output>.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _read_lock(lp: Path) -> dict[str, Any] | None:
    try:
        return json.loads(lp.read_text())
    except (OSError, ValueError):
        return None


_HELD: dict[Path, int] = {}


@contextlib.contextmanager
def output_lock(path: str | Path, *, command: str) -> Iterator[Path]:
    """Hold the exclusive lock of output ``path`` for the duration of the ``with`` block.

    The lock file ``<output>.lock`` holds host, PID, start time and command. Another live
    holder raises :class:`OutputError` naming it; a stale lock (same host, dead PID, or an
    unreadable lock older than a minute) is taken over with a logged warning.
    """
    import time

    path = Path(path)
    lp = lock_path(path)
    key = _resolve(lp)
    if _HELD.get(key):  # re-entrant within this process (a stage calling a writer)
        _HELD[key] += 1
        try:
            yield lp
        finally:
            _HELD[key] -= 1
        return
    host = socket.gethostname()
    me = {
        "host": host,
        "pid": os.getpid(),
        "command": command,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        lp.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot write the output there ({lp.parent}: "
            f"{exc.strerror or type(exc).__name__})"
        ) from None
    for _attempt in range(5):
        # the lock appears with its content at once (written beside, then hard-linked, which
        # fails if it exists): a reader never sees an empty lock file of a live run
        tmp = lp.with_name(f"{lp.name}.{host}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(me))
            try:
                os.link(tmp, lp)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        except FileExistsError:
            held = _read_lock(lp)
            if held is None:
                try:
                    old = time.time() - lp.stat().st_mtime > 60
                except FileNotFoundError:
                    continue
                if not old:
                    time.sleep(0.2)
                    continue
            if held is None or _is_stale(held, host):
                if _remove_stale_lock(lp, host):
                    log.warning(
                        "%s: taking over the stale lock %s (%s)",
                        path,
                        lp,
                        _holder(held) if held else "unreadable",
                    )
                continue  # take it (or find who took it first)
            assert held is not None  # an unreadable lock is stale or retried above
            raise OutputError(
                f"{path}: in use by another run ({_holder(held)}); wait for it "
                f"to finish, or delete {lp} if that run is gone"
            ) from None
        except FileNotFoundError:
            raise OutputError(
                f"{path}: cannot create the output there (folder {path.parent} does not exist)"
            ) from None
        except OSError as exc:
            raise OutputError(
                f"{path}: cannot write the output there ({exc.strerror or type(exc).__name__})"
            ) from None
        break
    else:
        raise OutputError(f"{path}: could not take the lock {lp}; another run keeps it")
    _HELD[key] = 1
    try:
        yield lp
    finally:
        _HELD.pop(key, None)
        held = _read_lock(lp)
        if held is not None and held.get("pid") == me["pid"] and held.get("host") == host:
            with contextlib.suppress(FileNotFoundError):
                lp.unlink()


def _is_stale(held: Mapping[str, Any], host: str) -> bool:
    """Say whether a lock's holder is gone: this host, and its PID not alive."""
    return held.get("host") == host and not _pid_alive(int(held.get("pid", -1)))


def _remove_stale_lock(lp: Path, host: str) -> bool:
    """Remove the lock file ``lp`` if, checked again, it is stale; True when removed.

    Two runs that both found the same stale lock must not both take it (the second would
    remove the lock the first had just made). The check and the removal are therefore made
    holding the kernel's lock (``flock``) on the stale file itself: takeovers of one file
    happen one after the other, and each first checks that ``lp`` is still that file (same
    inode) and still stale. A run that waited finds ``lp`` replaced and takes nothing. The
    kernel drops the ``flock`` of a run that dies, so nothing here can go stale.
    """
    import fcntl
    import time

    try:
        fd = os.open(lp, os.O_RDONLY)
    except FileNotFoundError:
        return False  # already taken over (or released)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without flock: no atomic takeover there
            raise OutputError(
                f"{lp}: a stale lock that cannot be taken over safely here (flock: "
                f"{exc.strerror or type(exc).__name__}); delete it if its run is gone"
            ) from None
        try:
            if os.stat(lp).st_ino != os.fstat(fd).st_ino:
                return False  # replaced by another run's lock since it was judged
        except FileNotFoundError:
            return False
        try:
            with os.fdopen(os.dup(fd), "r") as f:
                held = json.loads(f.read())
            stale = isinstance(held, dict) and _is_stale(held, host)
        except (OSError, ValueError):  # unreadable: stale once a minute old
            stale = time.time() - os.fstat(fd).st_mtime > 60
        if stale:
            with contextlib.suppress(FileNotFoundError):
                lp.unlink()
        return stale
    finally:
        os.close(fd)  # releases the flock


def _holder(held: Mapping[str, Any]) -> str:
    return (
        f"`phirm-scale {held.get('command', '?')}`, pid {held.get('pid', '?')} on "
        f"{held.get('host', '?')} since {held.get('started', '?')}"
    )


# --------------------------------------------------------------------------- whole stores


def prepare_output(
    path: str | Path,
    *,
    command: str,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    resumable: bool = False,
    remove: bool = True,
) -> bool:
    """Check an output before writing, as every command does (call it holding the lock).

    Refuses an output that is an input or overlaps one; refuses anything at ``path`` not made
    by ``command``. For an existing output of the same command: with ``overwrite`` it is
    deleted (returns False), else returned as True when ``resumable`` (the caller compares its
    recorded settings), else refused ("output exists; pass --overwrite"). With
    ``remove=False`` an output to overwrite is left for :func:`atomic_store` to replace once
    the new one is complete.
    """
    check_not_input(path, inputs)
    if not existing_output(path, command=command, overwrite=overwrite):
        return False
    if overwrite:
        if remove:
            remove_output(path, command=command)
        return False
    if resumable:
        return True
    raise OutputError(f"{path}: output exists (pass --overwrite to replace it)")


@contextlib.contextmanager
def guard_output(
    path: str | Path,
    *,
    command: str,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    resumable: bool = False,
    remove: bool = True,
) -> Iterator[bool]:
    """Lock ``path`` and run :func:`prepare_output` under the lock.

    The context value says whether an existing output of the same command is kept (to
    resume).
    """
    inputs = list(inputs)
    check_not_input(path, inputs)
    check_inputs_not_locked(inputs)
    existing_output(path, command=command, overwrite=overwrite)  # refuse before locking
    with output_lock(path, command=command):
        yield prepare_output(
            path,
            command=command,
            inputs=inputs,
            overwrite=overwrite,
            resumable=resumable,
            remove=remove,
        )


def check_inputs_not_locked(inputs: Iterable[str | Path | None]) -> None:
    """Refuse to read an input another live run is writing (its ``<input>.lock``)."""
    host = socket.gethostname()
    for inp in inputs:
        if inp is None:
            continue
        lp = lock_path(_resolve(inp))
        held = _read_lock(lp) if lp.exists() else None
        if held is None:
            continue
        if held.get("host") == host and not _pid_alive(int(held.get("pid", -1))):
            continue  # stale: the writer is gone (its output is checked field by field)
        raise OutputError(
            f"{inp}: is being written by another run ({_holder(held)}); wait "
            "for it to finish before reading it"
        )


def check_output_folder(path: str | Path, *, inputs: Iterable[str | Path | None] = ()) -> None:
    """Check a plain output folder (train, evaluate, validate-metric, demo).

    It must not be an input, nor inside or around one, nor a Zarr store (a plate, a QC or
    tile store).
    """
    path = Path(path)
    check_not_input(path, inputs)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder")
    if path.is_dir() and _root_attrs(path) is not None:
        raise OutputError(
            f"{path}: is {_describe(path)}; refusing to write files into it "
            "(choose another output folder)"
        )
