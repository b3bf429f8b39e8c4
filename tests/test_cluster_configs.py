"""The shipped dask-jobqueue configurations and ``open_cluster``'s start-up errors.

Job scripts are parsed and their numbers (memory, cores, walltime, lifetime) compared with
expectations computed here from the YAML files themselves, in the batch systems' own units;
nothing is submitted (the real SLURM tests are in test_slurm.py)."""

from __future__ import annotations

import os
import re
import shlex
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli

from phirm_scale.cluster import CONFIG_DIR, known_configs, open_cluster
from phirm_scale.errors import PhirmError
from phirm_scale.jobqueue import cluster_from_yaml, job_scripts

GB, GiB = 1e9, 2**30
UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "M": 1024**2,
    "G": GiB,
    "T": 1024**4,
    "KB": 1e3,
    "MB": 1e6,
    "GB": GB,
    "TB": 1e12,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": GiB,
    "TIB": 1024**4,
}


def nbytes(text: str, default_unit: str = "") -> float:
    m = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)\s*", text)
    assert m, text
    return float(m.group(1)) * UNITS[(m.group(2) or default_unit).upper()]


def minutes(text: str) -> float:
    """'02:00:00' (h:m:s), '02:00' (LSF h:m), '110m', '5m', '2h', '30s' -> minutes."""
    m = re.fullmatch(r"(\d+)([smh])", text)
    if m:
        return int(m.group(1)) * {"s": 1 / 60, "m": 1, "h": 60}[m.group(2)]
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 60 + parts[1] + parts[2] / 60


def worker_args(script: str) -> dict:
    line = next(ln for ln in script.splitlines() if "distributed.cli.dask_worker" in ln)
    toks = shlex.split(line)
    out: dict = {"nworkers": 1}
    for i, t in enumerate(toks):
        if t.startswith("--") and i + 1 < len(toks) and not toks[i + 1].startswith("--"):
            out[t[2:]] = toks[i + 1]
    out["nworkers"] = int(out["nworkers"])
    out["raw"] = toks
    return out


def job_memory_bytes(kind: str, header: str) -> float:
    """What the job asks the batch system for, in bytes, read the way each system reads it."""
    if kind == "slurm":
        return nbytes(re.search(r"^#SBATCH --mem=(\S+)", header, re.M).group(1), "M")
    if kind == "pbs":  # PBS size units are binary: 1gb = 2**30 bytes
        m = re.search(r"mem=(\d+)([kmgt]?b)", header, re.I)
        return int(m.group(1)) * 1024 ** "bkmgt".index(m.group(2)[0].lower())
    if kind == "lsf":  # -M in KB (LSF_UNIT_FOR_LIMITS default)
        return float(re.search(r"^#BSUB -M (\d+)", header, re.M).group(1)) * 1e3
    if kind == "sge":  # h_vmem is per slot
        slots = int(re.search(r"^#\$ -pe \S+ (\d+)", header, re.M).group(1))
        return slots * nbytes(re.search(r"h_vmem=(\w+)", header).group(1))
    raise AssertionError(kind)


def file_job_memory(kind: str, c: dict) -> float:
    """The job memory a configuration asks for, read from its own keys."""
    if kind == "slurm":  # job_mem: SLURM units (G = GiB)
        return nbytes(c["job_mem"], "M")
    if kind == "pbs":
        m = re.search(r"mem=(\d+)([kmgt]?b)", c["resource_spec"], re.I)
        return int(m.group(1)) * 1024 ** "bkmgt".index(m.group(2)[0].lower())
    if kind == "lsf":
        return nbytes(c["mem"])
    if kind == "sge":
        slots = int(re.search(r"-pe \S+ (\d+)", " ".join(c["job_extra_directives"])).group(1))
        return slots * nbytes(re.search(r"h_vmem=(\w+)", c["resource_spec"]).group(1))
    raise AssertionError(kind)


