"""Where Dask work runs: one ``--cluster`` spec, understood by every stage and command.

``local`` (default)
    an embedded :class:`distributed.LocalCluster` sized to this machine;
``threads``
    no distributed cluster at all: Dask's threaded scheduler in this process;
``tcp://host:port`` (also ``tls://``)
    a running scheduler (checked to be a Dask scheduler before use);
``scheduler-file:PATH``
    the scheduler whose address is in ``PATH`` (``dask scheduler --scheduler-file PATH``, the
    usual way jobs started by ``sbatch`` share a scheduler);
``path/to/config.yaml`` or a shipped name (``slurm-cpu``, ``slurm-gpu``, ``pbs``, ``lsf``, ``sge``)
    a dask-jobqueue cluster built from that file (:mod:`phirm_scale.jobqueue`);
``A+B`` (e.g. ``slurm-cpu+slurm-gpu``)
    mixed pools on one scheduler: the cluster of ``A`` starts the scheduler and its jobs, then
    the jobs of ``B`` (and further configurations) are submitted against that same scheduler.

Options (keyword arguments of :func:`open_cluster`; on the command line the global options
``phirm-scale --jobs N --adapt MIN:MAX --cluster-timeout S COMMAND ...``): ``jobs`` fixed
number of jobs per pool, ``adapt`` adaptive ``(minimum, maximum)`` jobs per pool, ``timeout``
seconds a start-up may take (default 10): an unreachable address, something that is not a
Dask scheduler, a bad interface, a job the batch system refuses all end within it with one
:class:`~phirm_scale.errors.PhirmError` line.

A :class:`distributed.Client` given instead of a spec is used as it is and never closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phirm_scale.errors import PhirmError
from phirm_scale.jobqueue import CONFIG_DIR, JobPools, known_configs, resolve_config

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

__all__ = [
    "open_cluster",
    "visible_gpus",
    "CONFIG_DIR",
    "known_configs",
    "resolve_config",
    "parse_adapt",
    "set_defaults",
    "probe_scheduler",
    "GPU_WORKER_THREADS",
]

log = logging.getLogger(__name__)

#: Process-wide defaults of the cluster options (the CLI's global options set them).
_DEFAULTS: dict[str, Any] = {"jobs": None, "adapt": None, "timeout": 10.0}


def set_defaults(
    *,
    jobs: int | None = None,
    adapt: tuple[int, int] | str | None = None,
    timeout: float | None = None,
) -> None:
    """Set the defaults of :func:`open_cluster`'s ``jobs``, ``adapt`` and ``timeout``."""
    if jobs is not None:
        if int(jobs) < 1:
            raise PhirmError(f"--jobs must be >= 1, got {jobs}")
        _DEFAULTS["jobs"] = int(jobs)
    if adapt is not None:
        _DEFAULTS["adapt"] = parse_adapt(adapt)
    if timeout is not None:
        if not float(timeout) > 0:
            raise PhirmError(f"--cluster-timeout must be > 0 seconds, got {timeout}")
        _DEFAULTS["timeout"] = float(timeout)


