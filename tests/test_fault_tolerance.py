"""Faults on a real local cluster (worker processes on 127.0.0.1), for every plate stage:

* ``kill -9`` of a worker process mid-stage: the run completes and its output equals an
  undisturbed (threaded) run's;
* ``kill -9`` of the client (the ``phirm-scale`` process) mid-stage: a rerun computes only the
  fields that are missing (counted) and ends identical. The score stage writes nothing per
  field: its rerun scores every field again and gives the identical Dataset.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr
from conftest import GUID, store_files

from phirm_scale.plate import FieldKey, field_done, open_plate

N_FIELDS = 48  # 4 x 6 wells x 2 fields


def _local():
    from distributed import Client, LocalCluster

    lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    return lc, Client(lc)


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes behind nannies, shared by the client-kill tests."""
    lc, client = _local()
    with lc, client:
        yield client


@pytest.fixture
def fresh_cluster():
    """Two worker processes behind nannies, one of which the test kills."""
    lc, client = _local()
    with lc, client:
        yield client


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    from phirm_scale.synthetic import make_plate

    tmp = tmp_path_factory.mktemp("fault-template")
    p = make_plate(
        tmp / "p.ome.zarr", rows=4, columns=6, fields=2, size=128, seed=11, artefacts=0.05
    )
    rng = np.random.default_rng(3)
    src = tmp / "tif"
    src.mkdir()
    for k in p.fields:
        for c in (1, 2):
            tifffile.imwrite(
                src / f"P_{k.row}{k.column}_s{k.field + 1}_w{c}{GUID}.tif",
                rng.integers(0, 4096, (256, 256), dtype=np.uint16),
            )
    return tmp


def label_files(path: Path) -> dict[str, bytes]:
    return {k: v for k, v in store_files(path).items() if "/labels/" in k}


def copy_plate(template: Path, dst: Path) -> Path:
    shutil.copytree(template / "p.ome.zarr", dst)
    return dst


# ----------------------------------------------------------------------------- the stages
class Stage:
    """How to run one stage, where its output is, and how many of its fields are done."""

    def __init__(self, name, template: Path, tmp: Path):
        self.name, self.template, self.tmp = name, template, tmp

    def prepare(self, tag: str):
        """Fresh inputs for one run; returns a dict of paths."""
        d = self.tmp / tag
        d.mkdir()
        if self.name == "convert":
            return {"src": self.template / "tif", "out": d / "c.ome.zarr"}
        p = copy_plate(self.template, d / "p.ome.zarr")
        return {"plate": p, "out": d / "o.ome.zarr", "qc": d / "qc.zarr"}

    def run(self, paths, cluster):
        from phirm_scale.stages.convert import convert
        from phirm_scale.stages.inpaint import inpaint_plate
        from phirm_scale.stages.masks import make_artefact_masks
        from phirm_scale.stages.score import score_plates

        if self.name == "convert":  # what it did is logged (phirm_scale.stages.convert)
            return convert(
                paths["src"],
                paths["out"],
                channel_names=["DAPI", "CFP"],
                cluster=cluster,
                progress=False,
            )
        if self.name == "masks":
            return make_artefact_masks(
                paths["plate"], channel="CFP", cluster=cluster, progress=False
            )
        if self.name == "inpaint":
            return inpaint_plate(
                paths["plate"],
                paths["out"],
                mask_label="artefacts_true",
                model="biharmonic",
                cluster=cluster,
                progress=False,
            )
        return score_plates(
            f"{paths['plate']}:DAPI_clean",
            f"{paths['plate']}:DAPI",
            window=32,
            mask_label="artefacts_true",
            cluster=cluster,
        )

    def cli(self, paths, address):
        if self.name == "convert":
            return [
                "convert",
                str(paths["src"]),
                str(paths["out"]),
                "--channel-names",
                "DAPI,CFP",
                "--no-progress",
                "--cluster",
                address,
            ]
        if self.name == "masks":
            return [
                "masks",
                str(paths["plate"]),
                "--channel",
                "CFP",
                "--no-progress",
                "--cluster",
                address,
            ]
        if self.name == "inpaint":
            return [
                "inpaint",
                str(paths["plate"]),
                "-o",
                str(paths["out"]),
                "--mask-label",
                "artefacts_true",
                "--model",
                "biharmonic",
                "--cluster",
                address,
            ]
        return [
            "score",
            "--reference",
            f"{paths['plate']}:DAPI_clean",
            "--reconstruction",
            f"{paths['plate']}:DAPI",
            "-o",
            str(paths["qc"]),
            "--window",
            "32",
            "--mask-label",
            "artefacts_true",
            "--no-progress",
            "--cluster",
            address,
        ]

    def done_on_disk(self, paths) -> int:
        keys = open_plate(self.template / "p.ome.zarr").fields
        if self.name == "convert":
            return (
                sum(field_done(paths["out"], FieldKey(k.row, k.column, k.field)) for k in keys)
                if paths["out"].exists()
                else 0
            )
        if self.name == "masks":
            p = open_plate(paths["plate"])
            return sum(p.has_label(k, "artefacts") for k in keys)
        if self.name == "inpaint":
            return sum(field_done(paths["out"], k) for k in keys) if paths["out"].exists() else 0
        return 0

    def output(self, paths, result):
        if self.name == "convert":
            return store_files(paths["out"])
        if self.name == "masks":
            return label_files(paths["plate"])
        if self.name == "inpaint":
            p = open_plate(paths["out"])
            return {k: p.read_field(k).tobytes() for k in p.fields}
        return result.drop_attrs()

    def assert_same(self, a, b):
        if self.name == "score":
            xr.testing.assert_identical(a, b)
        else:
            assert len(a) >= N_FIELDS and a.keys() == b.keys()
            assert [k for k in a if a[k] != b[k]] == []


