"""Fault injection: every writing stage under the faults a real run meets.

- the client killed with SIGKILL at a random point (after a random number of completed
  fields), then the same command rerun: the result is byte-identical to an uninterrupted run;
- a Dask worker killed with SIGKILL mid-run: the run finishes, byte-identical;
- a second writer on the same output while the first runs: refused with one line naming the
  first; the first finishes, byte-identical;
- read-only inputs (a read-only bind mount): the stages work;
- an output on a read-only file system: one ``error:`` line, exit 2.

The kill points are drawn from a seeded generator; nothing here waits for a fixed time.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from functools import partial
from pathlib import Path

import pytest
import tifffile
from conftest import WIDE_ENV, cli_args, run_cli

from phirm_scale.plate import open_plate
from phirm_scale.synthetic import make_plate

ENV = WIDE_ENV
N_ROWS, N_COLS, N_FIELDS, SIZE = 2, 6, 2, 256  # 24 fields
RNG = random.Random(12)


cli = cli_args
run = partial(run_cli, env=ENV)  # run(*args, check=False, prefix=())


def chunk_hashes(store: Path, *, labels: str | None = None) -> dict[str, str]:
    """sha256 of every chunk file of a store (image chunks, or one label's chunks)."""
    out = {}
    for p in sorted(store.rglob("*")):
        rel = p.relative_to(store).as_posix()
        if not p.is_file() or "/c/" not in f"/{rel}":
            continue
        in_label = "/labels/" in f"/{rel}"
        if (labels is None and in_label) or (
            labels is not None and f"/labels/{labels}/" not in f"/{rel}"
        ):
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _complete(meta: Path) -> bool:
    try:
        return bool(json.loads(meta.read_text())["attributes"]["phirm_scale"]["complete"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def done_fields(store: Path, label: str | None = None) -> int:
    pattern = f"*/*/*/labels/{label}/zarr.json" if label else "*/*/*/zarr.json"
    try:
        return sum(_complete(m) for m in store.glob(pattern))
    except OSError:  # a folder appeared or went while listing: count again next time
        return 0


def kill_after(proc: subprocess.Popen, store: Path, k: int, label: str | None = None) -> int:
    """SIGKILL ``proc`` as soon as ``k`` fields are complete; returns the count at the kill."""
    while proc.poll() is None:
        n = done_fields(store, label) if store.exists() else 0
        if n >= k:
            proc.send_signal(signal.SIGSTOP)
            n = done_fields(store, label)
            proc.kill()
            proc.wait()
            return n
        time.sleep(0.002)
    raise AssertionError(
        f"the run ended before {k} fields were complete: {proc.returncode} "
        f"{proc.stderr.read() if proc.stderr else ''}"
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A masked plate, its TIFF folder, and uninterrupted outputs of convert and inpaint."""
    d = tmp_path_factory.mktemp("fault")
    plate = d / "P.ome.zarr"
    make_plate(
        plate, rows=N_ROWS, columns=N_COLS, fields=N_FIELDS, size=SIZE, seed=5, artefacts=0.03
    )
    run("masks", plate, "--channel", "CFP", "--cluster", "threads", "--no-progress", check=True)
    tiffs = d / "tiffs"
    tiffs.mkdir()
    p = open_plate(plate)
    for k in p.fields:
        for ci, ch in enumerate(("DAPI", "CFP")):
            tifffile.imwrite(
                tiffs / f"S_{k.row}{k.column}_s{k.field + 1}_w{ci + 1}.tif", p.read_field(k, ch)
            )
    ref_conv = d / "ref_conv.ome.zarr"
    run("convert", tiffs, ref_conv, "--cluster", "threads", "--no-progress", check=True)
    ref_inp = d / "ref_inp.ome.zarr"
    run("inpaint", plate, "-o", ref_inp, "--cluster", "threads", check=True)
    return {
        "dir": d,
        "plate": plate,
        "tiffs": tiffs,
        "convert": chunk_hashes(ref_conv),
        "inpaint": chunk_hashes(ref_inp),
        "masks": chunk_hashes(plate, labels="artefacts"),
        "n": len(p.fields),
    }


def _copy_plate(base, tmp_path) -> Path:
    dst = tmp_path / "P.ome.zarr"
    shutil.copytree(base["plate"], dst)
    return dst


# --------------------------------------------------------------------------- kill -9 client


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["convert", "masks", "inpaint"])
def test_kill_client_then_rerun_is_identical(base, tmp_path, stage):
    k = RNG.randint(1, base["n"] // 3)
    if stage == "convert":
        out = tmp_path / "C.ome.zarr"
        args = ["convert", base["tiffs"], out, "--cluster", "threads", "--no-progress"]
        label = None
    elif stage == "masks":
        out = _copy_plate(base, tmp_path)
        for d in out.glob("*/*/*/labels/artefacts"):  # every label to make again
            shutil.rmtree(d)
        args = ["masks", out, "--channel", "CFP", "--cluster", "threads", "--no-progress"]
        label = "artefacts"
    else:
        out = tmp_path / "R.ome.zarr"
        args = ["inpaint", base["plate"], "-o", out, "--cluster", "threads"]
        label = None
    proc = subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    n = kill_after(proc, out, k, label)
    assert n < base["n"], "the kill came after the last field"
    p = run(*args, check=True)
    assert "stale lock" in p.stderr  # the killed run's lock was taken over
    got = chunk_hashes(out, labels=label)
    assert got == base[stage]
    assert not out.with_name(out.name + ".lock").exists()


# --------------------------------------------------------------------------- kill -9 worker


@pytest.mark.slow
def test_kill_worker_mid_run_is_identical(base, tmp_path):
    from distributed import Client, LocalCluster

    out = tmp_path / "R.ome.zarr"
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)
        proc = subprocess.Popen(
            cli("inpaint", base["plate"], "-o", out, "--cluster", cluster.scheduler_address),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        k = RNG.randint(1, base["n"] // 3)
        while proc.poll() is None and not (out.exists() and done_fields(out) >= k):
            time.sleep(0.002)
        assert proc.poll() is None, "the run ended before the worker could be killed"
        os.kill(sorted(pids.values())[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert chunk_hashes(out) == base["inpaint"]


# --------------------------------------------------------------------------- second writer


@pytest.mark.slow
def test_second_writer_is_refused(base, tmp_path):
    out = tmp_path / "R.ome.zarr"
    lock = out.with_name(out.name + ".lock")
    first = subprocess.Popen(
        cli("inpaint", base["plate"], "-o", out, "--cluster", "threads"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    while first.poll() is None and not lock.exists():
        time.sleep(0.002)
    first.send_signal(signal.SIGSTOP)  # keep it mid-run while the second one tries
    try:
        assert first.poll() is None, "the first run ended before it was caught running"
        for model in ("telea", "navier-stokes"):
            p = run("inpaint", base["plate"], "-o", out, "--model", model, "--cluster", "threads")
            lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
            assert p.returncode == 2 and len(lines) == 1, p.stderr
            assert "in use by another run" in lines[0] and f"pid {first.pid}" in lines[0]
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert chunk_hashes(out) == base["inpaint"]


# --------------------------------------------------------------------------- read-only


def _ro_prefix(path: Path) -> list[str]:
    """Run a command with ``path`` bind-mounted read-only (a user + mount namespace)."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare -rm (user/mount namespaces) not available here")
    script = f'mount --bind "{path}" "{path}" && mount -o remount,bind,ro "{path}" && exec "$@"'
    return ["unshare", "-rm", "sh", "-c", script, "sh"]


@pytest.mark.slow
def test_read_only_inputs_work(base, tmp_path):
    plate = _copy_plate(base, tmp_path)
    before = chunk_hashes(plate)
    ro = _ro_prefix(plate)
    out = tmp_path / "R.ome.zarr"
    run("inpaint", plate, "-o", out, "--cluster", "threads", prefix=ro, check=True)
    assert chunk_hashes(out) == base["inpaint"]
    run(
        "score",
        "--reference",
        f"{plate}:DAPI_clean",
        "--reconstruction",
        f"{out}:DAPI",
        "-o",
        tmp_path / "QC.zarr",
        "--cluster",
        "threads",
        "--no-progress",
        prefix=ro,
        check=True,
    )
    run(
        "tiles",
        plate,
        "-o",
        tmp_path / "T.zarr",
        "--size",
        "128",
        "--channel",
        "DAPI",
        prefix=ro,
        check=True,
    )
    ro_tiffs = _ro_prefix(base["tiffs"])
    conv = tmp_path / "C.ome.zarr"
    run(
        "convert",
        base["tiffs"],
        conv,
        "--cluster",
        "threads",
        "--no-progress",
        prefix=ro_tiffs,
        check=True,
    )
    assert chunk_hashes(conv) == base["convert"]
    # masks writes labels into its plate: on a read-only plate that is one line
    p = run(
        "masks",
        plate,
        "--channel",
        "CFP",
        "--overwrite",
        "--cluster",
        "threads",
        "--no-progress",
        prefix=ro,
    )
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert chunk_hashes(plate) == before


@pytest.mark.slow
def test_read_only_output_folder_is_one_line(base, tmp_path):
    outdir = tmp_path / "results"
    outdir.mkdir()
    ro = _ro_prefix(outdir)
    for args in (
        ["inpaint", base["plate"], "-o", outdir / "R.ome.zarr", "--cluster", "threads"],
        [
            "score",
            "--reference",
            f"{base['plate']}:DAPI_clean",
            "--reconstruction",
            f"{base['plate']}:DAPI",
            "-o",
            outdir / "QC.zarr",
            "--cluster",
            "threads",
            "--no-progress",
        ],
        ["convert", base["tiffs"], outdir / "C.ome.zarr", "--cluster", "threads"],
        ["tiles", base["plate"], "-o", outdir / "T.zarr", "--size", "128"],
    ):
        p = run(*args, prefix=ro)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert p.returncode == 2, p.stderr
        assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
        assert "Read-only file system" in lines[0] and str(outdir) in lines[0]
    assert not any(outdir.iterdir())
