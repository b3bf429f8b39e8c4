"""Score stage: PhIRM QC of a reconstruction plate against its reference, one Dask task per field.

The stage adds scheduling only; the maths is :func:`phirm_scale.qc.score_field` (per field,
numpy) and :func:`phirm_scale.qc.to_dataset` (reduction on the client).

* :func:`plan_score` opens both plates and validates everything (layouts, shapes, channels,
  fields present and completely written, mask labels) -- every problem is one
  :class:`~phirm_scale.errors.PlateError` raised before any task exists;
* :func:`score_tasks` builds one :class:`ScoreTask` per field (or per ``fields_per_task``
  fields); the task reads only its own fields and runs the kernel;
* :func:`score_plan` runs the tasks through the stage runner
  (:func:`phirm_scale.stages._runner.run_tasks`: threaded scheduler, a ``--cluster`` spec or
  an open :class:`distributed.Client`) and reduces them into the QC :class:`xarray.Dataset`;
  :func:`score_plates` = plan + run;
* :func:`score_arrays` does the same for in-memory or Dask arrays of any chunking (each field
  is gathered into one block, then one kernel task per field).

Results do not depend on chunking, scheduler or worker count: each window is scored from the
same 8-bit pixels by the same function.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from phirm_scale import qc
from phirm_scale.errors import InputError, PlateError
from phirm_scale.flags import DEFAULT_SELFCHECK_THRESHOLD

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

    from phirm_scale.metric import PhirmParams
    from phirm_scale.plate import Plate

__all__ = [
    "ScorePlan",
    "ScoreTask",
    "parse_plate_spec",
    "plan_score",
    "score_arrays",
    "score_plan",
    "score_plates",
    "score_tasks",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ planning
def parse_plate_spec(spec: str | Path) -> tuple[str, str | None]:
    """Split ``PLATE[:CHANNEL]`` into ``(path, channel or None)``.

    The suffix after the last ``:`` is a channel when it contains no path separator and the
    whole string is not an existing path.

    Examples
    --------
    >>> parse_plate_spec("p.ome.zarr:DAPI")
    ('p.ome.zarr', 'DAPI')
    >>> parse_plate_spec("p.ome.zarr")
    ('p.ome.zarr', None)
    """
    s = str(spec)
    if ":" in s and not Path(s).exists():
        path, chan = s.rsplit(":", 1)
        if chan and "/" not in chan and "\\" not in chan and path:
            return path, chan
    return s, None


@dataclass(frozen=True)
class ScorePlan:
    """Everything a score run needs, validated (see :func:`plan_score`)."""

    reference: str
    reconstruction: str
    reference_channel: int
    reconstruction_channel: int
    reference_channel_name: str
    reconstruction_channel_name: str
    keys: tuple  # tuple[FieldKey, ...] in plate order
    rows: tuple
    columns: tuple
    field_shape: tuple
    window: int | None
    mask_label: str | None = None
    mask_sources: Mapping = dc_field(default_factory=dict)  # FieldKey -> plate path

    def attrs(self) -> dict[str, Any]:
        """Provenance attributes of the QC Dataset."""
        return {
            "reference": self.reference,
            "reference_channel": self.reference_channel_name,
            "reconstruction": self.reconstruction,
            "reconstruction_channel": self.reconstruction_channel_name,
            "mask_label": self.mask_label,
            "window": "field" if self.window is None else int(self.window),
            "field_shape": [int(s) for s in self.field_shape],
            "n_fields": len(self.keys),
        }


def _open(path: str | Path) -> Plate:
    from phirm_scale.plate import open_plate

    return open_plate(path)


def plan_score(
    reference: str | Path | Plate,
    reconstruction: str | Path | Plate,
    *,
    reference_channel: str | int | None = None,
    reconstruction_channel: str | int | None = None,
    window: int | str | None = 256,
    mask_label: str | None = None,
) -> ScorePlan:
    """Open and validate both plates; raise one :class:`PlateError` for the first problem.

    Parameters
    ----------
    reference, reconstruction : str, Path or Plate
        The plates (``PLATE[:CHANNEL]`` strings accepted).
    reference_channel : str or int, optional
        Default: the channel after ``:`` in ``reference``, else channel 0.
    reconstruction_channel : str or int, optional
        Default: the channel after ``:``, else the reference channel's name when the
        reconstruction has it, else channel 0.
    window : int, 'field' or None
        Window edge (see :func:`phirm_scale.qc.window_grid`).
    mask_label : str, optional
        A label image per field (nonzero = inpainted) read from the reference plate, or from
        the reconstruction plate where the reference lacks it; every field must have it.

    Returns
    -------
    ScorePlan
    """
    from phirm_scale.plate import Plate

    win = qc.parse_window(window)
    plates = []
    for what, obj, chan in (
        ("reference", reference, reference_channel),
        ("reconstruction", reconstruction, reconstruction_channel),
    ):
        if isinstance(obj, Plate):
            plates.append((obj, chan))
            continue
        path, spec_chan = parse_plate_spec(obj)
        if not Path(path).exists():
            raise PlateError(f"{path}: {what} plate not found")
        plates.append((_open(path), chan if chan is not None else spec_chan))
    (ref, rch), (rec, cch) = plates

    if Path(ref.path).resolve() == Path(rec.path).resolve() and rch == cch:
        log.warning("reference and reconstruction are the same plate and channel")
    ri = ref.channel_index(rch if rch is not None else 0)
    if cch is None:
        ref_name = ref.channel_names[ri]
        cch = ref_name if ref_name in rec.channel_names else 0
    ci = rec.channel_index(cch)

    if list(ref.rows) != list(rec.rows) or list(ref.columns) != list(rec.columns):
        raise PlateError(
            f"{rec.path}: plate layout {len(rec.rows)}x{len(rec.columns)} "
            f"(rows {','.join(rec.rows)}; columns {','.join(rec.columns)}) differs from the "
            f"reference {ref.path} ({len(ref.rows)}x{len(ref.columns)}, rows "
            f"{','.join(ref.rows)}; columns {','.join(ref.columns)})"
        )
    if tuple(ref.field_shape) != tuple(rec.field_shape):
        raise PlateError(
            f"{rec.path}: field shape {tuple(rec.field_shape)} differs from the "
            f"reference {ref.path} field shape {tuple(ref.field_shape)}"
        )
    if min(ref.field_shape) < 1:
        raise PlateError(f"{ref.path}: empty fields of shape {tuple(ref.field_shape)}")
    keys = list(ref.fields)
    if not keys:  # open_plate already refuses plates without fields; keep the guard
        raise PlateError(f"{ref.path}: plate has no fields")
    rec_set = set(rec.fields)
    missing = [k for k in keys if k not in rec_set]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise PlateError(
            f"{rec.path}: reconstruction lacks field {missing[0]}{more} of the reference {ref.path}"
        )
    extra = [k for k in rec.fields if k not in set(keys)]
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise PlateError(
            f"{rec.path}: reconstruction has field {extra[0]}{more} that the "
            f"reference {ref.path} lacks"
        )
    for plate in (ref, rec):
        incomplete = [k for k in keys if not plate.field_complete(k)]
        if incomplete:
            more = f" and {len(incomplete) - 1} more" if len(incomplete) > 1 else ""
            raise PlateError(f"{plate.path}: field {incomplete[0]}{more} not (completely) written")
    mask_sources = {}
    if mask_label:
        for k in keys:
            if ref.has_label(k, mask_label):
                mask_sources[k] = str(Path(ref.path).resolve())
            elif rec.has_label(k, mask_label):
                mask_sources[k] = str(Path(rec.path).resolve())
            else:
                raise PlateError(
                    f"{ref.path}: field {k} has no label {mask_label!r} (nor in {rec.path})"
                )
    return ScorePlan(
        reference=str(Path(ref.path).resolve()),
        reconstruction=str(Path(rec.path).resolve()),
        reference_channel=ri,
        reconstruction_channel=ci,
        reference_channel_name=ref.channel_names[ri],
        reconstruction_channel_name=rec.channel_names[ci],
        keys=tuple(keys),
        rows=tuple(ref.rows),
        columns=tuple(ref.columns),
        field_shape=tuple(int(s) for s in ref.field_shape),
        window=win,
        mask_label=mask_label or None,
        mask_sources=mask_sources,
    )


# ---------------------------------------------------------------------------------- tasks
def _one_cv2_thread_on_workers() -> None:
    """Give OpenCV one thread when running on a distributed worker.

    There, parallelism comes from Dask's task threads: OpenCV's own thread pool on top only
    oversubscribes the cores (2-3x slower on a busy node).
    """
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return
    import cv2

    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


@dataclass(frozen=True)
class ScoreTask:
    """Arguments of one score task: a few fields (``keys``) of both plates."""

    reference: str
    reconstruction: str
    keys: tuple  # tuple of FieldKey
    reference_channel: int
    reconstruction_channel: int
    mask_label: str | None
    mask_paths: tuple  # plate holding the mask label, per key ('' without mask)
    window: int | None
    params: Any = None


def _score_plate_fields(task: ScoreTask) -> list[dict[str, Any]]:
    """Read and score ``task.keys`` of both plates (the task body).

    Opens only those fields (:func:`~phirm_scale.plate.open_field_view`), never the whole
    plates.
    """
    from phirm_scale.plate import open_field_view

    _one_cv2_thread_on_workers()
    out = []
    for key, mpath in zip(task.keys, task.mask_paths, strict=True):
        ref = open_field_view(task.reference, key)
        rec = open_field_view(task.reconstruction, key)
        mask = None
        if task.mask_label:
            mplate = (
                ref
                if mpath == task.reference
                else (rec if mpath == task.reconstruction else open_field_view(mpath, key))
            )
            mask = mplate.read_label(key, task.mask_label)
        out.append(
            qc.score_field(
                ref.read_field(key, task.reference_channel),
                rec.read_field(key, task.reconstruction_channel),
                window=task.window,
                params=task.params,
                mask=mask,
                name=f"{task.reference}/{key.path}",
            )
        )
    return out


def score_tasks(
    plan: ScorePlan, *, params: Any = None, fields_per_task: int = 1
) -> list[ScoreTask]:
    """Split a plan into tasks of ``fields_per_task`` fields each (in ``plan.keys`` order).

    Each task returns a list of :func:`~phirm_scale.qc.score_field` results.
    """
    if fields_per_task < 1:
        raise InputError(f"fields_per_task must be >= 1, got {fields_per_task}")
    out = []
    for i in range(0, len(plan.keys), fields_per_task):
        keys = tuple(plan.keys[i : i + fields_per_task])
        mpaths = tuple(plan.mask_sources.get(k, "") for k in keys)
        out.append(
            ScoreTask(
                plan.reference,
                plan.reconstruction,
                keys,
                plan.reference_channel,
                plan.reconstruction_channel,
                plan.mask_label,
                mpaths,
                plan.window,
                params,
            )
        )
    return out


def score_plates(
    reference: str | Path | Plate,
    reconstruction: str | Path | Plate,
    *,
    reference_channel: str | int | None = None,
    reconstruction_channel: str | int | None = None,
    window: int | str | None = 256,
    params: PhirmParams | None = None,
    mask_label: str | None = None,
    threshold: float = DEFAULT_SELFCHECK_THRESHOLD,
    cluster: Any = "threads",
    progress: bool = False,
    fields_per_task: int = 1,
    client: Client | None = None,
) -> xr.Dataset:
    """Score every field of ``reconstruction`` against ``reference`` into a QC Dataset.

    :func:`plan_score` (all validation) followed by :func:`score_plan`.

    Parameters
    ----------
    reference, reconstruction : str, Path or Plate
        Plates, ``PLATE[:CHANNEL]`` accepted (see :func:`plan_score`).
    reference_channel, reconstruction_channel : str or int, optional
        Channels (see :func:`plan_score`).
    window : int, 'field' or None, default 256
        Metric unit: windows of this edge, or the whole field.
    params : PhirmParams, optional
        Metric parameters (paper defaults; ``PhirmParams.reference()`` for the published code).
    mask_label : str, optional
        Label image giving ``masked_fraction`` per window.
    threshold, cluster, progress, fields_per_task, client
        See :func:`score_plan`.

    Returns
    -------
    xarray.Dataset
        See :func:`phirm_scale.qc.to_dataset`; attributes record the inputs.
    """
    plan = plan_score(
        reference,
        reconstruction,
        reference_channel=reference_channel,
        reconstruction_channel=reconstruction_channel,
        window=window,
        mask_label=mask_label,
    )
    return score_plan(
        plan,
        params=params,
        threshold=threshold,
        cluster=cluster,
        progress=progress,
        fields_per_task=fields_per_task,
        client=client,
    )


def score_plan(
    plan: ScorePlan,
    *,
    params: PhirmParams | None = None,
    threshold: float = DEFAULT_SELFCHECK_THRESHOLD,
    cluster: Any = "threads",
    progress: bool = False,
    fields_per_task: int = 1,
    client: Client | None = None,
) -> xr.Dataset:
    """Run a validated :class:`ScorePlan` and reduce the results into the QC Dataset.

    Parameters
    ----------
    plan : ScorePlan
        From :func:`plan_score`.
    params : PhirmParams, optional
        Metric parameters (paper defaults).
    threshold : float, default 0.9
        PhIRM threshold of the ``*_phirm_frac_below`` summaries.
    cluster : str or distributed.Client, default 'threads'
        ``--cluster`` spec (opened and closed here) or an open client (left open);
        ``'threads'`` = Dask's threaded scheduler in this process.
    progress : bool
        Show a progress bar (stderr) while the tasks run.
    fields_per_task : int, default 1
        Fields scored by one task.
    client : distributed.Client, optional
        Same as passing it as ``cluster`` (kept for older callers).

    Returns
    -------
    xarray.Dataset
    """
    from phirm_scale import metric
    from phirm_scale.stages._runner import run_tasks

    params = params if params is not None else metric.PhirmParams()
    tasks = score_tasks(plan, params=params, fields_per_task=fields_per_task)
    computed = run_tasks(
        _score_plate_fields,
        tasks,
        cluster=client if client is not None else cluster,
        progress=progress,
        description="score",
    )
    results: dict[Any, dict[str, Any]] = {}
    for task, res in zip(tasks, computed, strict=True):
        results.update(zip(task.keys, res, strict=True))
    grid = qc.window_grid(plan.field_shape, plan.window)
    return qc.to_dataset(
        results,
        grid,
        rows=plan.rows,
        columns=plan.columns,
        params=params,
        threshold=threshold,
        attrs=plan.attrs(),
    )


# ------------------------------------------------------------------------- arrays (any chunks)
def _one_block(x: Any) -> Any:
    """Return a Delayed (or ndarray) holding the whole field ``x`` as one block."""
    import dask.array as da

    if not isinstance(x, da.Array):
        return np.asarray(x)
    if x.npartitions != 1:
        x = x.rechunk(x.shape)
    return x.to_delayed(optimize_graph=True).ravel()[0]


def _score_block(
    ref: npt.ArrayLike,
    rec: npt.ArrayLike,
    mask: npt.ArrayLike | None,
    window: int | str | None,
    params: PhirmParams | None,
    name: str,
) -> dict[str, np.ndarray]:
    return qc.score_field(ref, rec, window=window, params=params, mask=mask, name=name)


def score_arrays(
    reference: Mapping,
    reconstruction: Mapping,
    *,
    masks: Mapping | None = None,
    window: int | str | None = 256,
    params: PhirmParams | None = None,
    threshold: float = DEFAULT_SELFCHECK_THRESHOLD,
    rows: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    attrs: Mapping | None = None,
    cluster: Any = "threads",
    progress: bool = False,
    client: Client | None = None,
) -> xr.Dataset:
    """Score fields given as arrays (numpy or Dask, any chunking), one task per field.

    Parameters
    ----------
    reference, reconstruction : mapping of (row, column, field) -> (Y, X) array
        Same keys, every field the same shape.
    masks : mapping, optional
        Same keys, nonzero = masked pixel.
    window, params, threshold, cluster, progress, client
        As in :func:`score_plates`.
    rows, columns : sequence of str, optional
        Plate layout (default: rows and columns present in the keys).
    attrs : mapping, optional
        Extra attributes of the Dataset.

    Returns
    -------
    xarray.Dataset
    """
    import dask

    from phirm_scale import metric

    params = params if params is not None else metric.PhirmParams()
    win = qc.parse_window(window)
    keys = sorted(reference, key=lambda k: (str(k[0]), str(k[1]), int(k[2])))
    if not keys:
        raise PlateError("score_arrays: no reference fields")
    if set(reconstruction) != set(keys):
        lacking = sorted(set(keys) - set(reconstruction)) or sorted(set(reconstruction) - set(keys))
        raise PlateError(
            f"score_arrays: reference and reconstruction fields differ "
            f"(first difference: {tuple(lacking[0])})"
        )
    if masks is not None and set(masks) != set(keys):
        raise PlateError("score_arrays: masks must be given for exactly the reference fields")
    shape = tuple(np.shape(reference[keys[0]]))
    if len(shape) != 2 or min(shape) < 1:
        raise PlateError(
            f"score_arrays: field {tuple(keys[0])} has shape {shape}, expected non-empty (Y, X)"
        )
    for src_name, src in (
        ("reference", reference),
        ("reconstruction", reconstruction),
        ("mask", masks or {}),
    ):
        for k, v in src.items():
            if tuple(np.shape(v)) != shape:
                raise PlateError(
                    f"score_arrays: {src_name} field {tuple(k)} has shape "
                    f"{tuple(np.shape(v))}, expected {shape}"
                )
    tasks = []
    for k in keys:
        name = "/".join(str(p) for p in tuple(k))
        m = _one_block(masks[k]) if masks is not None else None
        tasks.append(
            dask.delayed(_score_block, pure=True)(
                _one_block(reference[k]), _one_block(reconstruction[k]), m, win, params, name
            )
        )
    from phirm_scale.stages._runner import run_delayed

    computed = run_delayed(
        tasks,
        cluster=client if client is not None else cluster,
        progress=progress,
        description="score",
    )
    grid = qc.window_grid(shape, win)
    extra = {
        "window": "field" if win is None else int(win),
        "field_shape": list(shape),
        "n_fields": len(keys),
    }
    extra.update(dict(attrs or {}))
    return qc.to_dataset(
        dict(zip(keys, computed, strict=True)),
        grid,
        rows=rows,
        columns=columns,
        params=params,
        threshold=threshold,
        attrs=extra,
    )
