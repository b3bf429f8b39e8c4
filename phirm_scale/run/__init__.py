"""A whole screen in one call: convert, masks, inpaint, score per plate, then one report.

Every plate goes convert -> masks -> inpaint -> score, then one QC dataset and one report
for the screen, on one cluster opened once.

:func:`plan_screen` finds the plates among the sources and validates everything (nothing is
written); :func:`run_screen` runs it. Output folder::

    OUT/<plate>.ome.zarr            converted plate (TIFF sources) with labels/artefacts
    OUT/<plate>_inpainted.ome.zarr  restored plate (+ a copy of the mask it filled)
    OUT/qc.zarr, qc.csv, qc.parquet one QC dataset for the screen (phirm_scale.screenqc)
    OUT/qc_fields.csv, .parquet     one row per field: flag, per-field checks, summaries
    OUT/report/index.html           the screen report
    OUT/run.json                    inputs, settings, version, per-stage times and counts,
                                    the per-plate summary
    OUT/.phirm-run/                 per-plate QC (a rerun skips plates already scored)

OME-Zarr sources are read in place and never written, except that their artefact masks are
written as the label ``artefacts`` into them (fields that already have it keep it).

Every stage is restartable at field granularity (convert and inpaint resume missing fields,
masks skip fields that have the label, score is kept per plate), so a rerun after an
interruption finishes only what is missing. A rerun with other settings is refused unless
``overwrite``.

The package, by seam: :mod:`~phirm_scale.run.settings` (:class:`ScreenSettings`, the
defaults), :mod:`~phirm_scale.run.plan` (finding plates, :func:`plan_screen`, the run
record), :mod:`~phirm_scale.run.stages` (one plate through the stages, per-field results
kept on disk), :mod:`~phirm_scale.run.summary` (the screen QC, summary rows, warnings,
report) and :func:`run_screen` here; every name is importable from ``phirm_scale.run``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from phirm_scale.run.plan import (
    _ADDED_SETTINGS,
    PlateSource,
    ScreenPlan,
    _changed_defaults,
    _check_zarr_source,
    _has_tiffs_deep,
    _has_tiffs_here,
    _inside,
    _is_zarr_plate,
    _plate_name,
    _previous_record,
    _remove_previous,
    _upgradable,
    _write_json,
    find_plates,
    mask_record,
    plan_screen,
)
from phirm_scale.run.settings import (
    _WORK,
    DEFAULT_DILATE,
    DEFAULT_HIDDEN_THRESHOLD,
    DEFAULT_RESIDUAL_THRESHOLD,
    DEFAULT_SELFCHECK_DRAWS,
    MASK_LABEL,
    PREVIOUS_DILATE,
    RESTORED_AREA,
    RUN_FILE,
    ScreenSettings,
)
from phirm_scale.run.stages import (
    FieldCheckTask,
    KeptTask,
    _field_file,
    _fieldchecks_and_keep,
    _fieldchecks_kept,
    _kept,
    _load_result,
    _run_plate,
    _save_result,
    _score_and_keep,
    _score_kept,
    _selfcheck_and_keep,
    _selfcheck_kept,
    _selfcheck_screen,
    _timed,
)
from phirm_scale.run.summary import _finish, nothing_done_warnings

__all__ = [
    "PlateSource",
    "ScreenPlan",
    "ScreenSettings",
    "plan_screen",
    "run_screen",
    "MASK_LABEL",
    "RUN_FILE",
    "find_plates",
]

log = logging.getLogger(__name__)


#: Every name of the single module ``run.py`` was, importable from here as before (the
#: public ones are in ``__all__``).
_MOVED = (
    DEFAULT_DILATE,
    DEFAULT_HIDDEN_THRESHOLD,
    DEFAULT_RESIDUAL_THRESHOLD,
    DEFAULT_SELFCHECK_DRAWS,
    PREVIOUS_DILATE,
    RESTORED_AREA,
    FieldCheckTask,
    KeptTask,
    mask_record,
    nothing_done_warnings,
    _ADDED_SETTINGS,
    _changed_defaults,
    _check_zarr_source,
    _field_file,
    _fieldchecks_and_keep,
    _fieldchecks_kept,
    _has_tiffs_deep,
    _has_tiffs_here,
    _inside,
    _is_zarr_plate,
    _kept,
    _load_result,
    _plate_name,
    _save_result,
    _score_and_keep,
    _score_kept,
    _selfcheck_and_keep,
    _selfcheck_kept,
    _timed,
    _upgradable,
)


# run_screen looks its own steps up in this module (plan_screen, _run_plate,
# _selfcheck_screen, _finish, the run.json helpers): patching ``phirm_scale.run._finish``
# acts on the run; what those steps call is looked up in their own modules
def run_screen(
    sources: Sequence[str | Path],
    out: str | Path,
    settings: ScreenSettings | None = None,
    *,
    cluster: Any = "local",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Process a whole screen; returns the summary (also stored in ``OUT/run.json``).

    Parameters
    ----------
    sources : sequence of path-like
        Plate folders of TIFFs, folders whose sub-folders are plates, OME-Zarr plates.
    out : path-like
        Output folder (see the module doc).
    settings : ScreenSettings, optional
        How the screen is processed: channels, masks, model, scoring (default:
        ``ScreenSettings()``); recorded in ``run.json``.
    cluster : str or distributed.Client
        Opened once and used by every stage.
    overwrite : bool
        Replace an output folder holding a run with other settings.
    progress : bool
        Progress bars on stderr (:func:`phirm_scale.progress.progress_bar`). What the run
        does is logged (``phirm_scale.run``, info); warnings (e.g. no artefact found) are
        logged as warnings.

    Returns
    -------
    dict
        ``out``, ``report``, ``plates`` (per-plate summary rows), ``screen`` (totals),
        ``warnings``, ``stages`` (seconds and fields per stage).

    Examples
    --------
    >>> from phirm_scale.run import ScreenSettings, run_screen
    >>> settings = ScreenSettings(channel="DAPI", artefact_channel="CFP")
    >>> summary = run_screen(["composite.ome.zarr"], "composite_qc", settings,
    ...                      cluster="threads")  # doctest: +SKIP
    """
    from phirm_scale.cluster import open_cluster
    from phirm_scale.outputs import output_lock

    t_start = time.perf_counter()
    plan = plan_screen(sources, out, settings, overwrite=overwrite)
    out = plan.out
    # one run per output folder at a time: its lock (host, PID) for the whole run
    with output_lock(out, command="run"):
        if out.exists() and overwrite and not plan.resume:
            _remove_previous(out, plan)
        out.mkdir(parents=True, exist_ok=True)
        (out / _WORK).mkdir(exist_ok=True)
        record: dict[str, Any] = {
            "status": "running",
            "settings": plan.settings,
            "inputs": [
                {"plate": p.name, "source": str(p.path), "kind": p.kind, "fields": p.n_fields}
                for p in plan.plates
            ],
        }
        previous = _previous_record(out) if plan.resume else None
        if previous is not None:  # a resumed run keeps what it resumes until it completes
            record["previous"] = previous
        _write_json(out / RUN_FILE, record)
        stages: dict[str, dict] = {
            s: {"seconds": 0.0, "fields": 0}
            for s in ("convert", "masks", "inpaint", "score", "selfcheck", "report")
        }
        per_plate: dict[str, dict] = {}
        qcs = {}
        n_fields = sum(p.n_fields for p in plan.plates)
        log.info(
            "screen: %d plate(s), %d fields%s",
            len(plan.plates),
            n_fields,
            " (resuming)" if plan.resume else "",
        )
        with open_cluster(cluster, quiet=not progress) as client:
            spec = client if client is not None else "threads"
            for p in plan.plates:
                per_plate[p.name] = _run_plate(p, plan, spec, client, stages, progress)
                qcs[p.name] = per_plate[p.name].pop("_qc")
            if plan.settings["selfcheck"]:
                _selfcheck_screen(plan, qcs, spec, stages, progress)
        summary = _finish(plan, qcs, per_plate, stages, progress)
        summary["stages"]["total"] = {
            "seconds": round(time.perf_counter() - t_start, 3),
            "fields": sum(p.n_fields for p in plan.plates),
        }
        record.pop("previous", None)
        record.update({"status": "complete", **summary})
        _write_json(out / RUN_FILE, record)
        return summary