def job_cores(kind: str, header: str) -> int:
    pat = {
        "slurm": r"^#SBATCH --cpus-per-task=(\d+)",
        "pbs": r"ncpus=(\d+)",
        "lsf": r"^#BSUB -n (\d+)",
        "sge": r"^#\$ -pe \S+ (\d+)",
    }[kind]
    return int(re.search(pat, header, re.M).group(1))


def job_walltime(kind: str, header: str) -> float:
    pat = {
        "slurm": r"^#SBATCH -t (\S+)",
        "pbs": r"walltime=(\S+)",
        "lsf": r"^#BSUB -W (\S+)",
        "sge": r"h_rt=(\S+)",
    }[kind]
    return minutes(re.search(pat, header, re.M).group(1))


SHIPPED = ["lsf", "pbs", "sge", "slurm-cpu", "slurm-gpu"]


def test_shipped_names_are_package_data():
    assert known_configs() == SHIPPED
    assert CONFIG_DIR.parent.name == "phirm_scale"  # inside the package: ships in the wheel
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert (
        "cluster_configs/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["phirm_scale"]
    )


@pytest.mark.parametrize("name", SHIPPED)
def test_job_script_numbers_match_the_file(name):
    cfg = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    kind, c = cfg["kind"], cfg["cluster"]
    [(_, script)] = job_scripts(name)
    header = "\n".join(ln for ln in script.splitlines() if ln.startswith("#"))
    w = worker_args(script)

    # cores: the job's cores = worker processes x threads, = the file's cores
    assert job_cores(kind, header) == c["cores"]
    assert w["nworkers"] == c["processes"]
    assert int(w["nthreads"]) * w["nworkers"] == c["cores"]
    # memory: the workers together may use the file's memory, the job asks for what the file
    # says it does (in that system's key), and that exceeds the workers' total with headroom
    # for the nannies, the interpreter and the page cache (>= 10 % and >= 1 GiB a process)
    workers_mem = nbytes(w["memory-limit"]) * w["nworkers"]
    assert workers_mem == pytest.approx(nbytes(c["memory"]), rel=0.001)
    job_mem = job_memory_bytes(kind, header)
    assert job_mem == pytest.approx(file_job_memory(kind, c), rel=0.01), (job_mem, c)
    assert job_mem >= 1.1 * workers_mem, (job_mem / GiB, workers_mem / GiB)
    assert job_mem - workers_mem >= GiB * w["nworkers"], (job_mem / GiB, workers_mem / GiB)
    if kind == "lsf":  # placed where the memory is free (rusage), killed beyond it (-M)
        rusage = re.search(r'^#BSUB -R "rusage\[mem=(\d+)\]"', header, re.M)
        assert rusage and rusage.group(1) == re.search(r"^#BSUB -M (\d+)", header, re.M).group(1)
    if kind in ("sge", "pbs"):  # ${VAR:-default} is not csh: the job runs in bash
        assert re.search(r"^#[$]|^#PBS", header, re.M)
        assert re.search(r"^#(?:\$|PBS) -S /bin/bash$", header, re.M), header
    # walltime, and workers retiring at least 5 minutes before it (lifetime + stagger)
    wall = job_walltime(kind, header)
    assert wall == minutes(str(c["walltime"]))
    life = minutes(w["lifetime"]) + minutes(w.get("lifetime-stagger", "0m"))
    assert life <= wall - 5, (life, wall)
    # scratch expanded on the compute node (test_worker_command_parses_without_tmpdir); the
    # scheduler's interface is not the workers'
    assert "interface" not in c
    # job logs in the file's folder (absolute, ~ expanded here), not the submit folder
    logs = str(Path(c["log_directory"]).expanduser())
    assert Path(logs).is_absolute() and "~" not in header
    assert re.search(rf"^#\S+ -o {re.escape(logs)}/", header, re.M), header
    # the GPU pool's GPUs and resources: test_gpu_pool_takes_the_gpu_tasks_and_only_it
    if kind == "sge":  # slots given and equal to the cores
        assert re.search(r"^#\$ -pe \S+ (\d+)", header, re.M)