def parse_adapt(value: str | tuple[int, int]) -> tuple[int, int]:
    """``'0:8'`` -> ``(0, 8)``; PhirmError unless ``0 <= MIN <= MAX`` and ``MAX >= 1``."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", value)
        if not m:
            raise PhirmError(f"--adapt {value!r}: expected MIN:MAX jobs, e.g. 0:8")
        lo, hi = int(m.group(1)), int(m.group(2))
    else:
        lo, hi = (int(v) for v in value)
    if lo > hi or hi < 1:
        raise PhirmError(f"--adapt {lo}:{hi}: need 0 <= MIN <= MAX and MAX >= 1")
    return lo, hi


def visible_gpus() -> int:
    """CUDA devices this process sees (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


#: task threads of one local GPU worker (they feed one batcher per model: phirm_scale.batcher)
GPU_WORKER_THREADS = max(4, min(8, (os.cpu_count() or 1) // 2))


def _add_gpu_workers(cluster: LocalCluster, n: int, threads: int) -> None:
    """Add one Nanny per CUDA device beside the CPU workers.

    Each has ``resources={'GPU': 1}`` and ``CUDA_VISIBLE_DEVICES`` set to its device.
    """
    base = dict(next(iter(cluster.worker_spec.values())))
    for i in range(n):
        opts = dict(base["options"])
        opts.update(nthreads=threads, resources={"GPU": 1}, env={"CUDA_VISIBLE_DEVICES": str(i)})
        cluster.worker_spec[f"gpu-{i}"] = {"cls": base["cls"], "options": opts}
    cluster.sync(cluster._correct_state)


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:400]


def probe_scheduler(address: str, timeout: float) -> dict:
    """Ask ``address`` for its identity within ``timeout`` seconds.

    Raises PhirmError unless a Dask scheduler answers (refused, unreachable, silent, or
    something else, e.g. a web server).
    """
    import asyncio
    import concurrent.futures

    from distributed.comm import connect
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        proto, loc = parse_address(address)
        host, port = parse_host_port(loc) if proto in ("tcp", "tls") else (None, None)
    except (ValueError, TypeError) as exc:
        raise PhirmError(f"{address}: not a scheduler address ({_one_line(exc)})") from None
    if proto == "tcp":  # nobody listening: say so now rather than retry until the timeout
        import socket

        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except ConnectionRefusedError:
            raise PhirmError(
                f"{address}: connection refused (no Dask scheduler listens there)"
            ) from None
        except OSError as exc:
            raise PhirmError(
                f"{address}: cannot reach a Dask scheduler ({_one_line(exc)})"
            ) from None

    async def ask() -> object:  # the scheduler's identity, or whatever answered
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def run() -> object:
        return asyncio.run(asyncio.wait_for(ask(), timeout))

    ex = concurrent.futures.ThreadPoolExecutor(1)
    try:
        resp = ex.submit(run).result(timeout=timeout + 2)
    except (concurrent.futures.TimeoutError, TimeoutError):
        raise PhirmError(
            f"{address}: no Dask scheduler answered within {timeout:g} s "
            "(not a scheduler address, or unreachable)"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise PhirmError(f"{address}: cannot reach a Dask scheduler ({_one_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - garbage on the wire: not a scheduler
        log.debug("probe of %s: %r", address, exc)
        raise PhirmError(
            f"{address}: not a Dask scheduler (it answered something that is not Dask's protocol)"
        ) from None
    finally:
        ex.shutdown(wait=False)
    if not isinstance(resp, dict) or resp.get("type") != "Scheduler":
        what = resp.get("type") if isinstance(resp, dict) else type(resp).__name__
        raise PhirmError(f"{address}: answers, but is not a Dask scheduler ({what})")
    return resp


def _scheduler_file_address(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = json.loads(path.read_text())
            return str(info["address"])
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise PhirmError(
                    f"{path}: scheduler file not found (waited {timeout:g} s)"
                ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if time.monotonic() > deadline:
                raise PhirmError(f"{path}: not a Dask scheduler file ({_one_line(exc)})") from None
        time.sleep(0.2)


def _announce(client: Client, quiet: bool, extra: str = "") -> None:
    link = getattr(client, "dashboard_link", None)
    log.log(logging.DEBUG if quiet else logging.INFO, "dask dashboard: %s%s", link, extra)


@contextlib.contextmanager
def open_cluster(
    spec: Any = "local",
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    quiet: bool = False,
    gpu: bool = False,
    jobs: int | None = None,
    adapt: tuple[int, int] | str | None = None,
    timeout: float | None = None,
) -> Iterator[Client | None]:
    """Open the cluster named by ``spec`` and yield a :class:`distributed.Client`.

    ``threads`` yields ``None``. What this function started is closed on exit; a Client
    passed as ``spec`` is yielded unchanged and left open.

    ``gpu=True`` with ``local``: one more worker per visible CUDA device
    (:func:`visible_gpus`), with ``resources={'GPU': 1}`` and ``GPU_WORKER_THREADS`` threads;
    none visible is an error at once (a GPU task would otherwise wait forever).

    ``jobs``, ``adapt`` and ``timeout`` default to :func:`set_defaults`' values (see the module
    documentation). The dashboard link is printed (to stderr) for a distributed cluster.
    """
    if spec is not None and not isinstance(spec, str):
        yield spec  # an open Client: used, never closed here
        return
    timeout = float(timeout if timeout is not None else _DEFAULTS["timeout"])
    jobs = jobs if jobs is not None else _DEFAULTS["jobs"]
    adapt = parse_adapt(adapt) if adapt is not None else _DEFAULTS["adapt"]
    spec = (spec or "local").strip()
    if spec == "threads":
        yield None
        return

    from distributed import Client, LocalCluster

    if spec == "local":
        import dask

        n_gpu = visible_gpus() if gpu else 0
        if gpu and n_gpu == 0:
            raise PhirmError(
                "--gpu with --cluster local: no CUDA device is visible on this machine"
            )
        ncpu = os.cpu_count() or 1
        workers = n_workers or max(1, min(ncpu, 4))
        threads = threads_per_worker or max(1, ncpu // workers)
        # distributed's default MALLOC_TRIM_THRESHOLD_=65536 makes glibc trim after nearly
        # every free: our per-field tasks allocate and free tens of MB many times, and ran
        # ~2.5x slower with it (measured on the score stage). 256 MiB keeps memory bounded.
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
        environ["MALLOC_TRIM_THRESHOLD_"] = str(256 * 2**20)
        with (
            dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
            LocalCluster(
                n_workers=workers,
                threads_per_worker=threads,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            if n_gpu:
                _add_gpu_workers(cluster, n_gpu, GPU_WORKER_THREADS)
                client.wait_for_workers(workers + n_gpu, timeout=120)
            _announce(client, quiet)
            yield client
        return

    if spec.startswith("scheduler-file:"):
        path = Path(spec.split(":", 1)[1]).expanduser()
        address = _scheduler_file_address(path, timeout)
        probe_scheduler(address, timeout)
        with _connect(address, timeout) as client:
            _announce(client, quiet)
            yield client
        return

    if re.match(r"^[a-z]+://", spec):
        if not spec.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise PhirmError(
                f"--cluster {spec}: not a Dask scheduler address (tcp://HOST:PORT "
                "or tls://HOST:PORT)"
            )
        if spec.startswith(("tcp://", "tls://")):
            probe_scheduler(spec, timeout)
        with _connect(spec, timeout) as client:
            _announce(client, quiet)
            yield client
        return

    configs = [resolve_config(part.strip()) for part in spec.split("+")]
    with (
        JobPools(configs, jobs=jobs, adapt=adapt, timeout=timeout) as pools,
        Client(pools.primary, timeout=f"{timeout}s") as client,
    ):
        client._phirm_may_grow = True  # jobs may still be queued: no "no such worker" error
        _announce(client, quiet, pools.describe())
        yield client


@contextlib.contextmanager
def _connect(address: str, timeout: float) -> Iterator[Client]:
    from distributed import Client

    try:
        client = Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        raise PhirmError(
            f"{address}: cannot connect to the Dask scheduler ({_one_line(exc)})"
        ) from None
    with client:
        yield client
