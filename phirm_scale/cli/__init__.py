"""Command-line interface: a thin shell over the Python API.

Each sub-module registers its commands on :data:`phirm_scale.cli._app.app`; heavy imports
(torch, dask, zarr) happen inside the command functions so ``phirm-scale --help`` stays fast.
"""

from __future__ import annotations

import sys

from phirm_scale.cli._app import app

# Command modules, imported to register their commands (import order = order in --help,
# so the import sorter leaves them alone).
# isort: off
from phirm_scale.cli import metric as _metric  # noqa: F401 - registers commands
from phirm_scale.cli import plate as _plate  # noqa: F401 - registers commands
from phirm_scale.cli import inpaint as _inpaint  # noqa: F401 - registers commands
from phirm_scale.cli import score as _score  # noqa: F401 - registers commands
from phirm_scale.cli import run as _run  # noqa: F401 - registers commands
from phirm_scale.cli import export as _export  # noqa: F401 - registers commands
from phirm_scale.cli import train as _train  # noqa: F401 - registers commands
from phirm_scale.cli import experiment as _experiment  # noqa: F401 - registers commands
from phirm_scale.cli import demo as _demo  # noqa: F401 - registers commands
from phirm_scale.cli import cluster as _cluster  # noqa: F401 - registers commands
# isort: on

__all__ = ["app", "error_line", "main"]


def _debug_requested(argv: list[str]) -> bool:
    import os

    return "--debug" in argv or os.environ.get("PHIRM_SCALE_DEBUG", "") not in ("", "0")


_GLOBAL_FLAGS = ("--quiet", "-q", "--verbose", "-v", "-vv", "-vvv")


def _hoist_global_flags(args: list[str]) -> list[str]:
    """Move ``--quiet``/``--verbose`` written after the command to the front.

    The top-level app reads them there: ``phirm-scale convert SRC OUT -q`` is
    ``phirm-scale -q convert SRC OUT``. Nothing after ``--`` is moved.
    """
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in _GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in _GLOBAL_FLAGS]
    return flags + rest + args[end:]


def error_line(exc: BaseException) -> str:
    """Format the one ``error:`` line shown for an exception (no traceback)."""
    from phirm_scale.errors import PhirmError

    if isinstance(exc, PhirmError):
        msg = str(exc)
    elif isinstance(exc, OSError) and getattr(exc, "filename", None):
        msg = f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    elif isinstance(exc, (OSError, TimeoutError)):
        msg = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    else:
        text = str(exc).strip().splitlines()
        msg = (
            f"unexpected {type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
            + " (rerun with --debug for the traceback)"
        )
    return "error: " + " ".join(msg.split("\n")).strip()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``phirm-scale`` console script.

    Every error ends as a single ``error: ...`` line on stderr with exit status 2, never as a
    traceback. ``--debug`` anywhere on the command line, or ``PHIRM_SCALE_DEBUG=1``, prints
    the traceback before that line (still exit status 2).
    """
    import logging

    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    args = [a for a in args if a != "--debug"]
    args = _hoist_global_flags(args)
    if debug:
        logging.basicConfig(level=logging.INFO)
    try:
        app(args=args, standalone_mode=True, prog_name="phirm-scale")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except BaseException as exc:  # noqa: BLE001 - the one place that turns errors into lines
        if debug:  # the traceback, then the same error line and exit status as without
            import traceback

            traceback.print_exc()
        print(error_line(exc), file=sys.stderr)
        sys.exit(2)
