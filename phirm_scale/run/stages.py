"""One plate through the stages, and every field's results kept on disk.

:func:`_run_plate` runs convert -> masks -> inpaint -> score for one plate;
:func:`_selfcheck_screen` adds the self-check and the reference-free field checks. Each
field's score, self-check and field checks are kept in ``OUT/.phirm-run/`` (one ``.npz``
per field), so a rerun computes only the fields not kept yet (:mod:`phirm_scale.run`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from phirm_scale.run.settings import _WORK, MASK_LABEL, RESTORED_AREA

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

    from phirm_scale.plate import FieldKeyLike
    from phirm_scale.run.plan import PlateSource, ScreenPlan

# the run's messages keep the one logger name they always had
log = logging.getLogger("phirm_scale.run")


def _selfcheck_screen(
    plan: ScreenPlan,
    qcs: dict[str, xr.Dataset],
    spec: Client | str,
    stages: dict[str, dict[str, Any]],
    progress: bool,
) -> None:
    """Self-check every plate (no reference channel).

    Pseudo-holes are shaped like the plate's own artefact masks, or, for a plate without
    any, like those of the first plate of the screen that has some. A screen without any
    hole records the skip (a warning), never a silent 1.0.
    """
    import numpy as np

    with_holes = [p for p in plan.plates if float(np.nansum(qcs[p.name][RESTORED_AREA].values)) > 0]
    if not with_holes:
        plan.warnings.append(
            "self-check not run: no field of the screen has an artefact mask to shape "
            "pseudo-holes from (nothing was restored, so there is nothing to verify); the "
            "reference-free field checks (image quality, residual artefact) were made"
        )
        for p in plan.plates:  # image quality and residual artefact still mean something
            with _timed(stages, "selfcheck", p.n_fields):
                qcs[p.name] = _fieldchecks_kept(
                    qcs[p.name], p, plan, cluster=spec, progress=progress
                )
        return
    for p in plan.plates:
        own = p in with_holes
        pool = (p if own else with_holes[0]).plate_path(plan.out)
        if not own:
            log.info(
                "self-check %s: no holes in this plate, shapes from %s", p.name, with_holes[0].name
            )
        with _timed(stages, "selfcheck", p.n_fields):
            qcs[p.name] = _selfcheck_kept(
                qcs[p.name], p, pool, plan, cluster=spec, progress=progress
            )


def _timed(stages: dict[str, dict[str, Any]], name: str, n: int) -> AbstractContextManager[None]:
    class _T:
        def __enter__(self) -> None:
            self.t = time.perf_counter()

        def __exit__(self, *exc: object) -> Literal[False]:
            stages[name]["seconds"] = round(
                stages[name]["seconds"] + time.perf_counter() - self.t, 3
            )
            stages[name]["fields"] += n
            return False

    return _T()


def _run_plate(
    p: PlateSource,
    plan: ScreenPlan,
    spec: Client | str,
    client: Client | None,
    stages: dict[str, dict[str, Any]],
    progress: bool,
) -> dict[str, Any]:
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.convert import convert
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.masks import make_artefact_masks

    s = plan.settings
    out = plan.out
    plate_path = p.plate_path(out)
    inpainted = p.inpainted_path(out)
    log.info("== plate %s (%d fields)", p.name, p.n_fields)
    if p.kind == "tiff":
        with _timed(stages, "convert", p.n_fields):
            convert(
                p.path,
                plate_path,
                layout=s["layout"],
                pattern=s["pattern"],
                plate_name=p.name,
                channel_names=s["channel_names"],
                cluster=spec,
                progress=progress,
            )
    with _timed(stages, "masks", p.n_fields):
        kw: dict[str, Any] = {}
        if s["artefact_channel"] is None:
            kw = {"method": "saturation", "channel": s["channel"]}
        else:
            kw = {"method": "otsu", "channel": s["artefact_channel"]}
        kw["dilation"] = s["dilate"]
        areas = make_artefact_masks(
            plate_path, name=MASK_LABEL, cluster=spec, progress=progress, **kw
        )
    plate = open_plate(plate_path)
    hole_fields = sum(1 for a in areas.values() if a)
    with _timed(stages, "inpaint", p.n_fields):
        res = inpaint_plate(
            plate_path,
            inpainted,
            channel=s["channel"],
            mask_label=MASK_LABEL,
            model=s["model"],
            checkpoint=s["checkpoint"],
            dilate=0,  # the masks are made at --dilate already
            cluster=spec,
            progress=progress,
        )
    with _timed(stages, "score", p.n_fields):
        ds = _score_kept(
            plate_path,
            inpainted,
            out / _WORK / f"score_{p.name}",
            s,
            cluster=client if client is not None else "threads",
            progress=progress,
        )
    return {
        "plate": str(plate_path),
        "inpainted": str(inpainted),
        "fields": len(plate.fields),
        "wells": len(plate.wells),
        "fields_masked_now": hole_fields,
        "hole_pixels_now": res["hole_pixels"],
        "_qc": ds,
    }


# --------------------------------------------------------- per-field results kept on disk


def _field_file(folder: Path, key: FieldKeyLike) -> Path:
    return folder / f"{key[0]}{key[1]}_{int(key[2])}.npz"


def _save_result(path: Path, result: dict) -> None:
    """One field's results, written beside and renamed (never half written)."""
    import numpy as np

    from phirm_scale._atomic import atomic_store

    arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.float64) for k, v in result.items()}
    with atomic_store(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load_result(path: Path) -> dict | None:
    """Return a kept result (None when unreadable: then the field is recomputed)."""
    import numpy as np

    try:
        with np.load(path) as z:
            return {k: (z[k] if z[k].ndim else float(z[k])) for k in z.files}
    except (OSError, ValueError, EOFError):
        return None


def _kept(folder: Path, keys: Iterable[FieldKeyLike], required: Iterable[str] = ()) -> dict:
    """``{key: result}`` of the fields of ``keys`` already kept in ``folder``.

    A kept result lacking any of the ``required`` variables (one written by an earlier
    version, before a check was added) counts as not kept: the field is recomputed.
    """
    need = set(required)
    out = {}
    for k in keys:
        f = _field_file(folder, k)
        if f.is_file():
            r = _load_result(f)
            if r is not None and need <= r.keys():
                out[k] = r
    return out


@dataclass(frozen=True)
class KeptTask:
    """A stage task whose per-field results are also saved, one file per field."""

    task: Any  # a ScoreTask or SelfCheckTask
    files: tuple  # one path per key of the task
    restored: str = ""  # score tasks: the restored plate (its mask label gives the area)


def _score_and_keep(t: KeptTask) -> list[dict]:
    from phirm_scale.plate import open_field_view
    from phirm_scale.stages import score as score_stage

    out = []
    for key, r, f in zip(
        t.task.keys, score_stage._score_plate_fields(t.task), t.files, strict=True
    ):
        view = open_field_view(t.restored, key)
        r = {**r, RESTORED_AREA: int((view.read_label(key, MASK_LABEL) > 0).sum())}
        _save_result(Path(f), r)
        out.append(r)
    return out


def _selfcheck_and_keep(t: KeptTask) -> list[dict]:
    from phirm_scale.stages import selfcheck as sc_stage

    out = sc_stage._task(t.task)
    for r, f in zip(out, t.files, strict=True):
        _save_result(Path(f), r)
    return out


def _score_kept(
    plate_path: Path,
    inpainted: Path,
    folder: Path,
    s: dict[str, Any],
    *,
    cluster: Client | str,
    progress: bool,
) -> xr.Dataset:
    """Score a plate, keeping every field's result in ``folder``.

    A rerun scores only the fields not kept yet (identical results: the same kernel on the
    same pixels).
    """
    from phirm_scale import qc
    from phirm_scale.metric import PhirmParams
    from phirm_scale.stages._runner import run_tasks
    from phirm_scale.stages.score import plan_score, score_tasks

    plan = plan_score(
        f"{plate_path}:{s['reference_channel']}",
        f"{inpainted}:{s['channel']}",
        window=s["window"],
        mask_label=MASK_LABEL,
    )
    params = PhirmParams.for_mode(s["mode"])
    folder.mkdir(parents=True, exist_ok=True)
    results = _kept(folder, plan.keys)
    todo = [k for k in plan.keys if k not in results]
    if todo:
        import dataclasses

        tasks = [
            KeptTask(t, tuple(str(_field_file(folder, k)) for k in t.keys), plan.reconstruction)
            for t in score_tasks(dataclasses.replace(plan, keys=tuple(todo)), params=params)
        ]
        done = run_tasks(
            _score_and_keep, tasks, cluster=cluster, progress=progress, description="score"
        )
        for t, res in zip(tasks, done, strict=True):
            results.update(zip(t.task.keys, res, strict=True))
    ds = qc.to_dataset(
        results,
        qc.window_grid(plan.field_shape, plan.window),
        rows=plan.rows,
        columns=plan.columns,
        params=params,
        threshold=float(s["threshold"]),
        attrs=plan.attrs(),
    )
    return qc.add_field_results(
        ds,
        {k: {RESTORED_AREA: r[RESTORED_AREA]} for k, r in results.items()},
        {RESTORED_AREA: ("pixels filled by the inpainting (the mask it filled)", "px")},
    )


@dataclass(frozen=True)
class FieldCheckTask:
    """Reference-free checks of a few fields (:func:`phirm_scale.fieldqc.field_checks`)."""

    source: str
    channel: str
    restored: str
    keys: tuple
    params: Any


def _fieldchecks_and_keep(t: KeptTask) -> list[dict]:
    from phirm_scale import fieldqc
    from phirm_scale.plate import open_field_view

    task = t.task
    out = []
    for key, f in zip(task.keys, t.files, strict=True):
        rec = open_field_view(task.restored, key)
        name = f"{task.source}/{key.path}"
        r = fieldqc.field_checks(
            open_field_view(task.source, key).read_field(key, task.channel),
            rec.read_field(key, task.channel),
            rec.read_label(key, MASK_LABEL) > 0,  # the mask the inpainting filled
            params=task.params,
            name=name,
        )
        _save_result(Path(f), r)
        out.append(r)
    return out


def _fieldchecks_kept(
    ds: xr.Dataset, p: PlateSource, plan: ScreenPlan, *, cluster: Client | str, progress: bool
) -> xr.Dataset:
    """Reference-free field checks (no self-check) of plate ``p``, kept per field."""
    from phirm_scale import fieldqc, qc
    from phirm_scale.metric import PhirmParams
    from phirm_scale.plate import FieldKey, open_plate
    from phirm_scale.stages._runner import run_tasks

    s = plan.settings
    inpainted = p.inpainted_path(plan.out)
    keys = [FieldKey(*k) for k in open_plate(inpainted).fields]
    folder = plan.out / _WORK / f"fieldqc_{p.name}"
    folder.mkdir(parents=True, exist_ok=True)
    results = _kept(folder, keys, fieldqc.CHECK_VARIABLES)
    todo = [k for k in keys if k not in results]
    if todo:
        params = PhirmParams.for_mode(s["mode"])
        src = str(p.plate_path(plan.out).resolve())
        tasks = [
            KeptTask(
                FieldCheckTask(src, s["channel"], str(inpainted.resolve()), (k,), params),
                (str(_field_file(folder, k)),),
            )
            for k in todo
        ]
        done = run_tasks(
            _fieldchecks_and_keep,
            tasks,
            cluster=cluster,
            progress=progress,
            description="field checks",
        )
        for t, res in zip(tasks, done, strict=True):
            results.update(zip(t.task.keys, res, strict=True))
    ds = qc.add_field_results(ds, results, fieldqc.CHECK_VARIABLES)
    return qc.flag_fields(
        ds,
        selfcheck_threshold=float(s["threshold"]),
        residual_threshold=float(s["residual_threshold"]),
        hidden_threshold=float(s["hidden_threshold"]),
    )


def _selfcheck_kept(
    ds: xr.Dataset,
    p: PlateSource,
    pool_plate: Path,
    plan: ScreenPlan,
    *,
    cluster: Client | str,
    progress: bool,
) -> xr.Dataset:
    """Add the self-check and reference-free field checks to plate ``p``'s QC.

    Every field's result is kept in ``OUT/.phirm-run/selfcheck_<plate>`` (a rerun computes
    only the fields not kept yet). Pseudo-hole shapes come from ``pool_plate``'s masks.
    """
    from phirm_scale.metric import PhirmParams
    from phirm_scale.plate import FieldKey
    from phirm_scale.stages import selfcheck as sc
    from phirm_scale.stages._runner import run_tasks

    s = plan.settings
    inpainted = p.inpainted_path(plan.out)
    spec = sc.selfcheck_spec(inpainted, draws=s["selfcheck_draws"], seed=0)
    rec = sc._plate(str(inpainted.resolve()))
    rc = rec.channel_index(s["channel"])
    keys = [FieldKey(*k) for k in rec.fields]
    recipe = sc.PoolRecipe(
        str(Path(pool_plate).resolve()),
        MASK_LABEL,
        spec.dilate,
        16,
        spec.seed,
        tuple(rec.field_shape),
    )
    pool = sc._pool_from_recipe(recipe)
    folder = plan.out / _WORK / f"selfcheck_{p.name}"
    folder.mkdir(parents=True, exist_ok=True)
    results = _kept(folder, keys, sc.result_variables())
    todo = [k for k in keys if k not in results]
    if todo:
        tasks = [
            KeptTask(t, tuple(str(_field_file(folder, k)) for k in t.keys))
            for t in sc.selfcheck_tasks(
                spec,
                str(rec.path),
                rc,
                todo,
                recipe,
                window=ds.attrs.get("window", 256),
                params=PhirmParams.for_mode(s["mode"]),
            )
        ]
        done = run_tasks(
            _selfcheck_and_keep, tasks, cluster=cluster, progress=progress, description="self-check"
        )
        for t, res in zip(tasks, done, strict=True):
            results.update({FieldKey(*k): r for k, r in zip(t.task.keys, res, strict=True)})
    return sc.add_to_dataset(
        ds,
        results,
        spec,
        pool=pool,
        selfcheck_threshold=float(s["threshold"]),
        residual_threshold=float(s["residual_threshold"]),
        hidden_threshold=float(s["hidden_threshold"]),
    )
