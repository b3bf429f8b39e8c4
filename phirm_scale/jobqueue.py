"""dask-jobqueue clusters built from the YAML files in ``cluster_configs/``.

A file holds one mapping: ``kind`` (slurm, pbs, lsf, sge), the keyword arguments of the
dask-jobqueue class under ``cluster`` and an optional ``scale`` mapping
(``jobs: N`` or ``minimum_jobs``/``maximum_jobs`` for adaptive scaling).
"""

from __future__ import annotations

import os
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


def cluster_from_yaml(path: str | Path, *, scale: bool = True):
    """Build the dask-jobqueue cluster described by ``path`` and, unless ``scale=False``,
    ask for its jobs (``scale=False`` is for inspecting ``cluster.job_script()``)."""
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

    kwargs = dict(cfg.get("cluster") or {})
    for key in ("local_directory",):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = os.path.expandvars(kwargs[key])
    cls = getattr(dask_jobqueue, KINDS[kind])
    try:
        cluster = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PhirmError(f"{path}: invalid {kind} cluster settings ({exc})") from exc
    if not scale:
        return cluster
    spec = cfg.get("scale") or {"jobs": 1}
    if "minimum_jobs" in spec or "maximum_jobs" in spec:
        cluster.adapt(minimum_jobs=spec.get("minimum_jobs", 0),
                      maximum_jobs=spec.get("maximum_jobs", 1))
    else:
        cluster.scale(jobs=int(spec.get("jobs", 1)))
    return cluster
