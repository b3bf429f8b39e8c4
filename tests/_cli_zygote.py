"""A Python that has imported phirm-scale's dependencies once and forks one child per CLI call.

The tests run the command line ~250 times. A fresh interpreter spends most of a small command's
time importing numpy, zarr, dask, distributed, ome-zarr, scikit-image and the package (about
1.5 s of CPU each); a child forked from this process starts with all of that imported. The
child is still a process of its own, exactly as a user's command is: its own pid, environment
(the caller's, with ``dask.config`` re-read from it), working directory, stdin on /dev/null,
stdout and stderr into files, ``sys.argv``, the real ``phirm_scale.cli.main``, and a normal
interpreter exit (atexit handlers, non-daemon threads joined) with the exit status a shell sees.

torch is never imported here: a process that forks after torch has started its OpenMP threads
hands the child a broken thread pool. Commands that need torch import it in the child.

Protocol (one JSON object per line): the test process writes
``{"id": n, "argv": [...], "env": {...}, "cwd": "...", "stdout": PATH, "stderr": PATH,
"timeout": s}`` and reads back ``{"id": n, "pid": child}`` at once, then ``{"id": n,
"returncode": int}``, or ``"returncode": null`` when the child ran past ``timeout`` (it is then
killed with its process group). EOF on stdin ends the server.

Threads at fork: no Python thread runs in the server (it reports ``threading.active_count()``
and the client refuses anything but 1). Native pools do exist (OpenBLAS's workers, the
allocator's background thread: ~5 OS threads in ``/proc/PID/task``); both libraries re-create
their state in a forked child, as they must for ``multiprocessing``'s fork start method.
Variables read at interpreter start or import (hash seed, ``*_NUM_THREADS``, ``OMP_*``,
``MALLOC_*``, terminal width and colour) are the server's: the client sends a call that
changes one of them to a fresh interpreter instead.
``conftest.run_cli`` is the client; ``PHIRM_TEST_FRESH_CLI=1`` makes it start a fresh
interpreter per call instead.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import signal
import sys
import threading
import time

PRELOAD = [
    "numpy",
    "scipy.ndimage",
    "scipy.stats",
    "zarr",
    "numcodecs",
    "dask",
    "dask.array",
    "dask.config",
    "distributed",
    "tifffile",
    "ome_zarr.io",
    "ome_zarr.reader",
    "ome_zarr.writer",
    "xarray",
    "pandas",
    "skimage.measure",
    "skimage.morphology",
    "skimage.filters",
    "skimage.feature",
    "cv2",
    "rich",
    "typer",
    "yaml",
    "matplotlib",
]


def _preload() -> list[str]:
    """Import the dependencies and every phirm_scale module outside ``models`` (torch)."""
    import matplotlib

    matplotlib.use("Agg")
    failed = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            failed.append(name)
    import phirm_scale

    todo = [(phirm_scale.__path__, "phirm_scale.")]
    while todo:  # pkgutil.walk_packages would import models/ to look inside it
        path, prefix = todo.pop()
        for info in pkgutil.iter_modules(path, prefix):
            if info.name in ("phirm_scale.models", "phirm_scale.__main__"):
                continue
            try:
                module = importlib.import_module(info.name)
            except ImportError:
                failed.append(info.name)
                continue
            if info.ispkg:
                todo.append((module.__path__, info.name + "."))
    if "torch" in sys.modules:  # a module started importing torch at import time
        failed.append("torch was imported by the preload")
    return failed


def _child(req: dict) -> int:
    """Run one command in this (forked) process; returns the exit status."""
    os.setpgid(0, 0)  # its own process group, so a timeout can stop what it started
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    import dask.config

    dask.config.refresh()  # DASK_* variables of the caller's environment, as at import
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(req["stdout"], os.O_WRONLY | os.O_TRUNC)
    err = os.open(req["stderr"], os.O_WRONLY | os.O_TRUNC)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in (null, out, err):
        os.close(fd)
    sys.argv = ["phirm-scale", *req["argv"]]
    from phirm_scale.cli import main

    try:
        main(list(req["argv"]))
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def _exit(code: int) -> None:
    """Leave the child as the interpreter's normal exit would (non-daemon threads joined,
    atexit handlers run, streams flushed), without tearing down every imported module: that
    teardown touches the whole inherited heap and costs a forked child more than the import
    it saved."""
    try:
        # what Py_FinalizeEx does first: threading's own exit hooks (they stop executor
        # workers), then a join of the non-daemon threads
        threading._shutdown()  # type: ignore[attr-defined]  # private, as the interpreter uses it
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def serve() -> None:
    failed = _preload()
    import gc

    gc.collect()
    gc.freeze()  # the preloaded objects stay out of the children's collections (no page copies)
    reply = sys.stdout
    reply.write(json.dumps({"ready": True, "failed": failed, "threads": threading.active_count()}))
    reply.write("\n")
    reply.flush()
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _exit(_child(req))
        reply.write(json.dumps({"id": req["id"], "pid": pid}) + "\n")
        reply.flush()
        code = _wait(pid, float(req["timeout"]))
        reply.write(json.dumps({"id": req["id"], "returncode": code}) + "\n")
        reply.flush()


if __name__ == "__main__":
    serve()
