"""The shipped dask-jobqueue configurations build clusters whose job scripts ask for what the
file says (no jobs are submitted here)."""

from __future__ import annotations

import pytest

from phirm_scale.cluster import CONFIG_DIR, open_cluster
from phirm_scale.errors import PhirmError
from phirm_scale.jobqueue import cluster_from_yaml


@pytest.mark.parametrize("name, expect", [
    ("slurm-cpu", ["#SBATCH -p cpu", "--lifetime"]),
    ("slurm-gpu", ["#SBATCH --gres=gpu:1", "--resources GPU=1", "--nthreads 8"]),
    ("pbs", ["#PBS -q workq", "select=1:ncpus=8"]),
    ("lsf", ["#BSUB -q normal"]),
    ("sge", ["#$ -q all.q"]),
])
def test_shipped_configs_make_the_right_job_scripts(name, expect, tmp_path):
    import yaml

    cfg = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    cfg["cluster"]["interface"] = "lo"          # this machine has no ib0
    cfg["cluster"]["local_directory"] = str(tmp_path)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cluster = cluster_from_yaml(path, scale=False)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for needle in expect:
        assert needle in script, (needle, script)


def test_unknown_cluster_spec_is_one_clear_error():
    with pytest.raises(PhirmError, match="not 'local'"):
        with open_cluster("nonsense"):
            pass
    with pytest.raises(PhirmError, match="not found"):
        with open_cluster("missing.yaml"):
            pass


def test_bad_kind(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("kind: kubernetes\n")
    with pytest.raises(PhirmError, match="unknown cluster kind"):
        cluster_from_yaml(p)


def test_threads_spec_yields_no_client():
    with open_cluster("threads") as client:
        assert client is None
