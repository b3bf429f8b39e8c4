"""Stages on a real SLURM (scripts/slurm-local-up: one node, this machine, a fake GPU).

Every job here is a real ``sbatch`` job (visible in ``squeue`` and its log under the test's
folder); workers and scheduler talk over the loopback interface. Outputs are compared with
the threaded scheduler's, byte for byte or value for value.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import store_files

from phirm_scale.plate import open_plate

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def slurm():
    """Bring the local SLURM up (idempotent); skip with the reason when it cannot be."""
    if shutil.which("apt-get") is None and shutil.which("sbatch") is None:
        pytest.skip("no SLURM and no apt-get to install it")
    r = subprocess.run(
        [str(REPO / "scripts" / "slurm-local-up")], capture_output=True, text=True, timeout=600
    )
    if r.returncode == 3:
        pytest.skip(f"SLURM packages cannot be installed here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    return True


def config(tmp: Path, name: str, *, gpu: bool = False, extra_args=(), scale="jobs: 1") -> Path:
    args = ["--interface", "lo", *(["--resources", "GPU=1"] if gpu else []), *extra_args]
    text = f"""kind: slurm
cluster:
  queue: debug
  cores: 1
  processes: 1
  memory: 1GB
  walltime: "00:15:00"
  local_directory: {tmp}
  log_directory: {tmp / "logs"}
  scheduler_options: {{interface: lo}}
  worker_extra_args: {args!r}
  job_extra_directives: {["--gres=gpu:1"] if gpu else []!r}
scale:
  {scale}
