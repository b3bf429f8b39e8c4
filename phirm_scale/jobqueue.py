"""dask-jobqueue clusters built from YAML.

The shipped configurations live in ``phirm_scale/cluster_configs``.

A file holds one mapping:

``kind``
    ``slurm``, ``pbs``, ``lsf`` or ``sge``;
``cluster``
    keyword arguments of the dask-jobqueue class (``SLURMCluster`` ...), in dask-jobqueue's
    own names: ``queue``, ``account``, ``cores``, ``processes``, ``memory``, ``walltime``,
    ``log_directory``, ``local_directory``, ``job_extra_directives``, ``worker_extra_args``,
    ``scheduler_options``, ...; an unknown key is an error naming it;
``scale`` (optional)
    ``jobs: N`` or ``minimum_jobs``/``maximum_jobs`` (adaptive); default one job.

Differences from calling dask-jobqueue directly, each fixing a pitfall its users hit:

* ``interface`` applies to the **workers only** (it becomes ``--interface`` in
  ``worker_extra_args``); the scheduler, on the submitting node, binds what
  ``scheduler_options`` says (dask-jobqueue would bind the scheduler to the workers' interface,
  which the login node usually lacks);
* strings are never expanded here: ``local_directory`` stays literal in the job script and
  is expanded on the compute node, written in double quotes (a path with spaces is one
  argument); a bare ``$TMPDIR`` (any ``$NAME`` alone) becomes ``"${TMPDIR:-/tmp}"``: where the
  variable is unset an unquoted ``$TMPDIR`` vanishes, ``--local-directory`` takes the next
  option as its value and every worker dies at argument parsing;
* ``log_directory`` is a folder of the submitting node (dask-jobqueue makes it there, the
  batch system writes the job logs into it over the shared file system): ``~`` is expanded;
* LSF: ``-M`` comes with the same amount as ``-R "rusage[mem=...]"`` (the scheduler then
  places the job where that memory is free, not only kills it beyond); ``mem`` may be
  written with units (``32GiB``);
* job submission errors (``sbatch`` refusing a job) are raised at start-up, quoting the batch
  system's message, instead of being logged while the run waits forever.

:class:`JobPools` starts several configurations on **one scheduler** (``slurm-cpu+slurm-gpu``):
the first cluster owns the scheduler; the jobs of the others are submitted with that
scheduler's address. Limits: each pool scales by its own ``scale``/``--jobs``/``--adapt``;
an adaptive pool sizes itself from all pending tasks of the scheduler (not only those it can
run); closing the run cancels every pool's jobs.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import warnings
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from phirm_scale.errors import PhirmError

if TYPE_CHECKING:
    from dask_jobqueue.core import JobQueueCluster

__all__ = [
    "cluster_from_yaml",
    "load_config",
    "JobPools",
    "KINDS",
    "job_scripts",
    "CONFIG_DIR",
    "known_configs",
    "resolve_config",
]

# each pool of a mixed cluster subscribes to the one scheduler (see _relay_worker_status)
warnings.filterwarnings(
    "ignore", message="Scheduler already contains a plugin with name worker-status"
)

KINDS = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "lsf": "LSFCluster",
    "sge": "SGECluster",
}
_TOP_KEYS = ("kind", "cluster", "scale")
_SCALE_KEYS = ("jobs", "minimum_jobs", "maximum_jobs")


#: Folder of the shipped dask-jobqueue configurations (package data).
CONFIG_DIR = Path(__file__).resolve().parent / "cluster_configs"


def known_configs() -> list[str]:
    """Names of the shipped configurations (``--cluster NAME``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(spec: str) -> Path:
    """Resolve a YAML path or a shipped name to the file; PhirmError listing the known names."""
    p = Path(spec).expanduser()
    if p.suffix in {".yaml", ".yml"}:
        if not p.is_file():
            raise PhirmError(f"{spec}: cluster configuration file not found")
        return p
    cand = CONFIG_DIR / f"{spec}.yaml"
    if cand.is_file():
        return cand
    raise PhirmError(
        f"--cluster {spec!r}: unknown; use local, threads, tcp://HOST:PORT, "
        f"scheduler-file:PATH, a YAML file, or one of the shipped configurations: "
        f"{', '.join(known_configs())}"
    )


def _params(*funcs: Callable[..., object]) -> set[str]:
    out: set[str] = set()
    for f in funcs:
        for name, p in inspect.signature(f).parameters.items():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name != "self":
                out.add(name)
    return out


def _allowed_cluster_keys(kind: str) -> set[str]:
    import dask_jobqueue
    from dask_jobqueue.core import Job, JobQueueCluster

    cls = getattr(dask_jobqueue, KINDS[kind])
    keys = _params(cls.__init__, JobQueueCluster.__init__, cls.job_cls.__init__, Job.__init__)
    return keys - {"scheduler", "scheduler_cls", "loop", "asynchronous", "config_name"}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a configuration; PhirmError naming the file and the bad key."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        msg = " ".join(str(exc).split())
        raise PhirmError(f"{path}: unreadable cluster configuration ({msg})") from None
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise PhirmError(f"{path}: cluster configuration needs a 'kind' ({', '.join(KINDS)})")
    for k in cfg:
        if k not in _TOP_KEYS:
            raise PhirmError(
                f"{path}: unknown key {k!r} (a configuration has {', '.join(_TOP_KEYS)})"
            )
    kind = str(cfg["kind"]).lower()
    if kind not in KINDS:
        raise PhirmError(
            f"{path}: unknown cluster kind {kind!r}; expected one of {', '.join(KINDS)}"
        )
    kwargs = cfg.get("cluster") or {}
    if not isinstance(kwargs, dict):
        raise PhirmError(f"{path}: 'cluster' must be a mapping of {KINDS[kind]} arguments")
    allowed = _allowed_cluster_keys(kind)
    for k in kwargs:
        if k not in allowed:
            raise PhirmError(
                f"{path}: unknown key 'cluster.{k}' for kind {kind} (not an "
                f"argument of dask_jobqueue.{KINDS[kind]})"
            )
    scale = cfg.get("scale") or {"jobs": 1}
    if not isinstance(scale, dict):
        raise PhirmError(f"{path}: 'scale' must be a mapping ({', '.join(_SCALE_KEYS)})")
    for k in scale:
        if k not in _SCALE_KEYS:
            raise PhirmError(f"{path}: unknown key 'scale.{k}' ({', '.join(_SCALE_KEYS)})")
    for k, v in scale.items():
        if not isinstance(v, int) or v < 0:
            raise PhirmError(f"{path}: scale.{k} must be an integer >= 0, got {v!r}")
    return {"kind": kind, "cluster": dict(kwargs), "scale": dict(scale), "path": path}


_BARE_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _shell_word(text: str) -> str:
    """Quote ``text`` for the job script's shell, keeping its ``$`` expansions for the node.

    ``$NAME`` or ``${NAME}`` alone falls back to ``/tmp`` where the variable is unset.
    Already quoted text is left as it is.
    """
    text = str(text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text
    m = _BARE_VARIABLE.fullmatch(text)
    if m:
        text = "${%s:-/tmp}" % (m.group(1) or m.group(2))
    return '"' + re.sub(r'(["\\`])', r"\\\1", text) + '"'


def _lsf_memory(kwargs: dict[str, Any]) -> None:
    """Give an LSF job ``rusage[mem]`` equal to its ``-M`` (in the site's LSF units)."""
    from dask.utils import parse_bytes
    from dask_jobqueue.lsf import lsf_detect_units, lsf_format_bytes_ceil

    mem = kwargs.get("mem")
    if isinstance(mem, str):
        kwargs["mem"] = mem = parse_bytes(mem)
    if mem is None and kwargs.get("memory") is not None:
        mem = parse_bytes(kwargs["memory"])  # dask-jobqueue's -M default: the workers' memory
    extra = [str(d) for d in kwargs.get("job_extra_directives") or []]
    if mem is None or any("rusage[" in d for d in extra):
        return
    units = kwargs.get("lsf_units") or lsf_detect_units()
    extra.append(f'-R "rusage[mem={lsf_format_bytes_ceil(mem, lsf_units=units)}]"')
    kwargs["job_extra_directives"] = extra


def _cluster_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(cfg["cluster"])
    if kwargs.get("local_directory") is not None:
        kwargs["local_directory"] = _shell_word(kwargs["local_directory"])
    if kwargs.get("log_directory") is not None:
        kwargs["log_directory"] = str(Path(str(kwargs["log_directory"])).expanduser())
    if cfg["kind"] == "lsf":
        _lsf_memory(kwargs)
    iface = kwargs.pop("interface", None)
    if iface:  # workers only (see the module documentation)
        extra = list(kwargs.get("worker_extra_args") or [])
        if "--interface" not in extra:
            extra += ["--interface", str(iface)]
        kwargs["worker_extra_args"] = extra
    sopts = dict(kwargs.get("scheduler_options") or {})
    sopts.setdefault("dashboard_address", ":0")
    kwargs["scheduler_options"] = sopts
    return kwargs


def _attached_scheduler(address: str) -> type:
    """Make a stand-in scheduler class that starts no scheduler itself.

    The cluster built with it submits jobs whose workers connect to ``address`` (another
    cluster's scheduler).
    """
    from distributed.core import Status

    class AttachedScheduler:
        def __init__(self, **_options: object) -> None:
            self.address = address
            self.status = Status.running

        def __await__(self) -> Generator[Any, None, AttachedScheduler]:
            async def ready() -> AttachedScheduler:
                return self

            return ready().__await__()

        async def close(self) -> None:
            return None

    return AttachedScheduler


def _relay_worker_status(primary: JobQueueCluster, attached: Sequence[JobQueueCluster]) -> None:
    """Relay the scheduler's worker-status events from the first cluster to the other pools.

    A scheduler keeps one worker-status subscriber (the last cluster that connected), but
    every pool must see workers come and go (that is how lost jobs are replaced): the first
    cluster subscribes again and hands each event on to the attached pools.
    """
    import asyncio
    import copy

    from distributed.core import Status
    from distributed.deploy.cluster import SchedulerInfo

    orig = primary._update_worker_status

    def relay(op: str, msg: dict[str, Any]) -> None:
        for cl in attached:
            if cl.status != Status.closed:
                loop = cl.loop  # set: these clusters are synchronous (built outside a loop)
                assert loop is not None
                loop.add_callback(cl._update_worker_status, op, copy.deepcopy(msg))
        orig(op, msg)

    async def resubscribe() -> None:
        old = primary._watch_worker_status_comm
        scheduler_comm = primary.scheduler_comm  # set once the cluster has started
        assert scheduler_comm is not None
        comm = await scheduler_comm.live_comm()
        comm.name = "Cluster worker status"
        await comm.write({"op": "subscribe_worker_status"})
        primary.scheduler_info = SchedulerInfo(await comm.read())
        primary._watch_worker_status_comm = comm
        primary._watch_worker_status_task = asyncio.ensure_future(
            primary._watch_worker_status(comm)
        )
        if old is not None:
            await old.close()

    primary._update_worker_status = relay  # type: ignore[method-assign]  # the relay is the point
    primary.sync(resubscribe)


def cluster_from_yaml(
    path: str | Path,
    *,
    scale: bool = True,
    name: str | None = None,
    scheduler_address: str | None = None,
) -> JobQueueCluster:
    """Build the dask-jobqueue cluster described by ``path``.

    Unless ``scale=False``, ask for its jobs as its ``scale`` says. With
    ``scheduler_address`` its workers join that scheduler (see :class:`JobPools`).
    ``scale=False`` is for ``cluster.job_script()``.
    """
    cfg = load_config(path)
    cluster = _build(cfg, name=name, scheduler_address=scheduler_address)
    if scale:
        _scale(cluster, cfg, jobs=None, adapt=None, timeout=60.0)
    return cluster


def _build(
    cfg: Mapping[str, Any], *, name: str | None, scheduler_address: str | None
) -> JobQueueCluster:
    import dask_jobqueue

    cls = getattr(dask_jobqueue, KINDS[cfg["kind"]])
    kwargs = _cluster_kwargs(cfg)
    if scheduler_address is not None:
        kwargs["scheduler_cls"] = _attached_scheduler(scheduler_address)
    try:
        cluster = cls(name=name or Path(cfg["path"]).stem, **kwargs)
    except Exception as exc:  # noqa: BLE001 - bad interface, bad values: one line
        msg = " ".join(str(exc).split())
        msg = re.sub(r"^Cluster failed to start: ", "", msg)
        raise PhirmError(f"{cfg['path']}: cannot start the {cfg['kind']} cluster ({msg})") from None
    if scheduler_address is not None:
        cluster.shutdown_scheduler = False  # the scheduler belongs to the first pool
    return cluster


def _submission_error(exc: BaseException) -> str:
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errs = [
        ln
        for ln in lines
        if re.search(r"error|denied|invalid|refused", ln, re.I)
        and not ln.startswith(("Command", "Exit code"))
    ]
    return (errs[-1] if errs else " ".join(text.split()))[:400]


def _submit_now(cluster: JobQueueCluster, cfg: Mapping[str, Any], timeout: float) -> None:
    """Submit the jobs the cluster wants now; the batch system's refusal is one error."""

    async def submit() -> None:
        await cluster._correct_state()
        # scale() already started a submission in the background, whose failure would only
        # be logged: a job without an id was refused; submit it again to get the message
        for job in list(cluster.workers.values()):
            if getattr(job, "job_id", None) is None:
                await job.start()

    try:
        cluster.sync(submit, callback_timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError":
            raise PhirmError(
                f"{cfg['path']}: job submission did not finish within {timeout:g} s"
            ) from None
        raise PhirmError(
            f"{cfg['path']}: the batch system refused the job: {_submission_error(exc)}"
        ) from None


def _scale(
    cluster: JobQueueCluster,
    cfg: Mapping[str, Any],
    *,
    jobs: int | None,
    adapt: tuple[int, int] | None,
    timeout: float,
) -> str:
    spec = cfg["scale"]
    if adapt is None and jobs is None and ("minimum_jobs" in spec or "maximum_jobs" in spec):
        adapt = (spec.get("minimum_jobs", 0), spec.get("maximum_jobs", 1))
    if adapt is not None:
        lo, hi = adapt
        cluster.scale(jobs=max(lo, 1))  # one job at once: a refused job fails now, not later
        _submit_now(cluster, cfg, timeout)
        cluster.adapt(minimum_jobs=lo, maximum_jobs=hi)
        return f"adaptive {lo}-{hi} jobs"
    n = int(jobs if jobs is not None else spec.get("jobs", 1))
    cluster.scale(jobs=n)
    _submit_now(cluster, cfg, timeout)
    return f"{n} job{'s' if n != 1 else ''}"


class JobPools:
    """One or more jobqueue configurations on one scheduler (a context manager).

    ``primary`` is the first configuration's cluster (it owns the scheduler); the others'
    workers join it. ``jobs``/``adapt`` override every file's ``scale``.
    """

    def __init__(
        self,
        configs: Iterable[str | Path],
        *,
        jobs: int | None = None,
        adapt: tuple[int, int] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.configs = [load_config(c) for c in configs]
        self.jobs, self.adapt, self.timeout = jobs, adapt, float(timeout)
        self.clusters: list[JobQueueCluster] = []
        self.scaled: list[str] = []

    @property
    def primary(self) -> JobQueueCluster:
        """The first configuration's cluster (it owns the scheduler)."""
        return self.clusters[0]

    def __enter__(self) -> JobPools:
        try:
            names: list[str] = []
            for i, cfg in enumerate(self.configs):
                name = Path(cfg["path"]).stem
                if name in names:
                    name = f"{name}-{i}"
                names.append(name)
                address = self.clusters[0].scheduler_address if self.clusters else None
                self.clusters.append(_build(cfg, name=name, scheduler_address=address))
            if len(self.clusters) > 1:
                _relay_worker_status(self.clusters[0], self.clusters[1:])
            for cl, cfg in zip(self.clusters, self.configs, strict=True):
                self.scaled.append(
                    f"{cl._name}: "
                    + _scale(cl, cfg, jobs=self.jobs, adapt=self.adapt, timeout=self.timeout)
                )
        except BaseException:
            self.close()
            raise
        return self

    def describe(self) -> str:
        """Describe the jobs asked of each pool (an empty string when none were asked)."""
        return " (" + "; ".join(self.scaled) + ")" if self.scaled else ""

    def close(self) -> None:
        """Close every pool (attached pools first, the scheduler's last)."""
        for cl in reversed(self.clusters):  # attached pools first, the scheduler last
            try:
                cl.close()
            except Exception:  # noqa: BLE001 - closing: keep closing the others
                pass
        self.clusters = []

    def __exit__(self, *exc: object) -> Literal[False]:
        self.close()
        return False


def job_scripts(spec: str) -> list[tuple[str, str]]:
    """List ``[(config path, job script)]`` of a ``--cluster`` spec of jobqueue configurations.

    Nothing is submitted (``phirm-scale cluster show``).
    """
    out = []
    for part in spec.split("+"):
        cfg = load_config(resolve_config(part.strip()))
        logs = _cluster_kwargs(cfg).get("log_directory")
        made = logs is not None and not Path(logs).exists()
        cluster = _build(cfg, name=Path(cfg["path"]).stem, scheduler_address=None)
        try:
            out.append((str(cfg["path"]), cluster.job_script()))
        finally:
            cluster.close()
            if made:  # dask-jobqueue made the log folder; showing a script leaves nothing
                with contextlib.suppress(OSError):
                    Path(str(logs)).rmdir()
    return out
