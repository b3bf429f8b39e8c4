"""The tests' CLI server (tests/_cli_zygote.py) behaves as a fresh interpreter does."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from conftest import run_cli

from phirm_scale.synthetic import make_plate


def both(*args, env=None):
    fresh = run_cli(*args, env=env, fresh=True)
    forked = run_cli(*args, env=env)
    return fresh, forked


def test_same_output_and_status_as_a_fresh_interpreter(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["--version"], ["metric", "nope.tif", "nope.tif"], ["masks", "P.ome.zarr"]):
        fresh, forked = both(*args)
        assert (forked.returncode, forked.stdout, forked.stderr) == (
            fresh.returncode,
            fresh.stdout,
            fresh.stderr,
        ), args
    # the relative path was resolved in the caller's working directory, and named
    assert "P.ome.zarr" in forked.stderr and forked.returncode == 2


def test_the_callers_environment_reaches_the_command(tmp_path):
    env = {**os.environ, "PHIRM_SCALE_DEBUG": "1"}
    fresh, forked = both("metric", tmp_path / "a.tif", tmp_path / "b.tif", env=env)
    # with the debug variable the error is a traceback, not the one error line
    assert "Traceback" in fresh.stderr and "Traceback" in forked.stderr
    assert forked.returncode == fresh.returncode != 0
    plain = run_cli("metric", tmp_path / "a.tif", tmp_path / "b.tif")
    assert "Traceback" not in plain.stderr and plain.stderr.startswith("error:")


def test_a_command_past_its_timeout_is_killed_and_the_next_one_runs(tmp_path):
    plate = tmp_path / "P.ome.zarr"
    make_plate(plate, rows=1, columns=1, fields=1, size=32, seed=0)
    # a "scheduler" that takes connections and never answers: the command waits on it
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(subprocess.TimeoutExpired):
            run_cli("masks", plate, "--channel", "CFP", "--cluster", address, timeout=3)
    assert run_cli("--version").returncode == 0


def test_import_time_variables_get_a_fresh_interpreter():
    from conftest import _CLI_SERVER

    run_cli("--version")  # the server is up
    assert _CLI_SERVER.usable_for({**os.environ})
    assert not _CLI_SERVER.usable_for({**os.environ, "PYTHONHASHSEED": "123"})
    assert not _CLI_SERVER.usable_for({**os.environ, "OMP_NUM_THREADS": "7"})
    assert _CLI_SERVER.usable_for({**os.environ, "PHIRM_SCALE_DEBUG": "1"})


def test_two_answers_in_one_read_are_both_seen():
    """The server's two answers to a quick command can reach the pipe together; the second
    must be read at once, not after the time limit (a buffered reader hides it from select)."""
    from conftest import _CliServer

    client = _CliServer()
    proc = subprocess.Popen(
        ["sh", "-c", "printf 'first\\nsecond\\n'; sleep 30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert client._readline(proc, 10).strip() == "first"
        assert client._readline(proc, 0.5).strip() == "second"
        assert client._readline(proc, 0.2) == ""  # nothing more: the limit, not a hang
    finally:
        proc.kill()
        proc.wait()