"""
    p = tmp / f"{name}.yaml"
    p.write_text(text)
    return p


def plate(path, rows=2, columns=2, fields=2, size=96):
    from phirm_scale.synthetic import make_plate

    return make_plate(
        path, rows=rows, columns=columns, fields=fields, size=size, seed=5, artefacts=0.05
    )


def labels(p, name="artefacts"):
    p = open_plate(p)
    return {k: p.read_label(k, name) for k in p.fields}


@pytest.fixture
def cpu_client(slurm, tmp_path_factory):
    """A SLURMCluster with one real job (the node may have only 2 cores: tests hold at most
    two jobs at a time)."""
    from phirm_scale.cluster import open_cluster

    tmp = tmp_path_factory.mktemp("slurm-cpu")
    with open_cluster(str(config(tmp, "cpu")), quiet=True, timeout=30) as client:
        client.wait_for_workers(1, timeout=120)
        yield client


def _jobs_of(client) -> list[str]:
    return [j.job_id for j in client.cluster.workers.values() if j.job_id]


@pytest.mark.slow
def test_convert_masks_score_through_slurm_equal_threaded(cpu_client, tmp_path):
    import tifffile

    from phirm_scale.stages.convert import convert
    from phirm_scale.stages.masks import make_artefact_masks
    from phirm_scale.stages.score import score_plates

    job_ids = _jobs_of(cpu_client)
    assert job_ids
    sq = subprocess.run(
        ["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True, text=True
    ).stdout
    assert "RUNNING" in sq, sq
    # convert
    rng = np.random.default_rng(0)
    src = tmp_path / "tif"
    src.mkdir()
    for well in ("A01", "A02", "B01"):
        for c in (1, 2):
            tifffile.imwrite(
                src / f"P_{well}_s1_w{c}051DAA7C-7042-435F-99F0-1E847D9B42CB.tif",
                rng.integers(0, 4000, (40, 50), dtype=np.uint16),
            )
    kw = dict(channel_names=["DAPI", "CFP"], progress=False)
    convert(src, tmp_path / "t.ome.zarr", cluster="threads", **kw)
    convert(src, tmp_path / "s.ome.zarr", cluster=cpu_client, **kw)
    a, b = store_files(tmp_path / "t.ome.zarr"), store_files(tmp_path / "s.ome.zarr")
    assert len(a) > 6 and a == b
    # masks
    pt, ps = plate(tmp_path / "pt.ome.zarr"), plate(tmp_path / "ps.ome.zarr")
    mt = make_artefact_masks(pt.path, cluster="threads", progress=False)
    ms = make_artefact_masks(ps.path, cluster=cpu_client, progress=False)
    assert mt == ms and len(ms) == 8 and sum(ms.values()) > 0
    lt, ls = labels(pt.path), labels(ps.path)
    assert all(np.array_equal(lt[k], ls[k]) for k in lt)
    # score (damaged DAPI against the clean channel)
    st = score_plates(
        f"{pt.path}:DAPI_clean",
        f"{pt.path}:DAPI",
        window=32,
        mask_label="artefacts",
        cluster="threads",
    )
    ss = score_plates(
        f"{ps.path}:DAPI_clean",
        f"{ps.path}:DAPI",
        window=32,
        mask_label="artefacts",
        cluster=cpu_client,
    )
    xr.testing.assert_identical(st.drop_attrs(), ss.drop_attrs())
    assert float(st.phirm.min()) < 1.0  # the artefacts are seen: not a trivial comparison
    # every task ran on the SLURM job's worker, nowhere else
    workers = cpu_client.scheduler_info(n_workers=-1)["workers"]
    assert len(workers) == 1 and next(iter(workers.values()))["name"].startswith("cpu")


@pytest.mark.slow
def test_stage_given_the_yaml_opens_and_closes_its_slurm_job(slurm, tmp_path):
    from phirm_scale.stages.masks import make_artefact_masks

    p = plate(tmp_path / "p.ome.zarr", rows=1, columns=2, fields=1)
    res = make_artefact_masks(p.path, cluster=str(config(tmp_path, "own")), progress=False)
    assert len(res) == 2
    logs = list((tmp_path / "logs").glob("*.err"))
    assert logs, "no job log: the job did not run under SLURM"
    job_ids = [f.stem.rsplit("-", 1)[-1] for f in logs]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # cancelled at close: leaves the queue
        q = subprocess.run(
            ["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True, text=True
        ).stdout.strip()
        if not q:
            break
        time.sleep(0.5)
    assert not q, q


def test_sbatch_refusal_is_one_error_quoting_slurm(slurm, tmp_path):
    from phirm_scale.cluster import open_cluster
    from phirm_scale.errors import PhirmError

    p = config(tmp_path, "bad")
    p.write_text(p.read_text().replace("queue: debug", "queue: nosuchpartition"))
    with pytest.raises(
        PhirmError,
        match=r"bad\.yaml: the batch system refused the job: "
        r".*[Ii]nvalid partition",
    ):
        with open_cluster(str(p), timeout=20):
            pass


@pytest.mark.slow
def test_mixed_cpu_gpu_pools_inpaint_only_on_gpu_jobs(slurm, tmp_path):
    from distributed import get_task_stream

    from phirm_scale.cluster import open_cluster
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.masks import make_artefact_masks

    p = plate(tmp_path / "p.ome.zarr")
    spec = f"{config(tmp_path, 'cpu')}+{config(tmp_path, 'gpu', gpu=True)}"
    ref = inpaint_plate(
        p.path,
        tmp_path / "t.ome.zarr",
        mask_label="artefacts_true",
        cluster="threads",
        progress=False,
        dilate=1,
    )
    with open_cluster(spec, quiet=True, timeout=30) as client:
        client.wait_for_workers(2, timeout=120)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        gpu_workers = {a for a, w in workers.items() if (w.get("resources") or {}).get("GPU")}
        assert {w["name"].split("-")[0] for w in workers.values()} == {"cpu", "gpu"}
        assert len(gpu_workers) == 1
        with get_task_stream(client) as ts:
            make_artefact_masks(p.path, cluster=client, progress=False)  # CPU work too
            res = inpaint_plate(
                p.path,
                tmp_path / "s.ome.zarr",
                mask_label="artefacts_true",
                gpu=True,
                device="cpu",
                cluster=client,
                progress=False,
                dilate=1,
            )
        assert client.status == "running"
    ran = [t["worker"] for t in ts.data if str(t["key"]).startswith("inpaint-")]
    assert len(ran) == res["fields"] == 8 and set(ran) <= gpu_workers
    assert {k: ref[k] for k in ref if k != "out"} == {k: res[k] for k in res if k != "out"}
    a, b = open_plate(ref["out"]), open_plate(res["out"])
    assert all(np.array_equal(a.read_field(k), b.read_field(k)) for k in a.fields)


def _scancel_when(done, job_id, count, fired):
    """scancel ``job_id`` once ``count()`` (fields complete) reaches 1, recording that count."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not done.is_set():
        n = count()
        if n >= 1:
            subprocess.run(["scancel", job_id], check=True)
            fired.append((job_id, n))
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_scancel_mid_run_is_replaced_and_outputs_identical(slurm, tmp_path):
    """Adaptive pool (1 job): the job is cancelled once a field is done; SLURM's replacement
    job finishes the stage, and the output equals a threaded run's. A fast machine can finish
    a run before the cancel lands, so runs repeat (each checked) until one is cut mid-run."""
    import dask

    from phirm_scale.cluster import open_cluster
    from phirm_scale.stages.inpaint import inpaint_plate

    p = plate(tmp_path / "p.ome.zarr", rows=4, columns=6, fields=2, size=160)
    ref = inpaint_plate(
        p.path,
        tmp_path / "t.ome.zarr",
        mask_label="artefacts_true",
        model="biharmonic",
        cluster="threads",
        progress=False,
    )
    a = open_plate(ref["out"])
    cfg = config(tmp_path, "adapt", scale="minimum_jobs: 1\n  maximum_jobs: 1")
    cut_mid_run, runs = False, 0
    with (
        dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}),
        open_cluster(str(cfg), quiet=True, timeout=30) as client,
    ):
        while not cut_mid_run and runs < 5:
            runs += 1
            client.wait_for_workers(1, timeout=120)
            first = _jobs_of(client)
            assert len(first) == 1
            out = tmp_path / f"s{runs}.ome.zarr"

            def complete(out=out):
                if not out.exists():
                    return 0
                return sum(
                    1 for f in out.glob("*/*/*/zarr.json") if '"complete": true' in f.read_text()
                )

            done, fired = threading.Event(), []
            t = threading.Thread(target=_scancel_when, args=(done, first[0], complete, fired))
            t.start()
            try:
                res = inpaint_plate(
                    p.path,
                    out,
                    mask_label="artefacts_true",
                    model="biharmonic",
                    cluster=client,
                    progress=False,
                )
            finally:
                done.set()
                t.join()
            assert res["fields"] == 48
            b = open_plate(res["out"])
            assert all(np.array_equal(a.read_field(k), b.read_field(k)) for k in a.fields)
            if fired:
                cut_mid_run = fired[0][1] < 48
                gone = time.monotonic() + 60  # (a cancel after the last field: let it go)
                while first[0] in _jobs_of(client) and time.monotonic() < gone:
                    time.sleep(0.2)
                client.wait_for_workers(1, timeout=120)
                later = _jobs_of(client)
                assert later and first[0] not in later  # a new job took over
    assert cut_mid_run, f"no job was cancelled mid-run in {runs} runs"


