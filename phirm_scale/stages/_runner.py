"""The one way every plate stage runs its tasks.

A stage builds a list of small frozen dataclasses (one per task, usually one field each) and
calls :func:`run_tasks` with the task function. The runner

* takes ``cluster`` as a ``--cluster`` spec string (opened here and closed at the end, see
  :func:`phirm_scale.cluster.open_cluster`) **or** an open :class:`distributed.Client`
  (used as it is and left open), or ``'threads'`` (Dask's threaded scheduler, no cluster);
* submits one task per item with ``client.submit`` so ``resources`` (e.g. ``{"GPU": 1}``)
  are honoured (graph optimisation cannot drop them, unlike ``dask.annotate``);
* shows one progress display (:func:`phirm_scale.progress.progress_bar`, on stderr);
* applies one cancellation rule: the first failing task (or Ctrl-C) cancels every task not
  yet finished and its exception is raised; results of finished tasks are already on disk,
  so a rerun only does what is missing.

Task functions must open only their own field (:func:`phirm_scale.plate.open_field_view`),
never the whole plate: start-up cost of a task then does not grow with the plate.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from phirm_scale.progress import progress_bar

__all__ = [
    "run_tasks",
    "run_delayed",
    "using_client",
]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def using_client(
    cluster: Any = "local", *, quiet: bool = False, gpu: bool = False
) -> Iterator[Any]:
    """Yield a :class:`distributed.Client` for ``cluster`` (or None for ``'threads'``).

    A Client passed in is yielded unchanged and not closed; a spec string is opened with
    :func:`phirm_scale.cluster.open_cluster` (``gpu``: GPU workers for ``local``) and closed
    on exit.
    """
    if cluster is None:
        cluster = "threads"
    if not isinstance(cluster, str):
        yield cluster
        return
    from phirm_scale.cluster import open_cluster

    with open_cluster(cluster, quiet=quiet, gpu=gpu) as client:
        yield client


def _task_key(description: str, task: Any, i: int) -> str:
    from dask.base import tokenize

    return f"{description}-{i}-{tokenize(task)}"


def _collect(futures: Sequence[Any], client: Any, advance: Callable[[], None]) -> list[Any]:
    """Gather the results of ``futures`` in order, advancing the progress display.

    The display advances as each future finishes; the first failure (or interrupt) cancels
    the rest and is raised.
    """
    from distributed import as_completed

    results: list[Any] = [None] * len(futures)
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for fut in as_completed(futures):
            results[index[fut.key]] = fut.result()
            # release at once: a finished task whose result sat on a worker that dies later
            # would otherwise be recomputed while we still hold it, and that rerun (which
            # rewrites its field) could outlive the stage
            fut.release()
            advance()
    except BaseException:
        client.cancel(list(futures))
        raise
    return results


def _threaded(
    tasks: Sequence[Any], keys: set[Any], advance: Callable[[], None], progress: bool
) -> list[Any]:
    import dask

    cb: contextlib.AbstractContextManager[Any]
    if progress:
        from dask.callbacks import Callback

        class _CB(Callback):
            def _posttask(
                self,
                key: Any,
                result: Any,
                dsk: Any,
                state: Any,
                id: Any,  # noqa: A002 - dask calls the callback with this name
            ) -> None:
                if key in keys:
                    advance()

        cb = _CB()
    else:
        cb = contextlib.nullcontext()
    with cb:
        return list(dask.compute(*tasks, scheduler="threads"))


def run_tasks(
    func: Callable[[Any], Any],
    tasks: Sequence[Any],
    *,
    cluster: Any = "local",
    progress: bool = True,
    description: str = "fields",
    resources: Mapping[str, float] | None = None,
) -> list[Any]:
    """Run ``func(task)`` for every task, one Dask task each; results in task order.

    Parameters
    ----------
    func : callable
        Module-level function of one argument (picklable).
    tasks : sequence
        Task arguments, normally frozen dataclasses naming one field each.
    cluster : str or distributed.Client
        ``--cluster`` spec or an open client (left open).
    progress : bool
        Progress display on stderr.
    description : str
        Label of the display and prefix of the task keys (``"<description>-<i>-<token>"``).
    resources : mapping, optional
        Worker resources every task needs, e.g. ``{"GPU": 1}`` (ignored by ``'threads'``).
    """
    tasks = list(tasks)
    if not tasks:
        return []
    keys = [_task_key(description, t, i) for i, t in enumerate(tasks)]
    gpu = bool(resources and resources.get("GPU"))
    with (
        using_client(cluster, quiet=not progress, gpu=gpu) as client,
        progress_bar(description, len(tasks), enabled=progress) as advance,
    ):
        log.debug(
            "%s: %d task(s) on %s%s",
            description,
            len(tasks),
            "the threaded scheduler" if client is None else getattr(client, "scheduler", client),
            f", resources {dict(resources)}" if resources else "",
        )
        if client is None:
            import dask

            delayed = [
                dask.delayed(func, pure=False)(t, dask_key_name=k)
                for t, k in zip(tasks, keys, strict=True)
            ]
            return _threaded(delayed, set(keys), advance, progress)
        _check_resources(client, resources, description)
        extra = {"resources": dict(resources)} if resources else {}
        futures = [
            client.submit(func, t, key=k, pure=False, **extra)
            for t, k in zip(tasks, keys, strict=True)
        ]
        return _collect(futures, client, advance)


def run_delayed(
    delayeds: Sequence[Any],
    *,
    cluster: Any = "threads",
    progress: bool = True,
    description: str = "tasks",
) -> list[Any]:
    """Compute Dask ``Delayed`` objects the way :func:`run_tasks` runs tasks.

    The objects may be built on Dask arrays of any chunking; the cluster handling, progress
    display and cancellation rule are those of :func:`run_tasks`.
    """
    delayeds = list(delayeds)
    if not delayeds:
        return []
    with (
        using_client(cluster, quiet=not progress) as client,
        progress_bar(description, len(delayeds), enabled=progress) as advance,
    ):
        log.debug("%s: %d delayed object(s)", description, len(delayeds))
        if client is None:
            keys = {d.key for d in delayeds if hasattr(d, "key")}
            return _threaded(delayeds, keys, advance, progress)
        futures = client.compute(delayeds, optimize_graph=True)
        return _collect(futures, client, advance)


def _check_resources(client: Any, resources: Mapping[str, float] | None, description: str) -> None:
    """Refuse (rather than wait forever) when no worker offers ``resources``.

    Refused: a cluster with workers but none with the resource, and no adaptive or jobqueue
    cluster behind the client that may add such workers.
    """
    if not resources:
        return
    from phirm_scale.errors import PhirmError

    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if not workers:
        return  # workers may still be coming (jobqueue, adaptive): wait for them
    for w in workers.values():
        have = w.get("resources", {}) or {}
        if all(have.get(r, 0) >= v for r, v in resources.items()):
            return
    if getattr(client, "_phirm_may_grow", False):
        return
    need = ", ".join(f"{r}={v:g}" for r, v in resources.items())
    raise PhirmError(
        f"{description}: tasks need worker resources {need} but none of the "
        f"{len(workers)} workers offers them (start workers with --resources "
        f"{need.replace(', ', ',')}, or use a GPU cluster configuration)"
    )
