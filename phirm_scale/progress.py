"""The one way phirm-scale reports progress and messages.

* **Progress** of a long loop (a stage's tasks, training epochs, an experiment's models) goes
  through :func:`progress_bar`: a rich bar on stderr when stderr is a terminal, plain lines
  (``convert: 3/12 (25%) 1.4 s``, at most about one per tenth of the work, and the last)
  when it is a file or a pipe, nothing when the caller passes ``enabled=False``
  (``--no-progress``) or the CLI runs with ``--quiet``.
* **Messages** go through module loggers (``log = logging.getLogger(__name__)``): ``info``
  for what a user wants to see (what a stage will do, what it skipped), ``debug`` for the
  details (tasks submitted, the cluster used), ``warning`` for what may be wrong. Used from
  Python, the library prints nothing on stdout and leaves the logging set-up to the caller;
  the CLI installs one stderr handler with :func:`configure_logging`
  (``--verbose``/``-v``: debug, default: info, ``--quiet``/``-q``: warnings only).

Results (tables, ``--json``) and the ``error:`` line are the CLI's own output, never
suppressed by ``--quiet``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["configure_logging", "is_quiet", "progress_bar", "set_quiet"]

#: Logger of the package; every module logger is a child of it.
_ROOT = "phirm_scale"

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Suppress (``True``) or allow every progress display of this process (``--quiet``)."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """Whether progress displays are suppressed (:func:`set_quiet`)."""
    return _quiet


class _StderrHandler(logging.StreamHandler):
    """A handler writing to the ``sys.stderr`` of the moment (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class _Format(logging.Formatter):
    """``message`` for info, ``WARNING: message`` for warnings, ``name: message`` for debug."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            msg += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.ERROR:
            return f"{record.levelname.lower()}: {msg}"
        if record.levelno >= logging.WARNING:
            return f"WARNING: {msg}"  # loud, as docs/cli.md shows it
        if record.levelno < logging.INFO:
            return f"{record.name}: {msg}"
        return msg


def configure_logging(verbosity: int = 0) -> Callable[[], None]:
    """Send the package's log records to stderr at the CLI's level.

    Parameters
    ----------
    verbosity : int
        ``-1`` (``--quiet``): warnings and errors only, and no progress displays; ``0``:
        info; ``1`` or more (``--verbose``): debug.

    Returns
    -------
    callable
        Restores the logging set-up found before (the CLI calls it when the command ends, so
        a command run in-process leaves the caller's logging as it was).
    """
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logger = logging.getLogger(_ROOT)
    before = (list(logger.handlers), logger.level, logger.propagate, _quiet)
    for h in list(logger.handlers):
        if isinstance(h, _StderrHandler):
            logger.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(_Format())
    handler.setLevel(level)  # also filters records of a child logger set lower
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # one line per record, whatever the root logger has
    set_quiet(verbosity < 0)

    def restore() -> None:
        handlers, lvl, propagate, quiet = before
        for h in list(logger.handlers):
            logger.removeHandler(h)
        for h in handlers:
            logger.addHandler(h)
        logger.setLevel(lvl)
        logger.propagate = propagate
        set_quiet(quiet)

    return restore


def _rich_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    p = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=False,
    )
    p.start()
    try:
        tid = p.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            p.advance(tid, n)

        yield advance
    finally:
        p.stop()


def _plain_lines(description: str, total: int) -> Iterator[Callable[[int], None]]:
    t0 = time.perf_counter()
    done = 0
    step = max(1, total // 10)
    next_at = step

    def advance(n: int = 1) -> None:
        nonlocal done, next_at
        done += n
        if done >= next_at or done >= total:
            while next_at <= done:
                next_at += step
            pct = 100 * done // total if total else 100
            secs = time.perf_counter() - t0
            print(f"{description}: {done}/{total} ({pct}%) {secs:.1f} s", file=sys.stderr)

    yield advance


def _nothing(n: int = 1) -> None:
    pass


@contextlib.contextmanager
def progress_bar(
    description: str, total: int, *, enabled: bool = True
) -> Iterator[Callable[..., None]]:
    """Show the progress of ``total`` steps on stderr for the duration of the block.

    Parameters
    ----------
    description : str
        What is counted, shown first ("convert", "masks", "epoch").
    total : int
        Number of steps.
    enabled : bool
        False (``--no-progress``) shows nothing; so does the CLI's ``--quiet``.

    Yields
    ------
    callable
        ``advance(n=1)``: ``n`` more steps done.

    Examples
    --------
    >>> with progress_bar("fields", 3, enabled=False) as advance:
    ...     for _ in range(3):
    ...         advance()
    """
    if not enabled or _quiet or total <= 0:
        yield _nothing
        return
    if sys.stderr.isatty():
        yield from _rich_bar(description, total)
    else:
        yield from _plain_lines(description, total)