@pytest.mark.slow
def test_worker_reaching_its_lifetime_hands_work_over(slurm, tmp_path):
    """Workers retire after 6 s (``--lifetime``) while a run is in flight; adaptive jobs replace
    them; no task fails and the output equals a threaded run's.

    Two jobs run at once, so a retiring worker can always hand its results to the other (a lone
    worker holding unreleased results retires only once the run has let them go, i.e. between
    runs). A run counts as spanning a retirement when one of its workers leaves the scheduler
    before the run's last task has finished."""
    import dask
    from distributed import get_task_stream

    from phirm_scale.cluster import open_cluster
    from phirm_scale.stages.inpaint import inpaint_plate

    p = plate(tmp_path / "p.ome.zarr", rows=4, columns=6, fields=2, size=160)
    ref = inpaint_plate(
        p.path,
        tmp_path / "t.ome.zarr",
        mask_label="artefacts_true",
        model="biharmonic",
        cluster="threads",
        progress=False,
    )
    cfg = config(
        tmp_path,
        "life",
        extra_args=("--lifetime", "6s", "--lifetime-stagger", "2s"),
        scale="minimum_jobs: 2\n  maximum_jobs: 2",
    )
    spanned, runs = False, 0
    with (
        dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}),
        open_cluster(str(cfg), quiet=True, timeout=30) as client,
    ):
        client.wait_for_workers(1, timeout=120)
        deadline = time.monotonic() + 120
        while not spanned and time.monotonic() < deadline:
            runs += 1
            gone: dict[str, float] = {}  # worker address -> first time seen absent
            seen: set[str] = set()
            stop = threading.Event()

            def watch(gone=gone, seen=seen, stop=stop):
                while not stop.is_set():
                    now = set(client.scheduler_info()["workers"])
                    t = time.time()
                    seen.update(now)
                    for w in seen - now:
                        gone.setdefault(w, t)
                    stop.wait(0.05)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            try:
                with get_task_stream(client) as ts:
                    res = inpaint_plate(
                        p.path,
                        tmp_path / f"s{runs}.ome.zarr",
                        mask_label="artefacts_true",
                        model="biharmonic",
                        cluster=client,
                        progress=False,
                    )
            finally:
                stop.set()
                watcher.join()
            stream = [t for t in ts.data if str(t["key"]).startswith("inpaint-")]
            last_stop = max(t["startstops"][-1]["stop"] for t in stream)
            spanned = any(
                gone.get(w, float("inf")) < last_stop for w in {t["worker"] for t in stream}
            )
            assert all(t.get("status", "OK") != "error" for t in ts.data)
            assert res["fields"] == 48
            a, b = open_plate(ref["out"]), open_plate(res["out"])
            assert all(np.array_equal(a.read_field(k), b.read_field(k)) for k in a.fields)
    assert spanned, f"no worker reached its lifetime during any of {runs} runs"
