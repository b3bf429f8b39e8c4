"""The single-plate report (`phirm-scale report`, the demo): :func:`write_report`.

``write_report(QC.zarr, out_dir)`` writes ``heatmap.png`` (:func:`plate_heatmap`),
``histogram.png`` (:func:`phirm_histogram`), ``worst_<row><column>_<field>.png`` for the
:func:`worst_fields` (:func:`phirm_scale.report.pictures.field_thumbnail`) and
``index.html`` from :data:`phirm_scale.report.templates.PLATE_PAGE`: inputs, plate summary
(PhIRM "against the damaged source" when the reference is the inpainting source), the
reference-free QC's flagged fields where it has them, the pictures and the worst-field table.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from phirm_scale.errors import PhirmError
from phirm_scale.flags import DEFAULT_RESIDUAL_THRESHOLD, DEFAULT_SELFCHECK_THRESHOLD
from phirm_scale.report import templates as t
from phirm_scale.report._text import _alt, _fmt
from phirm_scale.report.pictures import _field_thumbnail, _scored_against
from phirm_scale.report.plots import phirm_histogram, plate_heatmap
from phirm_scale.report.reasons import recorded_hidden_threshold, selfcheck_reason

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["worst_fields", "write_report"]

#: The QC attributes listed under "Inputs", in this order (where the QC has them).
_INPUT_ATTRS = (
    "reference",
    "reference_channel",
    "reconstruction",
    "reconstruction_channel",
    "mask_label",
    "window",
    "mode",
    "threshold",
    "software_version",
)


def worst_fields(ds: xr.Dataset, n: int = 6) -> list[tuple[str, str, int, float]]:
    """Return the ``n`` scored fields of lowest mean PhIRM (ties: lowest minimum, plate order).

    Returns
    -------
    list of (row, column, field, mean PhIRM)
    """
    mean = (
        ds["phirm"].mean("window", skipna=True)
        if "field_phirm_mean" not in ds
        else ds["field_phirm_mean"]
    )
    low = (
        ds["phirm"].min("window", skipna=True)
        if "field_phirm_min" not in ds
        else ds["field_phirm_min"]
    )
    m = mean.transpose("row", "column", "field").values
    lo = low.transpose("row", "column", "field").values
    entries = []
    for i, r in enumerate(ds["row"].values.tolist()):
        for j, c in enumerate(ds["column"].values.tolist()):
            for k, f in enumerate(ds["field"].values.tolist()):
                if not math.isnan(m[i, j, k]):
                    entries.append(
                        (float(m[i, j, k]), float(lo[i, j, k]), (i, j, k), (str(r), str(c), int(f)))
                    )
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    return [(*e[3], e[0]) for e in entries[: max(0, int(n))]]


def _pair(summary: xr.Dataset, component: str) -> str:
    return (
        f"{_fmt(summary['ref_' + component].values)} / {_fmt(summary['rec_' + component].values)}"
    )


def write_report(qc: xr.Dataset | str | Path, out_dir: str | Path, *, worst: int = 6) -> Path:
    """Write the HTML report of a QC Dataset or store into ``out_dir``.

    Parameters
    ----------
    qc : xarray.Dataset or path-like
        A QC Dataset (:func:`phirm_scale.qc.to_dataset`) or a store written by
        :func:`phirm_scale.qc.write_qc`.
    out_dir : path-like
        Created if needed; files inside are replaced.
    worst : int, default 6
        Number of worst fields shown with thumbnails.

    Returns
    -------
    Path
        ``out_dir / 'index.html'``.
    """
    import xarray as xr

    from phirm_scale.qc import open_qc

    ds = qc if isinstance(qc, xr.Dataset) else open_qc(qc)
    if "phirm" not in ds:
        raise PhirmError("report: the Dataset has no 'phirm' variable (not a QC Dataset)")
    from phirm_scale.outputs import guard_output, mark_folder

    out = Path(out_dir)
    inputs = [ds.attrs.get("reference"), ds.attrs.get("reconstruction")]
    if not isinstance(qc, xr.Dataset):
        inputs.append(qc)
    # a report folder is only ever (re)written over an earlier report, never over a plate,
    # a QC store or a foreign folder
    with guard_output(out, command="report", inputs=[i for i in inputs if i], resumable=True):
        out.mkdir(parents=True, exist_ok=True)
        mark_folder(out, "report")
        return _write_report(ds, out, worst)


def _write_report(ds: xr.Dataset, out: Path, worst: int) -> Path:
    from phirm_scale.qc import level_summary

    plate_heatmap(ds, out / "heatmap.png")
    phirm_histogram(ds, out / "histogram.png")
    plate = level_summary(ds, "plate")
    worst_html, note = _worst_rows(ds, out, worst)
    against = _scored_against(ds)
    panels = (
        "Each picture: the damaged source, the holes the inpainting filled, the restored "
        "image and what PhIRM compared, |restored - reference| (the reference is the damaged "
        "source: every artefact removed counts as damage)"
        if against
        else "Each picture: the damaged source (where the restored plate records it), the "
        "holes the inpainting filled, the restored image, the reference and what PhIRM "
        "compared, |restored - reference|"
    )
    page = t.PLATE_PAGE.substitute(
        inputs="\n".join(
            t.TABLE_ROW.substitute(key=html.escape(str(k)), value=html.escape(str(ds.attrs[k])))
            for k in _INPUT_ATTRS
            if k in ds.attrs
        ),
        summary="\n".join(
            t.TABLE_ROW.substitute(key=html.escape(str(k)), value=_fmt(v))
            for k, v in _summary(ds, plate)
        ),
        flagged=_flagged_section(ds),
        note=note,
        panels=panels,
        worst=worst_html,
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _worst_rows(ds: xr.Dataset, out: Path, worst: int) -> tuple[str, str]:
    """Draw the worst fields; return their table rows and a note when pictures failed."""
    thr = float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))
    against = _scored_against(ds)
    rows = []
    note = ""
    for r, c, f, m in worst_fields(ds, worst):
        name = f"worst_{r}{c}_{f}.png"
        try:
            captions = _field_thumbnail(ds, r, c, f, out / name)
            img = t.PLATE_WORST_PICTURE.substitute(
                src=html.escape(name),
                well=html.escape(r + c),
                field=f,
                panels=html.escape(_alt(captions)),
                threshold=f"{thr:g}",
                against=against,
                mean=f"{m:.3f}",
            )
        except Exception as exc:  # noqa: BLE001 - a report without thumbnails is still useful
            img = t.PLATE_PICTURE_UNAVAILABLE
            note = t.PLATE_NO_PICTURES.substitute(
                reference=html.escape(str(ds.attrs.get("reference"))),
                reconstruction=html.escape(str(ds.attrs.get("reconstruction"))),
                error_type=html.escape(type(exc).__name__),
                error=html.escape(str(exc)),
            )
        fs = ds.sel(row=r, column=c, field=f)
        rows.append(
            t.PLATE_WORST_ROW.substitute(
                well=f"{r}{c}",
                field=f,
                mean=f"{m:.4f}",
                min=_fmt(fs["phirm"].min()),
                nuclei_ref=_fmt(fs["ref_nuclei_count"].sum()),
                nuclei_rec=_fmt(fs["rec_nuclei_count"].sum()),
                artefact_ref=_fmt(fs["ref_artefact_area"].sum()),
                artefact_rec=_fmt(fs["rec_artefact_area"].sum()),
                picture=img,
            )
        )
    return "".join(rows), note


def _summary(ds: xr.Dataset, plate: xr.Dataset) -> list[tuple[str, object]]:
    """Return the plate summary's ``(name, value)`` rows (``plate``: ``qc.level_summary``)."""
    thr = float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))
    against = _scored_against(ds)
    summary: list[tuple[str, object]] = [
        ("fields scored", int((~np.isnan(ds["phirm"].values)).any(-1).sum())),
        ("windows", int(plate["n_windows"])),
        (f"PhIRM mean{against}", plate["phirm_mean"].values),
        (f"PhIRM min{against}", plate["phirm_min"].values),
        (f"PhIRM 5th percentile{against}", plate["phirm_p05"].values),
        (f"fraction of windows < {thr:g}", plate["phirm_frac_below"].values),
        ("SSIM mean", plate["ssim_mean"].values),
        ("nuclei ref / rec", _pair(plate, "nuclei_count")),
        ("nuclei area ref / rec", _pair(plate, "nuclei_area")),
        ("artefact area ref / rec", _pair(plate, "artefact_area")),
    ]
    if "masked_fraction_mean" in plate:
        summary.append(("masked fraction mean", plate["masked_fraction_mean"].values))
    if "plate_selfcheck_phirm_mean" in ds:
        summary.append(("self-check PhIRM mean", ds["plate_selfcheck_phirm_mean"].values))
        summary.append(("self-check PhIRM 5th percentile", ds["plate_selfcheck_phirm_p05"].values))
    if "plate_estimated_phirm_mean" in ds:
        summary.append(
            ("estimated PhIRM mean (no reference)", ds["plate_estimated_phirm_mean"].values)
        )
    return summary