STAGES = ["convert", "masks", "inpaint", "score"]


def _tasks_finished(client, prefix: str) -> int:
    def count(dask_scheduler, prefix=prefix):
        # from the transition log: the runner releases each task as soon as it has its
        # result, so finished tasks do not stay in memory on the scheduler
        return len(
            {
                str(t[0])
                for t in dask_scheduler.transition_log
                if str(t[0]).startswith(prefix + "-") and t[2] == "memory"
            }
        )

    return client.run_on_scheduler(count)


# ------------------------------------------------------------------------- kill a worker
@pytest.mark.slow
@pytest.mark.parametrize("name", STAGES)
def test_worker_killed_mid_stage_output_identical(name, template, tmp_path, fresh_cluster):
    cluster = fresh_cluster
    stage = Stage(name, template, tmp_path)
    ref_paths = stage.prepare("ref")
    ref = stage.output(ref_paths, stage.run(ref_paths, "threads"))

    paths = stage.prepare("run")
    pids = cluster.run(os.getpid)
    victim_addr, victim = sorted(pids.items())[0]
    killed_at: list[int] = []
    stop = threading.Event()

    def killer():
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            n = _tasks_finished(cluster, name)
            if n >= 3:
                os.kill(victim, signal.SIGKILL)
                killed_at.append(n)
                return
            time.sleep(0.02)

    t = threading.Thread(target=killer)
    t.start()
    try:
        result = stage.run(paths, cluster)
    finally:
        stop.set()
        t.join()
    assert killed_at and killed_at[0] < N_FIELDS, "the worker was not killed mid-stage"
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    stage.assert_same(ref, stage.output(paths, result))


# ------------------------------------------------------------------------- kill the client
def _idle(client, timeout=60):
    """Wait until no worker thread runs a task (a task of a dead client still runs to its end
    on the worker, though the scheduler has forgotten it)."""

    def busy(dask_worker):
        return len(dask_worker.active_threads)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(client.processing().values()) and not any(client.run(busy).values()):
            return
        time.sleep(0.1)
    raise AssertionError("cluster still busy")


@pytest.mark.slow
@pytest.mark.parametrize("name", STAGES)
def test_client_killed_mid_stage_rerun_does_only_the_missing_fields(
    name, template, tmp_path, cluster, caplog
):
    stage = Stage(name, template, tmp_path)
    ref_paths = stage.prepare("ref")
    ref = stage.output(ref_paths, stage.run(ref_paths, "threads"))

    paths = stage.prepare("run")
    address = cluster.scheduler.address
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "phirm_scale", *stage.cli(paths, address)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    killed = False
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        n = stage.done_on_disk(paths) if name != "score" else _tasks_finished(cluster, name)
        if n >= 3:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed, f"the client finished before it could be killed: {proc.stderr.read()}"
    _idle(cluster)  # tasks already running when the client died finish on the workers
    done = stage.done_on_disk(paths)
    with caplog.at_level(logging.INFO, logger="phirm_scale.stages.convert"):
        result = stage.run(paths, cluster)
    if name == "convert":
        said = [r.getMessage() for r in caplog.records if r.name == "phirm_scale.stages.convert"]
        assert 0 < done < N_FIELDS
        assert any(f"resuming, {N_FIELDS - done} of {N_FIELDS} fields left" in ln for ln in said), (
            said
        )
    elif name == "masks":
        assert 0 < done < N_FIELDS and len(result) == N_FIELDS - done
    elif name == "inpaint":
        assert 0 < done < N_FIELDS
        assert result["fields"] == N_FIELDS - done and result["skipped"] == done
    else:
        assert not paths["qc"].exists()  # nothing half-written by the killed run
    stage.assert_same(ref, stage.output(paths, result))
