"""Shared test fixtures, oracles and helpers.

* the real BBBC039 fields from ../shared/data (never copied into the repo): :data:`BBBC039`,
  the ``bbbc039_dir`` / ``bbbc039_files`` fixtures;
* oracles written out from their definitions, not from the code under test: :func:`iou`,
  :func:`hand_disk`, :func:`hand_dilate`, :func:`store_files`;
* ImageXpress-named input folders (:func:`write_ixm`, :data:`GUID`);
* the command line in a subprocess, as users run it: :func:`cli_args`, :func:`run_cli`;
* the ``slow`` marker (tests over ~10 s on 2 cores): ``pytest -m "not slow"`` runs the rest in
  under a minute; ``make test`` runs everything.

Test modules import the plain helpers with ``from conftest import ...`` (``tests/`` is on
``sys.path`` under pytest's default import mode).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pytest

# OpenMP threads that sleep when idle instead of spinning: with two test processes on two cores
# (``make test`` runs pytest-xdist, one process per core), a torch test spinning its threads
# against the other worker ran 30x slower (5 s -> 173 s). Set before any test module imports
# torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import tifffile

#: The real BBBC039 fields, rows A-D (../shared/data beside the repository).
BBBC039 = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbbc039-rows-A-D"
SHARED_DATA = BBBC039  # the older name

#: The GUID MetaXpress appends to ImageXpress file names.
GUID = "051DAA7C-7042-435F-99F0-1E847D9B42CB"


def skip_without_bbbc039() -> Path:
    """The BBBC039 folder, or skip the calling test with the reason."""
    if not BBBC039.is_dir():
        pytest.skip(
            f"real BBBC039 fields not found at {BBBC039} (../shared/data beside the "
            "repository); these tests need them"
        )
    return BBBC039


@pytest.fixture(scope="session")
def bbbc039_dir() -> Path:
    return skip_without_bbbc039()


@pytest.fixture(scope="session")
def bbbc039_files(bbbc039_dir) -> list[Path]:
    files = sorted(bbbc039_dir.glob("*.tif"))
    if not files:
        pytest.skip(f"no .tif files in {bbbc039_dir}")
    return files


# --------------------------------------------------------------------------- oracles
def iou(a, b) -> float:
    """Intersection over union of two masks (0 when both are empty)."""
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    return (a & b).sum() / max((a | b).sum(), 1)


def hand_disk(r: int) -> np.ndarray:
    """Disk footprint written out from its definition: y**2 + x**2 <= r**2."""
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return y * y + x * x <= r * r


def hand_dilate(mask, r: int) -> np.ndarray:
    """Dilation by a disk, by shifting the mask under every offset of it (no library call)."""
    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, bool)
    h, w = mask.shape
    for dy, dx in zip(*np.nonzero(hand_disk(r)), strict=True):
        dy, dx = dy - r, dx - r
        src = mask[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
        out[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] |= src
    return out


def store_files(path: Path, under: str = "") -> dict[str, bytes]:
    """Every file of a store (relative path -> bytes), optionally only those under a prefix."""
    path = Path(path)
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and str(p.relative_to(path)).startswith(under)
    }


def write_ixm(
    folder: Path,
    fields: Iterable[tuple[str, int]],
    channels=(1, 2),
    shape=(24, 31),
    dtype=np.uint16,
    seed=0,
    plate="P1",
) -> dict:
    """ImageXpress-named random TIFFs, one per (well, site, channel); returns
    ``{(well, site, channel): array}``."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for well, site in fields:
        for c in channels:
            a = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
            tifffile.imwrite(folder / f"{plate}_{well}_s{site}_w{c}{GUID}.tif", a)
            out[(well, site, c)] = a
    return out


# --------------------------------------------------------------------------- the CLI
#: A wide terminal, so that no message is wrapped mid-word in what the tests read.
WIDE_ENV = {**os.environ, "COLUMNS": "200"}


def cli_args(*args) -> list[str]:
    """The argv of ``phirm-scale ARGS...`` run with this interpreter."""
    return [sys.executable, "-m", "phirm_scale", *map(str, args)]


#: Environment variables read when an interpreter starts or a library is imported (hash seed,
#: thread pools, allocator, terminal width and colour): a call that sets one of them to
#: something other than the server's value runs in a fresh interpreter.
_IMPORT_TIME_ENV = re.compile(
    r"^(PYTHON\w*|\w*_NUM_THREADS|OMP_\w+|GOMP_\w+|KMP_\w+|MALLOC_\w+|LD_PRELOAD"
    r"|TERMINAL_WIDTH|FORCE_COLOR|NO_COLOR|TERM|LANG|LC_\w+)$"
)


class CliServerError(RuntimeError):
    """The tests' CLI server died or answered out of step while a command ran."""


