"""The end of a screen run: one QC dataset, the summary rows, the warnings, the report.

:func:`_finish` writes the screen QC (:mod:`phirm_scale.screenqc`) and the report and
returns the summary :func:`phirm_scale.run.run_screen` records in ``run.json``;
:func:`nothing_done_warnings` names a screen where a stage found nothing to do.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from phirm_scale.run.settings import RESTORED_AREA
from phirm_scale.run.stages import _timed

if TYPE_CHECKING:
    import xarray as xr

    from phirm_scale.run.plan import ScreenPlan

# the run's messages keep the one logger name they always had
log = logging.getLogger("phirm_scale.run")


def nothing_done_warnings(ds: xr.Dataset, artefact_channel: str | None = None) -> list[str]:
    """Loud warnings for a screen where a stage found nothing to do.

    * no hole pixel in any field (empty masks: nothing was inpainted);
    * every field identical to its reference (PSNR infinite in every scored window: the
      restoration changed nothing the scoring can see), or, failing that, every field with
      the same mean PhIRM (the QC cannot tell one field from another).

    ``ds`` is the screen QC Dataset (:func:`phirm_scale.screenqc.screen_dataset`).
    """
    import numpy as np

    out = []
    if "masked_fraction" in ds and float(np.nansum(ds["masked_fraction"].values)) == 0:
        out.append(
            "no artefact pixels were found in the whole screen: masks are empty, "
            "nothing was inpainted and every PhIRM is 1 by construction"
            + (f" (artefact channel {artefact_channel!r})" if artefact_channel else "")
        )
    fm = ds["field_phirm_mean"].values
    fm = fm[~np.isnan(fm)]
    if fm.size == 0:
        return out
    psnr = ds["psnr"].values
    psnr = psnr[~np.isnan(ds["phirm"].values)]
    if psnr.size and np.all(np.isposinf(psnr)):
        out.append(
            f"every field is identical to its reference ({fm.size} of {fm.size} fields): the "
            "restoration changed nothing the QC can see, so every score is perfect by "
            "construction"
        )
    elif fm.size > 1 and np.all(fm == fm[0]):
        out.append(
            f"every field has the same mean PhIRM ({fm[0]:.4f}, {fm.size} fields): the QC "
            "cannot tell good fields from bad ones"
        )
    return out


def _finish(plan: ScreenPlan, qcs: dict, per_plate: dict, stages: dict, progress: bool) -> dict:
    import numpy as np

    from phirm_scale.report import recorded_hidden_threshold, write_screen_report
    from phirm_scale.screenqc import screen_dataset, write_screen_qc

    out = plan.out
    s = plan.settings
    ds = screen_dataset(qcs, attrs={"run_settings": json.dumps(plan.settings)})
    write_screen_qc(
        ds,
        out / "qc.zarr",
        csv=out / "qc.csv",
        parquet=out / "qc.parquet",
        field_csv=out / "qc_fields.csv",
        field_parquet=out / "qc_fields.parquet",
        overwrite=True,
    )
    thr = float(s["threshold"])
    rows = []
    warnings_: list[str] = []
    for name in ds["plate"].values.tolist():
        d = ds.sel(plate=name)
        fm = d["field_phirm_mean"].values
        scored = ~np.isnan(fm)
        if "flag" in d:  # self-check: the reference-free flag (PhIRM against the damaged
            # source counts every removed artefact as damage)
            flagged = int(np.sum(np.nan_to_num(d["flag"].values) > 0))
        else:
            flagged = int(np.sum(fm[scored] < thr))
        sc_mean = (
            round(float(d["plate_selfcheck_phirm_mean"]), 6)
            if "plate_selfcheck_phirm_mean" in d
            else None
        )
        est = (
            round(float(d["plate_estimated_phirm_mean"]), 6)
            if "plate_estimated_phirm_mean" in d
            and np.isfinite(float(d["plate_estimated_phirm_mean"]))
            else None
        )
        restored = int(np.nansum(d[RESTORED_AREA].values)) if RESTORED_AREA in d else None
        masked = (
            float(d["plate_masked_fraction_mean"])
            if "plate_masked_fraction_mean" in d
            else float("nan")
        )
        info = per_plate[name]
        rows.append(
            {
                "plate": name,
                "fields": int(scored.sum()),
                "wells": info["wells"],
                "masked_fraction": round(masked, 6),
                "fields_flagged": flagged,
                "phirm_mean": round(float(d["plate_phirm_mean"]), 6),
                "phirm_min": round(float(d["plate_phirm_min"]), 6),
                "phirm_p05": round(float(d["plate_phirm_p05"]), 6),
                "windows_below": round(float(d["plate_phirm_frac_below"]), 6),
                "ssim_mean": round(float(d["plate_ssim_mean"]), 6),
                "restored_px": restored,
                "selfcheck_mean": sc_mean,
                "estimated_phirm": est,
            }
        )
    warnings_.extend(nothing_done_warnings(ds, s.get("artefact_channel")))
    warnings_.extend(plan.warnings)
    for w in warnings_:  # loud, whatever --no-progress / --json / --quiet say (stderr)
        log.warning("%s", w)
    with _timed(stages, "report", sum(r["fields"] for r in rows)):
        report = write_screen_report(
            ds,
            out / "report",
            warnings=warnings_,
            links={
                "qc.csv": "../qc.csv",
                "qc.zarr": "../qc.zarr",
                "qc.parquet": "../qc.parquet",
                "qc_fields.csv": "../qc_fields.csv",
                "qc_fields.parquet": "../qc_fields.parquet",
                "run.json": "../run.json",
            },
        )
    n_fields = sum(r["fields"] for r in rows)
    # the rules the QC records (a store's text never claims a rule that was not applied)
    hid_thr = recorded_hidden_threshold(ds["flag"].attrs) if "flag" in ds else None
    res_thr = float(ds["flag"].attrs["residual_threshold"]) if "flag" in ds else None
    hidden = " and hidden nuclei" if hid_thr is not None else ""
    screen = {
        "plates": len(rows),
        "fields": n_fields,
        "fields_flagged": sum(r["fields_flagged"] for r in rows),
        "flagged_by": (
            ("self-check, residual artefact" if hidden else "self-check and residual artefact")
            + hidden
            if "selfcheck_phirm" in ds
            else "residual artefact" + hidden
            if "flag" in ds
            else "PhIRM"
        ),
        "residual_threshold": res_thr,
        "hidden_threshold": hid_thr,
        "restored_px": int(np.nansum(ds[RESTORED_AREA].values)) if RESTORED_AREA in ds else None,
        "phirm_mean": round(float(np.nanmean(ds["field_phirm_mean"].values)), 6)
        if n_fields
        else None,
        # the reference-free estimate of the true PhIRM (no reference channel), over fields
        "estimated_phirm": round(float(np.nanmean(ds["field_estimated_phirm_mean"].values)), 6)
        if "field_estimated_phirm_mean" in ds
        and np.isfinite(ds["field_estimated_phirm_mean"].values).any()
        else None,
        "threshold": thr,
    }
    return {
        "out": str(out),
        "report": str(report),
        "qc": str(out / "qc.zarr"),
        "plates": rows,
        "screen": screen,
        "warnings": warnings_,
        "stages": stages,
    }