def _flagged_section(ds: xr.Dataset) -> str:
    """Return the reference-free QC's flagged fields (``flag``, `score --self-check`) as HTML.

    Empty when the QC has no ``flag``; otherwise every flagged field with a sentence of why.
    """
    if "flag" not in ds:
        return ""
    from phirm_scale.qc import flagged_fields

    a = ds["flag"].attrs
    hid_thr = recorded_hidden_threshold(a)
    sc_thr = float(a.get("selfcheck_threshold", DEFAULT_SELFCHECK_THRESHOLD))
    res_thr = float(a.get("residual_threshold", DEFAULT_RESIDUAL_THRESHOLD))
    rule = (
        f"mean self-check PhIRM below {sc_thr:g}, more than {res_thr:g} px of artefact left "
        "after restoration"
        + (
            f", or at least {hid_thr:g} px of nuclei expected under the holes"
            if hid_thr is not None
            else ""
        )
    )
    rows = [
        t.PLATE_FLAGGED_ROW.substitute(
            well=html.escape(r + c),
            field=f,
            why=html.escape(selfcheck_reason(ds.sel(row=r, column=c, field=f))),
        )
        for r, c, f, _code in flagged_fields(ds)
    ]
    return t.PLATE_FLAGGED.substitute(
        flagged=len(rows),
        fields=int(np.sum(ds["flag"].notnull().values)),
        rule=rule,
        rows="".join(rows) or t.PLATE_FLAGGED_NONE,
    )