class _CliServer:
    """Client of ``tests/_cli_zygote.py``: one pre-imported interpreter per test process that
    forks a child per command (see that module). Started on first use; if it cannot start
    (a preload failed, Python threads running, no answer in 120 s) every call runs in a fresh
    interpreter. Once a command was handed to it, a failure is never hidden by a rerun: the
    command's process group is killed and the call raises :class:`CliServerError`."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.broken = False
        self.serial = 0
        self.pending = b""  # read from the server, not yet a whole line

    def _readline(self, proc: subprocess.Popen, timeout: float) -> str:
        """The server's next line, or "" at EOF or after ``timeout`` s. Reads the pipe's file
        descriptor itself: a buffered reader may hold the next line already (the server's two
        answers to a quick command can arrive in one read), which ``select`` cannot see."""
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return ""
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return ""
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode()

    def _start(self) -> subprocess.Popen | None:
        if self.proc is None and not self.broken:
            self.env = dict(os.environ)
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("_cli_zygote.py"))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=self.env,
            )
            self.pending = b""
            line = self._readline(proc, 120)
            ready = json.loads(line) if line else {}
            if not ready.get("ready") or ready.get("failed") or ready.get("threads") != 1:
                proc.kill()
                proc.wait()
                self.broken = True  # fresh interpreters from now on
                return None
            self.proc = proc
        return self.proc

    def _stop(self, proc: subprocess.Popen, child: int | None) -> None:
        """Kill the server and the command it was running (its own process group)."""
        if child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)
        proc.kill()
        proc.wait()
        self.proc, self.broken = None, True

    def usable_for(self, env: Mapping[str, str] | None) -> bool:
        if env is None:
            return True
        keys = {k for k in (*env, *self.env) if _IMPORT_TIME_ENV.match(k)}
        return all(env.get(k) == self.env.get(k) for k in keys)

    def run(self, argv, env, timeout) -> subprocess.CompletedProcess | None:
        proc = self._start()
        if proc is None or not self.usable_for(env):
            return None
        self.serial += 1
        with tempfile.TemporaryDirectory(prefix="phirm-cli-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            out.touch()
            err.touch()
            req = {
                "id": self.serial,
                "argv": list(argv),
                "env": dict(os.environ if env is None else env),
                "cwd": os.getcwd(),
                "stdout": str(out),
                "stderr": str(err),
                "timeout": timeout,
            }
            child = None
            try:
                proc.stdin.write((json.dumps(req) + "\n").encode())
                proc.stdin.flush()
                started = json.loads(self._readline(proc, 60) or "{}")
                child = started.get("pid")
                if started.get("id") != self.serial or child is None:
                    raise CliServerError(f"CLI server did not start {argv}: {started}")
                # the server kills the command at `timeout`; the margin covers its answer
                reply = json.loads(self._readline(proc, timeout + 60) or "{}")
                if reply.get("id") != self.serial or "returncode" not in reply:
                    raise CliServerError(f"CLI server gave no status for {argv}: {reply}")
            except BaseException:  # interrupted, timed out or out of step: never reuse it
                self._stop(proc, child)
                raise
            stdout = out.read_text(errors="replace")
            stderr = err.read_text(errors="replace")
        cmd = cli_args(*argv)
        if reply["returncode"] is None:
            raise subprocess.TimeoutExpired(cmd, timeout, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(cmd, reply["returncode"], stdout, stderr)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


_CLI_SERVER = _CliServer()


@pytest.fixture(scope="session", autouse=True)
def _close_cli_server():
    yield
    _CLI_SERVER.close()


def run_cli(
    *args,
    check: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    prefix: Iterable[str] = (),
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``phirm-scale ARGS...`` as a process of its own (text output captured); with
    ``check`` the exit status must be 0 (stderr shown otherwise).

    By default the process is forked from a server that has the dependencies imported
    (``tests/_cli_zygote.py``: same CLI code, environment, working directory, streams and exit
    status, ~1.5 s less CPU per call). ``fresh=True``, a ``prefix`` (a wrapper command, e.g.
    a read-only mount) or ``PHIRM_TEST_FRESH_CLI=1`` start a fresh interpreter instead.
    """
    argv = [str(a) for a in args]
    proc = None
    if not (fresh or prefix or os.environ.get("PHIRM_TEST_FRESH_CLI", "") not in ("", "0")):
        proc = _CLI_SERVER.run(argv, env, timeout)
    if proc is None:
        proc = subprocess.run(
            [*prefix, *cli_args(*argv)],
            capture_output=True,
            text=True,
            env=None if env is None else dict(env),
            timeout=timeout,
        )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


# --------------------------------------------------------------------------- scenario plates
def symlink_fields(files: Iterable[Path], folder: Path) -> Path:
    """A plate folder of TIFFs made of symlinks to ``files`` (nothing copied); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / Path(f).name).symlink_to(f)
    return folder


def composite_plate(
    path: Path,
    *,
    rows: int = 1,
    columns: int = 2,
    fields: int = 2,
    size=(520, 696),
    seed: int = 0,
    artefacts: float = 0.03,
) -> Path:
    """Real BBBC039 fields (cropped or mirror-padded) with composited artefacts, built in
    process: channels ``DAPI`` (damaged), ``CFP`` (artefact channel), ``DAPI_clean`` (ground
    truth), label ``artefacts_true``. Skips the test without the data. Returns the path."""
    from phirm_scale.synthetic import make_plate

    return make_plate(
        path,
        rows=rows,
        columns=columns,
        fields=fields,
        size=size,
        seed=seed,
        from_fields=skip_without_bbbc039(),
        artefacts=artefacts,
        cluster="threads",
        progress=False,
    ).path


def restore_plate(plate: Path, out: Path) -> Path:
    """Saturation masks on ``DAPI`` (label ``artefacts``, written into ``plate``), then Telea
    fills them into ``out``: a restored plate without an artefact channel. Returns ``out``."""
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.masks import make_artefact_masks

    make_artefact_masks(
        plate, channel="DAPI", method="saturation", cluster="threads", progress=False
    )
    inpaint_plate(plate, out, channel="DAPI", model="telea", cluster="threads", progress=False)
    return Path(out)


def copy_store(template: Path, dest: Path) -> Path:
    """A private copy of a store built once by a module- or session-scoped fixture (for tests
    that write into it); returns ``dest``."""
    import shutil

    shutil.copytree(template, dest, symlinks=True)
    return Path(dest)


# --------------------------------------------------------------------------- parallel runs
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``make test`` runs ``-n auto --dist loadgroup``), keep the real-SLURM
    tests on one worker: the local SLURM is one 2-CPU node, and two tests submitting jobs at
    once would queue behind each other's workers."""
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(pytest.mark.xdist_group(name="slurm"))
