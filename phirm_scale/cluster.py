"""Where Dask work runs: the embedded local cluster, a dask-jobqueue cluster from YAML, a
running scheduler, or the plain threaded scheduler.

``--cluster`` values understood everywhere:

``local`` (default)
    an embedded :class:`distributed.LocalCluster` sized to this machine;
``threads``
    no distributed cluster at all: Dask's threaded scheduler in this process;
``tcp://host:port``
    connect to a running scheduler;
``path/to/config.yaml`` or the name of a file in ``cluster_configs/`` (``slurm-cpu``)
    a dask-jobqueue cluster built from that file (see ``cluster_configs/README.md``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

from phirm_scale.errors import PhirmError

__all__ = ["open_cluster", "visible_gpus", "CONFIG_DIR"]

log = logging.getLogger(__name__)

#: Folder of the shipped dask-jobqueue configurations.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "cluster_configs"


def _resolve_config(spec: str) -> Path | None:
    p = Path(spec)
    if p.suffix in {".yaml", ".yml"}:
        if not p.exists():
            raise PhirmError(f"{spec}: cluster configuration file not found")
        return p
    for cand in (CONFIG_DIR / f"{spec}.yaml", CONFIG_DIR / f"{spec}.yml"):
        if cand.exists():
            return cand
    return None


def visible_gpus() -> int:
    """CUDA devices this process sees (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


#: task threads of one local GPU worker (they feed one batcher per model: phirm_scale.batcher)
GPU_WORKER_THREADS = max(4, min(8, (os.cpu_count() or 1) // 2))


def _add_gpu_workers(cluster, n: int, threads: int) -> None:
    """One Nanny per CUDA device beside the CPU workers: ``resources={'GPU': 1}``,
    ``CUDA_VISIBLE_DEVICES`` set to its device."""
    base = dict(next(iter(cluster.worker_spec.values())))
    for i in range(n):
        opts = dict(base["options"])
        opts.update(nthreads=threads, resources={"GPU": 1}, env={"CUDA_VISIBLE_DEVICES": str(i)})
        cluster.worker_spec[f"gpu-{i}"] = {"cls": base["cls"], "options": opts}
    cluster.sync(cluster._correct_state)


@contextlib.contextmanager
def open_cluster(spec: "str | object" = "local", *, n_workers: int | None = None,
                 threads_per_worker: int | None = None, quiet: bool = False,
                 gpu: bool = False) -> Iterator[object]:
    """Open the cluster named by ``spec`` and yield a :class:`distributed.Client` (or ``None``
    for ``threads``). The cluster is closed on exit when this function started it.

    ``spec`` may also be an open :class:`distributed.Client`: it is yielded as is and left
    open (the caller owns it), so one cluster can serve several stages.

    ``gpu=True`` with ``local``: one more worker per visible CUDA device
    (:func:`visible_gpus`), with ``resources={'GPU': 1}`` and ``GPU_WORKER_THREADS`` threads;
    none visible is an error at once (a GPU task would otherwise wait forever).

    The dashboard link is printed (to stderr) when a distributed cluster is used.
    """
    if spec is not None and not isinstance(spec, str):
        yield spec  # an open client: used, never closed here
        return
    spec = (spec or "local").strip()
    if spec == "threads":
        yield None
        return

    from distributed import Client, LocalCluster

    def _announce(client):
        if not quiet:
            import sys
            link = getattr(client, "dashboard_link", None)
            print(f"dask dashboard: {link}", file=sys.stderr)

    if spec == "local":
        import dask

        n_gpu = visible_gpus() if gpu else 0
        if gpu and n_gpu == 0:
            raise PhirmError("--gpu with --cluster local: no CUDA device is visible on this machine")
        ncpu = os.cpu_count() or 1
        workers = n_workers or max(1, min(ncpu, 4))
        threads = threads_per_worker or max(1, ncpu // workers)
        # distributed's default MALLOC_TRIM_THRESHOLD_=65536 makes glibc trim after nearly
        # every free: our per-field tasks allocate and free tens of MB many times, and ran
        # ~2.5x slower with it (measured on the score stage). 256 MiB keeps memory bounded.
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
        environ["MALLOC_TRIM_THRESHOLD_"] = str(256 * 2**20)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
                LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                             dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
                Client(cluster) as client:
            if n_gpu:
                _add_gpu_workers(cluster, n_gpu, GPU_WORKER_THREADS)
                client.wait_for_workers(workers + n_gpu, timeout=120)
            _announce(client)
            yield client
        return

    if spec.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        try:
            client = Client(spec, timeout="30s")
        except OSError as exc:
            raise PhirmError(f"{spec}: cannot reach the Dask scheduler ({exc})") from exc
        with client:
            _announce(client)
            yield client
        return

    cfg = _resolve_config(spec)
    if cfg is None:
        raise PhirmError(
            f"--cluster {spec!r}: not 'local', 'threads', a scheduler address, a YAML file, nor a "
            f"configuration in {CONFIG_DIR}")
    from phirm_scale.jobqueue import cluster_from_yaml  # noqa: PLC0415 (issue 6 module)

    cluster = cluster_from_yaml(cfg)
    with cluster, Client(cluster) as client:
        _announce(client)
        yield client
