"""The output lock's stale-lock takeover under contention: real processes, a real lock file.

A lock left by a dead run is taken over. When several runs find the same stale lock at once,
exactly one may take it: the others must find it taken and be refused, naming the holder.
A delay injected into the stale check (after the holder's PID is found dead, before anything
is removed) makes every run judge the lock stale before any of them acts: on a takeover that
is not atomic, each later run removes the lock the previous one had just made, and all hold
one output's lock at once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from phirm_scale.outputs import lock_path, output_lock

_TAKER = r"""
import json, logging, sys, time
from pathlib import Path
import phirm_scale.outputs as outputs
from phirm_scale.errors import OutputError

real = outputs._pid_alive


def slow(pid):
    alive = real(pid)
    if not alive:  # judged stale: widen the window before the lock is removed
        time.sleep(float(sys.argv[3]))
    return alive


outputs._pid_alive = slow
logging.basicConfig(level=logging.WARNING)
go = Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
try:
    with outputs.output_lock(sys.argv[1], command="inpaint") as lp:
        print("held", json.loads(lp.read_text())["pid"], flush=True)
        time.sleep(float(sys.argv[4]))
        print("still", json.loads(lp.read_text())["pid"], flush=True)
except OutputError as exc:
    print("refused", exc, flush=True)
"""

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _stale_lock(out: Path) -> Path:
    lp = lock_path(out)
    lp.write_text(
        json.dumps(
            {
                "host": socket.gethostname(),
                "pid": _dead_pid(),
                "command": "inpaint",
                "started": "2020-01-01T00:00:00+00:00",
            }
        )
    )
    return lp


def test_stale_lock_taken_over_by_exactly_one_of_three_runs(tmp_path):
    out = tmp_path / "R.ome.zarr"
    lp = _stale_lock(out)
    go = tmp_path / "go"
    delay, hold = 1.5, 5.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TAKER, str(out), str(go), str(delay), str(hold)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    lines = {p.pid: out_.splitlines() for p, (out_, _) in zip(procs, results, strict=True)}
    held = [pid for pid, ls in lines.items() if ls and ls[0] == f"held {pid}"]
    assert len(held) == 1, lines
    (winner,) = held
    # the winner's lock stayed its own for its whole hold
    assert lines[winner] == [f"held {winner}", f"still {winner}"], lines
    for pid, ls in lines.items():
        if pid != winner:
            assert len(ls) == 1 and ls[0].startswith("refused "), lines
            assert "in use by another run" in ls[0] and f"pid {winner} " in ls[0], ls
    # one run removed the stale lock (normally the winner; a run slipping in between that
    # removal and the remover's own lock would win instead, still alone)
    errs = {p.pid: err for p, (_, err) in zip(procs, results, strict=True)}
    assert sum("taking over the stale lock" in e for e in errs.values()) == 1, errs
    # the lock is released, nothing left beside
    assert not lp.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["go"]


def test_stale_lock_taken_over_alone(tmp_path):
    """One run and a stale lock of this host: taken over, held, released."""
    out = tmp_path / "R.ome.zarr"
    lp = _stale_lock(out)
    with output_lock(out, command="inpaint") as got:
        assert got == lp and json.loads(lp.read_text())["pid"] == os.getpid()
    assert not lp.exists()


def test_unreadable_fresh_lock_is_not_taken_over(tmp_path):
    """An unreadable lock younger than a minute may be a run writing it: never removed."""
    import pytest

    from phirm_scale.errors import OutputError

    out = tmp_path / "R.ome.zarr"
    lp = lock_path(out)
    lp.write_text("{not json")
    with pytest.raises(OutputError, match="another run keeps it"):
        with output_lock(out, command="inpaint"):
            pass
    assert lp.read_text() == "{not json"
    # older than a minute: stale, taken over
    os.utime(lp, (0, 0))
    with output_lock(out, command="inpaint"):
        assert json.loads(lp.read_text())["pid"] == os.getpid()
    assert not lp.exists()
