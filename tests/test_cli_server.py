"""The tests' CLI server (tests/_cli_zygote.py) behaves as a fresh interpreter does."""

from __future__ import annotations

import os

from conftest import run_cli


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