# the worker command with its program replaced by one printing the argv it receives
_ARGV = """-c 'import json, sys; print(json.dumps(sys.argv[1:]))'"""


def _worker_argv(script: str, tmp_path: Path, env_tmpdir: str | None) -> list[str]:
    """Run a rendered job script with bash, as the node would (TMPDIR as given, or unset):
    the argv dask-worker would be started with."""
    import json
    import subprocess

    assert script.count("-m distributed.cli.dask_worker") == 1
    f = tmp_path / "job.sh"
    f.write_text(script.replace("-m distributed.cli.dask_worker", _ARGV))
    env = {k: v for k, v in os.environ.items() if k != "TMPDIR"}
    if env_tmpdir is not None:
        env["TMPDIR"] = env_tmpdir
    r = subprocess.run(["bash", str(f)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _parsed(argv: list[str]) -> dict:
    """dask-worker's own parsing of argv (click; nothing started): its parameters."""
    from distributed.cli.dask_worker import main

    with main.make_context("dask-worker", list(argv)) as ctx:
        return dict(ctx.params)


@pytest.mark.parametrize("name", SHIPPED)
def test_worker_command_parses_without_tmpdir(name, tmp_path):
    """The rendered worker command, run by bash where TMPDIR is unset (``env -u TMPDIR``),
    gives dask-worker one --local-directory (/tmp) and every other option intact; with
    TMPDIR set to a path with a space, that path as one argument. (An unquoted $TMPDIR
    vanished: --local-directory took '--lifetime' and 110m was an unexpected extra argument,
    every worker died.)"""
    cfg = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    extra = cfg["cluster"]["worker_extra_args"]
    [(_, script)] = job_scripts(name)
    for tmpdir, want in ((None, "/tmp"), ("/scratch/job 42", "/scratch/job 42")):
        argv = _worker_argv(script, tmp_path, tmpdir)
        i = argv.index("--local-directory")
        assert argv[i + 1] == want and argv[i + 2 : i + 2 + len(extra)] == extra, argv
        params = _parsed(argv)
        assert params["local_directory"] == want
        assert params["lifetime"] == extra[extra.index("--lifetime") + 1]
        assert int(params["n_workers"] or 1) == cfg["cluster"]["processes"]


def test_bare_variable_as_local_directory_falls_back(tmp_path):
    """A site's own file with ``local_directory: $TMPDIR`` (or ``${SCRATCH}``, or a path with
    a space) is rendered quoted, with /tmp where the variable is unset."""
    for value, unset, want in (
        ("$TMPDIR", "/tmp", None),
        ("${SCRATCH}", "/tmp", "/scratch/x y"),
        ("/data/my scratch", "/data/my scratch", None),
    ):
        p = _write(
            tmp_path,
            "kind: slurm\ncluster:\n  cores: 2\n  memory: 1GB\n"
            f"  local_directory: '{value}'\n  worker_extra_args: [--lifetime, 5m]\n",
        )
        [(_, script)] = job_scripts(str(p))
        assert _parsed(_worker_argv(script, tmp_path, None))["local_directory"] == unset
        if want is not None:
            f = tmp_path / "job.sh"
            f.write_text(script.replace("-m distributed.cli.dask_worker", _ARGV))
            import json
            import subprocess

            env = {**os.environ, "SCRATCH": want}
            r = subprocess.run(["bash", str(f)], capture_output=True, text=True, env=env)
            assert _parsed(json.loads(r.stdout))["local_directory"] == want


def test_showing_a_job_script_leaves_no_log_folder(tmp_path, monkeypatch):
    """`cluster show` renders the script (dask-jobqueue makes the log folder on the way) and
    leaves nothing behind; the header names the folder with ~ expanded."""
    monkeypatch.setenv("HOME", str(tmp_path))
    [(_, script)] = job_scripts("slurm-cpu")
    assert f"#SBATCH -o {tmp_path}/phirm-scale-logs/" in script
    assert not (tmp_path / "phirm-scale-logs").exists()


@pytest.mark.slow
def test_rendered_job_script_starts_workers_without_tmpdir(tmp_path):
    """The slurm-cpu job script run as it is (bash, TMPDIR unset), only its scheduler address
    pointed at a real scheduler on loopback: both worker processes join, with scratch under
    /tmp, and run a task."""
    import signal
    import subprocess

    from distributed import Client, LocalCluster

    [(_, script)] = job_scripts("slurm-cpu")
    with (
        LocalCluster(
            n_workers=0, host="127.0.0.1", protocol="tcp://", dashboard_address=None
        ) as lc,
        Client(lc) as client,
    ):
        f = tmp_path / "job.sh"
        f.write_text(re.sub(r"tcp://\S+", lc.scheduler_address, script, count=1))
        env = {k: v for k, v in os.environ.items() if k != "TMPDIR"}
        proc = subprocess.Popen(
            ["bash", str(f)], env=env, start_new_session=True, stderr=subprocess.PIPE
        )
        try:
            client.wait_for_workers(2, timeout=120)
            dirs = client.run(lambda dask_worker: dask_worker.local_directory)
            assert len(dirs) == 2 and all(d.startswith("/tmp/") for d in dirs.values()), dirs
            assert client.submit(sum, [1, 2, 3]).result() == 6
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


@pytest.mark.parametrize("name", SHIPPED)
def test_site_placeholders_are_there_and_commented(name):
    text = (CONFIG_DIR / f"{name}.yaml").read_text()
    account = "project" if name in ("lsf", "sge") else "account"
    for key in (account, "log_directory", "queue", "walltime", "scheduler_options"):
        line = next((ln for ln in text.splitlines() if ln.strip().startswith(key + ":")), None)
        assert line is not None and "# SITE" in line, (key, line)


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_interface_is_for_the_workers_only(tmp_path):
    """A file's ``interface`` names the workers' network: the scheduler on this (login) node
    does not bind it, so an interface this machine lacks still starts."""
    p = _write(
        tmp_path, "kind: slurm\ncluster:\n  cores: 1\n  memory: 1GB\n  interface: nonexistent9\n"
    )
    [(_, script)] = job_scripts(str(p))
    assert worker_args(script)["interface"] == "nonexistent9"
    cluster = cluster_from_yaml(p, scale=False)
    try:
        assert cluster.scheduler_address.startswith("tcp://")
    finally:
        cluster.close()


def test_bad_scheduler_interface_is_one_error(tmp_path):
    p = _write(
        tmp_path,
        "kind: slurm\ncluster:\n  cores: 1\n  memory: 1GB\n"
        "  scheduler_options: {interface: nonexistent9}\n",
    )
    with pytest.raises(
        PhirmError,
        match=r"c\.yaml: cannot start the slurm cluster .*"
        r"nonexistent9",
    ):
        with open_cluster(str(p)):
            pass


@pytest.mark.parametrize(
    "text, message",
    [
        ("cluster: {cores: 1}\n", "needs a 'kind'"),
        ("kind: kubernetes\n", "unknown cluster kind 'kubernetes'"),
        ("kind: slurm\nclustr: {}\n", "unknown key 'clustr'"),
        (
            "kind: slurm\ncluster:\n  cores: 1\n  memory: 1GB\n  walltme: '01:00:00'\n",
            "unknown key 'cluster.walltme'",
        ),
        (
            "kind: slurm\ncluster: {cores: 1, memory: 1GB}\nscale: {jbos: 2}\n",
            "unknown key 'scale.jbos'",
        ),
        ("kind: slurm\ncluster: {cores: [1\n", "unreadable cluster configuration"),
    ],
)
def test_bad_yaml_names_the_problem(tmp_path, text, message):
    p = _write(tmp_path, text)
    with pytest.raises(PhirmError, match=re.escape(message)):
        with open_cluster(str(p)):
            pass


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(PhirmError, match="lsf, pbs, sge, slurm-cpu, slurm-gpu"):
        with open_cluster("slurm-cpuu"):
            pass
    with pytest.raises(PhirmError, match="missing.yaml: cluster configuration file not found"):
        with open_cluster("missing.yaml"):
            pass
    with pytest.raises(PhirmError, match="not a Dask scheduler address"):
        with open_cluster("http://127.0.0.1:1"):
            pass


def test_threads_spec_yields_no_client():
    with open_cluster("threads") as client:
        assert client is None


def test_refused_address_is_one_error():
    with pytest.raises(PhirmError, match="tcp://127.0.0.1:1: "):
        with open_cluster("tcp://127.0.0.1:1", timeout=1):
            pass


@pytest.fixture
def http_server():
    """A local web server: something listening that is not a Dask scheduler."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # the name http.server calls
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"tcp://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_something_that_is_not_a_scheduler_is_one_error(http_server):
    with pytest.raises(PhirmError, match=re.escape(http_server)):
        with open_cluster(http_server, timeout=2):
            pass


def test_scheduler_file(tmp_path):
    """``scheduler-file:PATH`` connects to the scheduler written there; a missing file is an
    error after the timeout."""
    import json

    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        dashboard_address=":0",
    ) as lc:
        f = tmp_path / "scheduler.json"
        f.write_text(json.dumps({"address": lc.scheduler_address, "type": "Scheduler"}))
        with open_cluster(f"scheduler-file:{f}", quiet=True) as client:
            assert client.scheduler.address == lc.scheduler_address
            assert client.submit(lambda x: x + 1, 1).result() == 2
    with pytest.raises(PhirmError, match="absent.json: scheduler file not found"):
        with open_cluster(f"scheduler-file:{tmp_path / 'absent.json'}", timeout=0.5):
            pass


def test_resource_no_worker_offers_is_an_error_not_a_wait(tmp_path):
    from distributed import Client, LocalCluster

    from phirm_scale.stages._runner import run_tasks

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as lc,
        Client(lc) as client,
    ):
        with pytest.raises(PhirmError, match=r"GPU=1 .* none of the 1 workers"):
            run_tasks(
                abs,
                [-1, -2],
                cluster=client,
                progress=False,
                description="gpu-work",
                resources={"GPU": 1},
            )
        assert run_tasks(abs, [-1, -2], cluster=client, progress=False) == [1, 2]


@pytest.mark.slow
def test_cli_startup_failures_are_one_line_exit_2(tmp_path, http_server):
    from phirm_scale.synthetic import make_plate

    p = make_plate(tmp_path / "p.ome.zarr", rows=1, columns=1, size=32)
    bad = _write(tmp_path, "kind: slurm\ncluster: {cores: 1, memory: 1GB, foo: 1}\n")
    for args in (
        ["--cluster-timeout", "1", "masks", str(p.path), "--cluster", "tcp://127.0.0.1:1"],
        ["--cluster-timeout", "2", "masks", str(p.path), "--cluster", http_server],
        ["masks", str(p.path), "--cluster", "nope"],
        ["masks", str(p.path), "--cluster", str(bad)],
        ["--adapt", "3:1", "masks", str(p.path), "--cluster", "threads"],
        ["cluster", "show", "nope"],
    ):
        r = run_cli(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (
            args,
            r.returncode,
            r.stderr,
        )
    assert not p.has_label(p.fields[0], "artefacts")  # nothing written


def test_cli_cluster_show_and_list():
    r = run_cli("cluster", "show", "slurm-cpu+slurm-gpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("#!/usr/bin/env bash") == 2 and "--gres=gpu:1" in r.stdout
    r = run_cli("cluster", "list")
    assert r.returncode == 0 and [ln.split("\t")[0] for ln in r.stdout.splitlines()] == SHIPPED


def _resources(w: dict) -> dict[str, float]:
    """A worker's ``--resources`` as dask-worker reads them: 'A=1 B=2' or 'A=1,B=2'."""
    text = w.get("resources", "")
    return {k: float(v) for k, v in (p.split("=") for p in text.replace(",", " ").split())}


def test_gpu_pool_takes_the_gpu_tasks_and_only_it():
    """The shipped pools agree with each other and with what the stages ask for: every
    GPU worker process of a slurm-gpu job has a GPU of the job's ``--gres`` to itself and
    advertises it as the ``GPU`` resource inpaint's tasks request (1 / gpu_tasks each), no
    CPU pool advertises one, and real Dask workers started with the scripts' thread counts
    and resources route the GPU tasks to the GPU pool only."""
    from distributed import Client, LocalCluster, Worker, get_worker

    from phirm_scale.stages._runner import run_tasks

    [(_, gpu_script)] = job_scripts("slurm-gpu")
    [(_, cpu_script)] = job_scripts("slurm-cpu")
    gpu, cpu = worker_args(gpu_script), worker_args(cpu_script)
    gres = re.search(r"^#SBATCH --gres=gpu:(?:[\w.-]+:)?(\d+)\s*$", gpu_script, re.M)
    assert gres, "the GPU pool's job asks SLURM for no GPU"
    gpus_per_worker = _resources(gpu).get("GPU", 0)
    # one whole GPU per worker process, all of them within the job's GPUs
    assert gpus_per_worker == 1
    assert gpu["nworkers"] * gpus_per_worker <= int(gres.group(1))
    for name in SHIPPED:
        if name != "slurm-gpu":
            [(_, script)] = job_scripts(name)
            assert "GPU" not in _resources(worker_args(script)), name
            assert "--gres=gpu" not in script, name
    # a task of inpaint's (gpu_tasks=8 in flight per GPU) fits the advertised GPU 8 times
    gpu_tasks = 8
    per_task = {"GPU": 1.0 / gpu_tasks}
    assert gpus_per_worker / per_task["GPU"] == gpu_tasks

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as lc:
        for tag, w in (("gpu", gpu), ("cpu", cpu)):
            lc.worker_spec[tag] = {
                "cls": Worker,
                "options": {"nthreads": int(w["nthreads"]), "resources": _resources(w)},
            }
        lc.sync(lc._correct_state)
        with Client(lc) as client:
            client.wait_for_workers(2, timeout=30)

            def where(i):
                return get_worker().name

            ran = run_tasks(
                where, list(range(12)), cluster=client, progress=False, resources=per_task
            )
            assert set(ran) == {"gpu"}
            ran = run_tasks(where, list(range(12)), cluster=client, progress=False)
            assert set(ran) <= {"gpu", "cpu"}


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_local_cluster_is_sized_to_the_machine_and_closed_after(tmp_path):
    """``--cluster local`` (every stage's default): worker processes, not threads of this
    one, using more than half of this machine's cores and never more; a stage run on it
    writes what the threaded scheduler writes; nothing is left running afterwards."""
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.masks import make_artefact_masks
    from phirm_scale.synthetic import make_plate

    kw = dict(rows=1, columns=2, size=64, seed=2, artefacts=0.05)
    a = make_plate(tmp_path / "a.ome.zarr", **kw)
    b = make_plate(tmp_path / "b.ome.zarr", **kw)
    ncpu = os.cpu_count() or 1
    with open_cluster("local", quiet=True) as client:
        info = client.scheduler_info()["workers"]
        threads = sum(w["nthreads"] for w in info.values())
        assert ncpu // 2 < threads <= ncpu, (threads, ncpu)
        pids = set(client.run(os.getpid).values())
        assert len(pids) == len(info) and os.getpid() not in pids
        make_artefact_masks(a.path, cluster=client, progress=False)
    assert client.status == "closed"
    assert not [p for p in pids if _running(p)], "worker processes left running"
    make_artefact_masks(b.path, cluster="threads", progress=False)
    pa, pb = open_plate(a.path), open_plate(b.path)
    assert pa.fields == pb.fields
    for k in pa.fields:
        np.testing.assert_array_equal(pa.read_label(k, "artefacts"), pb.read_label(k, "artefacts"))
