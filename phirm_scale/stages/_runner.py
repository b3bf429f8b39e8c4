"""Run one Dask task per unit of work (a field), on any ``--cluster``, with a progress bar."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Mapping, Sequence

__all__ = ["run_field_tasks", "progress_bar", "rich_progress"]


def _task_key(description: str, job: tuple, i: int) -> str:
    from dask.base import tokenize

    return f"{description}-{i}-{tokenize(job)}"


def run_field_tasks(func: Callable, jobs: Sequence[tuple], *, cluster: str = "local",
                    progress: bool = True, description: str = "fields",
                    resources: Mapping[str, float] | None = None) -> list:
    """Run ``func(*job)`` for every job, one Dask task each; returns results in job order.

    ``cluster`` is a ``--cluster`` spec (:func:`phirm_scale.cluster.open_cluster`): with a
    distributed client the tasks are submitted to it with ``client.submit`` (so
    ``resources``, e.g. ``{"GPU": 1}``, are honoured: graph optimisation cannot drop them) and
    the progress bar is fed by ``as_completed``; with ``'threads'`` Dask's threaded scheduler
    runs them here (``resources`` are then meaningless and ignored). The first failing task
    cancels the rest and its exception is raised.
    """
    from phirm_scale.cluster import open_cluster

    jobs = list(jobs)
    if not jobs:
        return []
    results: list[Any] = [None] * len(jobs)
    gpu = bool(resources and resources.get("GPU"))
    with open_cluster(cluster, quiet=not progress, gpu=gpu) as client, progress_bar(
            progress, description, len(jobs)) as advance:
        if client is None:
            import dask

            if progress:
                from dask.callbacks import Callback

                class _CB(Callback):
                    def _posttask(self, key, result, dsk, state, id):  # noqa: A002
                        if isinstance(key, str) and key.startswith(description):
                            advance()
                cb = _CB()
            else:
                cb = contextlib.nullcontext()
            tasks = [dask.delayed(func, pure=False)(
                *j, dask_key_name=_task_key(description, j, i)) for i, j in enumerate(jobs)]
            with cb:
                results = list(dask.compute(*tasks, scheduler="threads"))
        else:
            from distributed import as_completed

            keys = [_task_key(description, j, i) for i, j in enumerate(jobs)]
            extra = {"resources": dict(resources)} if resources else {}
            futures = [client.submit(func, *j, key=k, pure=False, **extra)
                       for j, k in zip(jobs, keys)]
            index = {f.key: i for i, f in enumerate(futures)}
            try:
                for fut in as_completed(futures):
                    results[index[fut.key]] = fut.result()
                    advance()
            except BaseException:
                client.cancel(futures)
                raise
    return results


def rich_progress():
    """The progress display every stage uses: description, bar, n/total, elapsed, remaining,
    on stderr (stdout stays for results)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(file=sys.stderr), transient=False)


class progress_bar:
    """A rich progress bar on stderr (or nothing); the context value advances it by one."""

    def __init__(self, enabled: bool, description: str, total: int):
        self.enabled, self.description, self.total = enabled, description, total
        self._p = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        self._p = rich_progress()
        self._p.start()
        tid = self._p.add_task(self.description, total=self.total)
        return lambda: self._p.advance(tid)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.stop()
        return False
