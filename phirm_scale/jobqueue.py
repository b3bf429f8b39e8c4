"""dask-jobqueue clusters built from the YAML files in ``cluster_configs/``.

A file holds one mapping: ``kind`` (slurm, pbs, lsf, sge), the keyword arguments of the
dask-jobqueue class under ``cluster`` and an optional ``scale`` mapping
(``jobs: N`` or ``minimum_jobs``/``maximum_jobs`` for adaptive scaling).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from phirm_scale.errors import PhirmError

__all__ = ["cluster_from_yaml", "KINDS"]

KINDS = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "lsf": "LSFCluster",
    "sge": "SGECluster",
}


def cluster_from_yaml(path: str | Path):
    """Build (and scale) the dask-jobqueue cluster described by ``path``."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PhirmError(f"{path}: unreadable cluster configuration ({exc})") from exc
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise PhirmError(f"{path}: cluster configuration needs a 'kind' ({', '.join(KINDS)})")
    kind = str(cfg["kind"]).lower()
    if kind not in KINDS:
        raise PhirmError(f"{path}: unknown cluster kind {kind!r}; expected one of {', '.join(KINDS)}")
    import dask_jobqueue

    cls = getattr(dask_jobqueue, KINDS[kind])
    cluster = cls(**(cfg.get("cluster") or {}))
    scale = cfg.get("scale") or {"jobs": 1}
    if "minimum_jobs" in scale or "maximum_jobs" in scale:
        cluster.adapt(minimum_jobs=scale.get("minimum_jobs", 0),
                      maximum_jobs=scale.get("maximum_jobs", 1))
    else:
        cluster.scale(jobs=int(scale.get("jobs", 1)))
    return cluster
