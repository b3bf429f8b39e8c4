"""HTML report of a QC store: plate heatmap, PhIRM histogram, worst fields with pictures.

``write_report(QC.zarr, out_dir)`` writes into ``out_dir``:

* ``heatmap.png`` -- mean PhIRM per well on the plate grid (empty wells grey), wells holding a
  flagged field outlined in red (:func:`flagged_wells`), a colour bar as tall as the plate;
* ``histogram.png`` -- per-window PhIRM, with the summary threshold marked;
* ``worst_<row><column>_<field>.png`` -- for the ``worst`` fields of lowest mean PhIRM:
  source (the damaged input, from the restored plate's ``inpaint`` provenance) | holes
  filled | restored | reference (when it is not the source) | ``|restored - reference|`` (8
  bit as PhIRM sees it), one grey scale (the 1-99.5 percentiles of the source outside the
  holes), windows below the threshold outlined; read from the plates recorded in the QC
  attributes (skipped, with a note, when they cannot be read); alt text on every picture;
* ``index.html`` -- inputs, plate summary (PhIRM "against the damaged source" when the
  reference is the inpainting source), the pictures and the worst-field table.

:func:`write_screen_report` writes `run`'s report of a screen the same way, with pictures of
the flagged fields and of a sample of the others.

Matplotlib is used through :class:`matplotlib.figure.Figure` only (no pyplot state, no GUI
backend), so reports can be written from worker threads.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from phirm_scale.errors import OutputError, PhirmError
from phirm_scale.flags import DEFAULT_RESIDUAL_THRESHOLD, DEFAULT_SELFCHECK_THRESHOLD, FLAG_BITS

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FieldImages",
    "OUTLINE_COLOUR",
    "OUTLINE_GID",
    "field_thumbnail",
    "heatmap_variable",
    "flagged_wells",
    "read_field_images",
    "reference_is_source",
    "phirm_histogram",
    "plate_heatmap",
    "worst_fields",
    "write_report",
    "flag_reason",
    "write_screen_report",
]


def _fig(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


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


def flagged_wells(ds: xr.Dataset) -> npt.NDArray[np.bool_]:
    """``(row, column)`` (or ``(plate, row, column)``) wells holding a flagged field.

    A field is flagged by ``flag > 0`` where the QC has the reference-free ``flag``
    (`score --self-check`, `run` without a reference channel), else by a mean PhIRM below
    the QC's ``threshold``.
    """
    dims = [d for d in ("plate", "row", "column", "field") if d in ds.dims]
    if "flag" in ds:
        bad = np.nan_to_num(ds["flag"].transpose(*dims).values) > 0
    else:
        thr = float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))
        mean = (
            ds["field_phirm_mean"]
            if "field_phirm_mean" in ds
            else ds["phirm"].mean("window", skipna=True)
        )
        bad = np.nan_to_num(mean.transpose(*dims).values, nan=np.inf) < thr
    return np.asarray(bad.any(axis=-1))


def _scored_against(ds: xr.Dataset) -> str:
    """Say ``" against the damaged source"`` when PhIRM had no ground truth, else ``""``.

    That is when a single-plate QC's reference is the damaged input its reconstruction was
    made from (:func:`reference_is_source`).
    """
    ref, rec = ds.attrs.get("reference"), ds.attrs.get("reconstruction")
    if not ref or not rec:
        return ""
    same = reference_is_source(ref, ds.attrs.get("reference_channel", ""), rec)
    return " against the damaged source" if same else ""


def plate_heatmap(ds: xr.Dataset, path: str | Path) -> Path:
    """Save the mean PhIRM per well as a plate heatmap PNG.

    Wells holding a flagged field are outlined in red (:func:`flagged_wells`).
    """
    values = (
        ds["well_phirm_mean"]
        if "well_phirm_mean" in ds
        else ds["phirm"].mean(("field", "window"), skipna=True)
    )
    data = values.transpose("row", "column").values.astype(np.float64)
    thr = float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))
    fig = _heatmap_figure(
        data,
        [str(r) for r in ds["row"].values],
        [str(c) for c in ds["column"].values],
        threshold=thr,
        title=f"mean PhIRM per well{_scored_against(ds)}",
        what="mean PhIRM",
        outlined=flagged_wells(ds),
    )
    path = Path(path)
    fig.savefig(path)
    return path


def phirm_histogram(ds: xr.Dataset, path: str | Path, *, threshold: float | None = None) -> Path:
    """Save a histogram of per-window PhIRM (threshold marked) as PNG."""
    vals = ds["phirm"].values.ravel()
    vals = vals[~np.isnan(vals)]
    thr = (
        float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))
        if threshold is None
        else float(threshold)
    )
    fig = _fig(6, 3.2)
    ax = fig.add_subplot()
    ax.hist(vals, bins=np.linspace(0, 1, 41), color="#3b6ea8")  # type: ignore[arg-type]  # stubs: list only
    ax.axvline(thr, color="crimson", ls="--", label=f"threshold {thr:g}")
    ax.set_xlabel("PhIRM per window")
    ax.set_ylabel("windows")
    ax.set_title(
        f"{vals.size} windows, {np.mean(vals < thr) * 100 if vals.size else 0:.1f}% below {thr:g}"
    )
    ax.legend(loc="upper left")
    path = Path(path)
    fig.savefig(path)
    return path


def field_thumbnail(
    ds: xr.Dataset,
    row: str,
    column: str,
    field: int,
    path: str | Path,
    *,
    reference: npt.NDArray[np.number[Any]] | None = None,
    reconstruction: npt.NDArray[np.number[Any]] | None = None,
    source: npt.NDArray[np.number[Any]] | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
) -> Path:
    """Save source | holes | restored | (reference) | |difference| of one field as PNG.

    ``source`` is the damaged input, ``mask`` the holes filled, ``reference`` what PhIRM
    scored against (shown apart when it is not the source), all ``(Y, X)``. By default they
    are read from the plates recorded in ``ds.attrs`` (:func:`read_field_images`). Windows of
    PhIRM below the QC's threshold are outlined in red.
    """
    _field_thumbnail(
        ds, row, column, field, path, reference, reconstruction, source=source, mask=mask
    )
    return Path(path)


def _field_thumbnail(
    ds: xr.Dataset,
    row: str,
    column: str,
    field: int,
    path: str | Path,
    reference: npt.NDArray[Any] | None = None,
    reconstruction: npt.NDArray[Any] | None = None,
    *,
    source: npt.NDArray[Any] | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
) -> list[str]:
    """:func:`field_thumbnail`, returning the panel captions."""
    if reference is None or reconstruction is None:
        images = read_field_images(
            ds.attrs["reference"],
            ds.attrs.get("reference_channel", 0),
            ds.attrs["reconstruction"],
            ds.attrs.get("reconstruction_channel", 0),
            (row, column, field),
            mask_label=ds.attrs.get("mask_label"),
        )
    else:
        images = FieldImages(
            source,
            mask,
            reconstruction,
            reference,
            "source" if source is not None else None,
            str(ds.attrs.get("reference_channel", "reference")),
            False,
            None,
        )
    thr = float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))
    sel = ds.sel(row=row, column=column, field=field)
    h = int(ds.attrs.get("window_height", int(images.reference.shape[0])))
    w = int(ds.attrs.get("window_width", int(images.reference.shape[1])))
    low = [
        (int(y0), int(x0), h, w)
        for y0, x0, p in zip(sel["y0"].values, sel["x0"].values, sel["phirm"].values, strict=True)
        if p < thr
    ]
    against = " against the damaged source" if images.reference_is_source else ""
    fig, captions = _field_figure(
        images,
        title=f"{row}{column} field {field}: mean PhIRM{against} "
        f"{float(np.nanmean(sel['phirm'].values)):.3f} (red: windows < {thr:g})",
        windows=low,
    )
    fig.savefig(Path(path))
    return captions


def _alt(captions: Sequence[str]) -> str:
    """Join the panel captions into one line of alt text."""
    return "; ".join(" ".join(c.split()) for c in captions)


def _fmt(v: object) -> str:
    try:
        v = float(v)  # type: ignore[arg-type]  # whatever float() takes; the rest as text
    except (TypeError, ValueError):
        return html.escape(str(v))
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "inf"
    return f"{v:.0f}" if v == int(v) and abs(v) >= 10 else f"{v:.4g}"


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
    from phirm_scale.qc import summarise

    plate_heatmap(ds, out / "heatmap.png")
    phirm_histogram(ds, out / "histogram.png")
    plate = summarise(ds, "plate")
    thr = float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))

    worst_rows = []
    note = ""
    against = _scored_against(ds)
    for r, c, f, m in worst_fields(ds, worst):
        name = f"worst_{r}{c}_{f}.png"
        try:
            captions = _field_thumbnail(ds, r, c, f, out / name)
            img = (
                f'<img src="{html.escape(name)}" width="900" alt="well {html.escape(r + c)} '
                f"field {f}, panels: {html.escape(_alt(captions))} (grey scale: the "
                f"1-99.5 percentiles of the source outside the holes); windows with PhIRM "
                f'below {thr:g} outlined in red; mean PhIRM{against} {m:.3f}">'
            )
        except Exception as exc:  # noqa: BLE001 - a report without thumbnails is still useful
            img = "<em>thumbnail unavailable</em>"
            note = (
                f"Thumbnails need the plates recorded in the QC attributes "
                f"({html.escape(str(ds.attrs.get('reference')))}, "
                f"{html.escape(str(ds.attrs.get('reconstruction')))}): "
                f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}"
            )
        fs = ds.sel(row=r, column=c, field=f)
        worst_rows.append(
            f"<tr><td>{r}{c}</td><td>{f}</td><td>{m:.4f}</td>"
            f"<td>{_fmt(fs['phirm'].min())}</td>"
            f"<td>{_fmt(fs['ref_nuclei_count'].sum())} / {_fmt(fs['rec_nuclei_count'].sum())}"
            f"</td><td>{_fmt(fs['ref_artefact_area'].sum())} / "
            f"{_fmt(fs['rec_artefact_area'].sum())}</td></tr>"
            f"<tr><td colspan=6>{img}</td></tr>"
        )

    summary = [
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
    flagged_html = _flagged_section(ds)
    inputs = [
        (k, ds.attrs[k])
        for k in (
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
        if k in ds.attrs
    ]
    panels = (
        "Each picture: the damaged source, the holes the inpainting filled, the restored "
        "image and what PhIRM compared, |restored - reference| (the reference is the damaged "
        "source: every artefact removed counts as damage)"
        if against
        else "Each picture: the damaged source (where the restored plate records it), the "
        "holes the inpainting filled, the restored image, the reference and what PhIRM "
        "compared, |restored - reference|"
    )
    tr = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in summary)
    ti = "\n".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in inputs
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PhIRM QC report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:left}}img{{max-width:100%;height:auto}}</style></head><body>
<h1>PhIRM QC report</h1>
<h2>Inputs</h2><table>{ti}</table>
<h2>Plate summary</h2><table>{tr}</table>
<h2>Plate heatmap</h2><img src="heatmap.png" alt="mean PhIRM per well">
<h2>PhIRM per window</h2><img src="histogram.png" alt="histogram of PhIRM per window">
{flagged_html}
<h2>Worst fields</h2>
<p>{note}</p>
<p>{panels}.</p>
<table><tr><th>well</th><th>field</th><th>mean PhIRM</th><th>min PhIRM</th>
<th>nuclei ref / rec</th><th>artefact area ref / rec</th></tr>
{"".join(worst_rows)}</table>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


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
    rows = []
    for r, c, f, _code in flagged_fields(ds):
        d = ds.sel(row=r, column=c, field=f)
        rows.append(
            f"<tr><td>{html.escape(r + c)}</td><td>{f}</td>"
            f"<td>{html.escape(selfcheck_reason(d))}</td></tr>"
        )
    n = int(np.sum(ds["flag"].notnull().values))
    return (
        f"<h2>Flagged fields, reference-free QC ({len(rows)} of {n})</h2>"
        f"<p>Every field flagged by the self-check or the residual artefact ({rule}).</p>"
        "<table><tr><th>well</th><th>field</th><th>why</th></tr>"
        + ("".join(rows) or "<tr><td colspan=3>none</td></tr>")
        + "</table>"
    )


# ============================================================================ shared pictures
#: Outline colour of flagged wells in the heatmaps (the threshold on the colour bar: crimson).
OUTLINE_COLOUR = "red"

#: Artist id of a flagged well's outline (tests and readers of the figure find them by it).
OUTLINE_GID = "flagged-well"


class FieldImages(NamedTuple):
    """The pictures of one field: what was damaged, what was filled, what came out.

    ``source`` is the damaged input the inpainting read (None when the restored plate records
    no ``inpaint`` provenance), ``mask`` the holes filled (the label the restored plate
    carries, dilated as inpainted; None when none is recorded), ``reference`` what PhIRM
    scored against and ``reference_is_source`` whether that is the damaged input itself
    (no reference channel: every artefact removed then counts as damage).
    """

    source: npt.NDArray[Any] | None
    mask: npt.NDArray[np.bool_] | None
    restored: npt.NDArray[Any]
    reference: npt.NDArray[Any]
    source_channel: str | None
    reference_channel: str
    reference_is_source: bool
    dilate: int | None


def _inpaint_provenance(reconstruction: str | Path) -> Mapping[str, Any] | None:
    from phirm_scale.plate import ATTRS_KEY, open_plate

    try:
        prov = open_plate(reconstruction).attrs.get(ATTRS_KEY, {}).get("inpaint")
    except Exception:  # noqa: BLE001 - no plate there: nothing recorded
        return None
    return prov if isinstance(prov, Mapping) else None


def _same_store(a: object, b: object) -> bool:
    try:
        return Path(str(a)).resolve() == Path(str(b)).resolve()
    except OSError:
        return str(a) == str(b)


def reference_is_source(
    reference: str | Path, reference_channel: object, reconstruction: str | Path
) -> bool | None:
    """Whether PhIRM scored a restored plate against the damaged input it was made from.

    Read from the restored plate's ``inpaint`` provenance (its source plate and channel);
    None when it records none. True means there was no ground truth: every artefact the
    inpainting removed counts as damage in that PhIRM.
    """
    prov = _inpaint_provenance(reconstruction)
    if prov is None:
        return None
    return _same_store(prov.get("source"), reference) and str(prov.get("channel")) == str(
        reference_channel
    )


def read_field_images(
    reference: str | Path,
    reference_channel: str | int,
    reconstruction: str | Path,
    reconstruction_channel: str | int,
    key: tuple[str, str, int],
    *,
    mask_label: str | None = None,
) -> FieldImages:
    """Read :class:`FieldImages` of field ``key`` from the plates a QC records.

    The damaged source and the holes come from the restored plate's ``inpaint`` provenance
    (``source``, ``channel``) and its label (the mask as filled); without provenance the mask
    is ``mask_label`` of the reference plate, where it has one.
    """
    from phirm_scale.plate import FieldKey, open_plate

    k = FieldKey(str(key[0]), str(key[1]), int(key[2]))
    rec_plate = open_plate(reconstruction)
    restored = rec_plate.read_field(k, reconstruction_channel)
    ref_plate = open_plate(reference)
    ref = ref_plate.read_field(k, reference_channel)
    ref_ch = (
        ref_plate.channel_names[reference_channel]
        if isinstance(reference_channel, int)
        else str(reference_channel)
    )
    prov = _inpaint_provenance(reconstruction)
    source = mask = None
    source_channel = None
    dilate = None
    same = False
    if prov is not None:
        source_channel = str(prov.get("channel"))
        same = _same_store(prov.get("source"), reference) and source_channel == ref_ch
        if same:
            source = ref
        else:
            try:
                source = open_plate(str(prov["source"])).read_field(k, source_channel)
            except Exception:  # noqa: BLE001 - moved or deleted: shown as not recorded
                source = None
        label = prov.get("mask_label")
        if label and rec_plate.has_label(k, str(label)):
            mask = rec_plate.read_label(k, str(label)) > 0
            dilate = int(prov.get("dilate") or 0)
    if mask is None and mask_label and ref_plate.has_label(k, mask_label):
        mask = ref_plate.read_label(k, mask_label) > 0
    return FieldImages(source, mask, restored, ref, source_channel, ref_ch, same, dilate)


def _field_figure(
    images: FieldImages,
    *,
    title: str,
    windows: Sequence[tuple[int, int, int, int]] = (),
) -> tuple[Figure, list[str]]:
    """Draw source | mask | restored | (reference) | difference of one field.

    Returns the figure and the panel captions.
    The reference gets a panel of its own when it is not the damaged source (a ground
    truth). Source, restored and reference share one grey scale: the 1-99.5 percentiles of
    the source's pixels outside the holes (its saturated artefacts would otherwise set it).
    The difference is ``|restored - reference|`` on 8 bit as PhIRM sees it (the reference's
    min / max), shown from 0 to its 99.9th percentile. ``windows`` ``(y0, x0, h, w)`` are
    outlined in red on the restored image and the difference.
    """
    from matplotlib.patches import Rectangle

    from phirm_scale.metric import to_uint8

    src = images.source if images.source is not None else images.reference
    mask = images.mask
    known = src[~mask] if mask is not None and not mask.all() else src
    p1, p995 = (float(v) for v in np.percentile(known, [1, 99.5]))
    lo, hi = float(np.min(images.reference)), float(np.max(images.reference))
    diff = np.abs(
        to_uint8(images.restored, lo, hi).astype(np.int16)
        - to_uint8(images.reference, lo, hi).astype(np.int16)
    ).astype(np.float64)
    top = max(float(np.percentile(diff, 99.9)), 1.0)
    first = (
        f"reference ({images.reference_channel}; damaged source not recorded)"
        if images.source is None
        else f"source: the damaged input ({images.source_channel})"
    )
    if mask is None:
        mask_title = "holes: no mask recorded"
        mask_img = np.zeros(src.shape)
    else:
        grown = f", grown {images.dilate} px" if images.dilate else ""
        mask_title = f"holes filled: {int(mask.sum()):,} px{grown}"
        mask_img = mask.astype(np.float64)
    panels: list[tuple[npt.ArrayLike, str]] = [
        (_stretch(src, p1, p995), first),
        (mask_img, mask_title),
        (_stretch(images.restored, p1, p995), "restored (same grey scale)"),
    ]
    if images.source is not None and not images.reference_is_source:
        panels.append(
            (_stretch(images.reference, p1, p995), f"reference ({images.reference_channel})")
        )
    against = (
        "source: what the inpainting changed"
        if images.reference_is_source or images.source is None
        else "reference"
    )
    panels.append(
        (
            np.clip(diff / top, 0.0, 1.0),
            f"|restored - {against}|\n(8 bit as PhIRM sees it; white = {top:.0f} of 255)",
        )
    )
    fig = _fig(3.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels))
    _draw_panels(axes, panels)
    for y0, x0, h, w in windows:
        for ax in (axes[2], axes[-1]):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, lw=1.0, ec="crimson"))
    fig.suptitle(title, fontsize=11)
    return fig, [t for _, t in panels]


def _heatmap_figure(
    data: npt.NDArray[np.float64],
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    threshold: float,
    title: str,
    what: str,
    outlined: npt.NDArray[np.bool_],
) -> Figure:
    """Draw a plate heatmap with a colour bar exactly as tall as the plate.

    One square cell per well with its value written in it (up to 400 wells), ``outlined``
    wells framed in red.
    The axes are placed in inches (no layout engine), so a cell is the same size on every
    plate (0.55 in, less for plates over 24 columns) and the text is readable (10 pt labels,
    9 pt values).
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    nr, nc = data.shape
    cell = min(0.55, 13.0 / max(nc, 1), 9.0 / max(nr, 1))
    left, right, bottom, top, gap, bar = 0.55, 1.25, 0.95, 0.95, 0.15, 0.22
    content = left + nc * cell + gap + bar + right
    width = max(content, 5.6)  # room for the title on a small plate
    height = nr * cell + bottom + top
    fig = Figure(figsize=(width, height), dpi=100)
    x0 = left + (width - content) / 2  # the plate centred under the title
    ax = fig.add_axes((x0 / width, bottom / height, nc * cell / width, nr * cell / height))
    cax = fig.add_axes(
        ((x0 + nc * cell + gap) / width, bottom / height, bar / width, nr * cell / height)
    )
    finite = data[np.isfinite(data)]
    lo = float(min(finite.min(), threshold)) if finite.size else threshold
    hi = float(max(finite.max(), threshold)) if finite.size else 1.0
    if hi - lo < 0.02:
        lo = max(0.0, hi - 0.02)
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    im = ax.imshow(
        np.ma.masked_invalid(data),
        cmap=cmap,
        vmin=lo,
        vmax=hi,
        interpolation="nearest",
        aspect="auto",
    )
    ax.set_xticks(range(nc), list(cols), fontsize=10 if cell >= 0.4 else 7)
    ax.set_yticks(range(nr), list(rows), fontsize=10 if cell >= 0.4 else 7)
    ax.tick_params(length=0)
    if data.size <= 400 and cell >= 0.4:
        for (i, j), v in np.ndenumerate(data):
            if not math.isnan(v):
                frac = (v - lo) / (hi - lo) if hi > lo else 1.0
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if frac < 0.55 else "black",
                )
    for (i, j), bad in np.ndenumerate(outlined):
        if bad:
            ax.add_patch(
                Rectangle(
                    (j - 0.5, i - 0.5),
                    1,
                    1,
                    fill=False,
                    ec=OUTLINE_COLOUR,
                    lw=3,
                    gid=OUTLINE_GID,
                    clip_on=False,
                )
            )
    cb = fig.colorbar(im, cax=cax)
    cb.ax.tick_params(labelsize=9)
    cax.set_title(what.replace(" ", "\n", 1), fontsize=9, loc="left")  # fits a 1-row plate
    cb.ax.axhline(threshold, color="crimson", lw=2)
    fig.text(0.5, 1 - 0.3 / height, title, ha="center", va="center", fontsize=11)
    fig.text(
        0.5,
        0.3 / height,
        f"red outline: well with a flagged field\ncrimson line on the bar: threshold "
        f"{threshold:g}; grey: not scored",
        ha="center",
        va="center",
        fontsize=9,
    )
    return fig


# ============================================================================ screen report
_HOW_TO_READ = """
<p><b>PhIRM</b> (phenotype-preserving image reconstruction metric) asks whether an analysis
pipeline would measure the same nuclei on the restored image as on the reference. In every
{win} window both images are normalised to 8 bit with the reference's range, nuclei are
segmented (Otsu threshold, connected components of at least 50 px; saturated bright objects
count as artefacts), and three penalties are added:</p>
<ul>
<li><b>NCD</b>, nuclei count difference: a nuclei lost costs <code>1.1<sup>a</sup>&middot;a</code>,
nuclei invented cost <code>2<sup>|a|</sup></code>;</li>
<li><b>NAD</b>, nuclei area difference: 0.0002 per pixel of nuclear area gained or lost;</li>
<li><b>AAD</b>, artefact area difference: 0.001 per pixel of artefact area changed.</li>
</ul>
<p><code>PhIRM = max(0, 10 - (NCD + NAD + AAD)) / 10</code>: 1 means the phenotype was kept,
0 that it was lost. {flagging} the heatmaps colour each well by its mean {what} on a scale
fitted to the data, with the threshold marked on the colour bar, and outline in red the wells
holding a flagged field. "ref" is the reference ({ref}), "rec" the restored image ({rec});
counts and areas of a field are summed over its windows.</p>
"""


_HOW_SELFCHECK = """
<p><b>Without a reference</b> (no <code>--reference-channel</code>) PhIRM above compares the
restored image with the damaged source, so every artefact removed counts as damage (AAD) and
says little. Fields are then judged by the <b>self-check</b>: pseudo-holes shaped like the
plate's real artefact masks are placed on clean pixels of each field, filled with the same
model and settings, and scored with PhIRM against the true pixels there (the heatmaps show
its mean per well). A field is flagged when its mean self-check PhIRM is below {thr:g}, or
when more than {res:g} px of artefact are left in the restored field (the masks missed part
of an artefact). The self-check estimates a plate's quality well but ranks single fields
only weakly (docs/qc-without-ground-truth.md). It cannot see what the masks missed: the
<b>estimated PhIRM</b> adds to the self-check's deficit what PhIRM would charge for the
artefact left in each restored window and the nuclei it covers (section 8 there).</p>
"""


def _display(
    img: npt.ArrayLike, target: int = 720
) -> tuple[npt.NDArray[np.float64], tuple[float, float, float, float]]:
    """Block-mean an image down for a thumbnail panel, keeping its pixel coordinates.

    A panel is ~330 px wide, so a 2160-px field is averaged over 3x3 blocks (the largest integer
    factor leaving at least ``target`` px a side) before matplotlib resamples it: the picture
    is the same to the eye and a thumbnail takes ~0.2 s instead of ~2 s. Returns the image and
    the ``extent`` that keeps drawing in full-resolution pixel coordinates.
    """
    a = np.asarray(img, dtype=np.float64)
    f = max(1, min(a.shape) // target)
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    if f > 1:
        a = a[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    return a, (-0.5, w - 0.5, h - 0.5, -0.5)


def _draw_panels(
    axes: Axes | npt.NDArray[np.object_], panels: Sequence[tuple[npt.ArrayLike, str]]
) -> None:
    """Draw ``(image in [0, 1], title)`` panels in grey, one per axis, at display size."""
    all_axes = np.atleast_1d(axes)  # type: ignore[arg-type]  # one Axes -> a 1-element array
    for ax, (img, title) in zip(all_axes, panels, strict=True):
        shown, extent = _display(img)
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="antialiased", extent=extent)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()


def _stretch(img: npt.ArrayLike, lo: float, hi: float) -> npt.NDArray[np.float64]:
    a = (np.asarray(img, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
    return np.clip(a, 0.0, 1.0)


def heatmap_variable(ds: xr.Dataset) -> tuple[str, str]:
    """Return the per-well variable a screen heatmap colours by, and its name in words.

    Without a reference the estimated PhIRM (self-check plus what the restoration left;
    the self-check alone cannot see rims the masks missed, docs/qc-without-ground-truth.md
    section 8), else the self-check PhIRM, else the PhIRM.
    """
    for var, what in (
        ("well_estimated_phirm_mean", "estimated PhIRM"),
        ("well_selfcheck_phirm_mean", "self-check PhIRM"),
    ):
        if var in ds and np.isfinite(np.asarray(ds[var].values, float)).any():
            return var, what
    return "well_phirm_mean", "PhIRM"


def _screen_heatmap(
    ds: xr.Dataset, plate: str, path: str | Path, threshold: float, *, against: str = ""
) -> Path:
    """Save the mean PhIRM per well of one plate (self-check PhIRM where the QC has it).

    Cropped to the occupied wells; colour range from the data, threshold on the bar, wells
    with a flagged field outlined (:func:`flagged_wells`). ``against`` is said after "PhIRM".
    """
    d = ds.sel(plate=plate)
    var, what = heatmap_variable(ds)
    what = what if var != "well_phirm_mean" else f"PhIRM{against}"
    data = d[var].transpose("row", "column").values.astype(float)
    outlined = flagged_wells(d)
    rows = [str(r) for r in ds["row"].values]
    cols = [str(c) for c in ds["column"].values]
    keep_r = [i for i in range(len(rows)) if not np.all(np.isnan(data[i]))]
    keep_c = [j for j in range(len(cols)) if not np.all(np.isnan(data[:, j]))]
    if keep_r and keep_c:  # crop to the occupied part of the plate
        r0, r1 = min(keep_r), max(keep_r) + 1
        c0, c1 = min(keep_c), max(keep_c) + 1
        data, rows, cols = data[r0:r1, c0:c1], rows[r0:r1], cols[c0:c1]
        outlined = outlined[r0:r1, c0:c1]
    fig = _heatmap_figure(
        data,
        rows,
        cols,
        threshold=threshold,
        title=f"plate {plate}: mean {what} per well",
        what=f"mean {what.split(' against')[0]}",
        outlined=outlined,
    )
    path = Path(path)
    fig.savefig(path)
    return path


def _screen_thumbnail(
    ds: xr.Dataset, plate: str, row: str, column: str, field: int, path: str | Path
) -> list[str]:
    """Save source | holes | restored | (reference) | |difference| of one screen field.

    As PNG (:func:`_field_figure`); returns the panel captions.
    """
    d = ds.sel(plate=plate)
    images = read_field_images(
        str(d["reference"].values),
        str(d["reference_channel"].values),
        str(d["reconstruction"].values),
        str(d["reconstruction_channel"].values),
        (row, column, field),
        mask_label=str(d["mask_label"].values) or None,
    )
    sel = d.sel(row=row, column=column, field=field)
    if "field_selfcheck_phirm_mean" in d:
        score = f"mean self-check PhIRM {float(sel['field_selfcheck_phirm_mean'].values):.3f}"
    else:
        against = " against the damaged source" if images.reference_is_source else ""
        score = f"mean PhIRM{against} {float(sel['field_phirm_mean'].values):.3f}"
    fig, captions = _field_figure(
        images, title=f"plate {plate}, {row}{column} field {field}: {score}"
    )
    fig.savefig(Path(path))
    return captions


def _n(v: float | npt.NDArray[np.number[Any]]) -> str:
    v = float(v)
    if math.isnan(v):
        return "–"
    return f"{v:,.0f}" if v == int(v) else f"{v:,.3g}"


def flag_reason(d: xr.Dataset) -> str:
    """One sentence saying why a field (``ds.sel(plate, row, column, field)``) scored low."""
    parts = []
    terms = {t: float(np.nanmean(d[t].values)) for t in ("ncd", "nad", "aad") if t in d}
    main = max(terms, key=lambda t: terms[t]) if terms else None
    names = {"ncd": "nuclei count (NCD)", "nad": "nuclei area (NAD)", "aad": "artefact area (AAD)"}
    rn = float(np.nansum(d["ref_nuclei_count"].values))
    cn = float(np.nansum(d["rec_nuclei_count"].values))
    if cn < rn:
        parts.append(f"{_n(rn - cn)} nuclei lost ({_n(rn)} -> {_n(cn)})")
    elif cn > rn:
        parts.append(f"{_n(cn - rn)} nuclei invented ({_n(rn)} -> {_n(cn)})")
    else:
        parts.append(f"nuclei count unchanged ({_n(rn)})")
    ra = float(np.nansum(d["ref_nuclei_area"].values))
    ca = float(np.nansum(d["rec_nuclei_area"].values))
    if ca != ra:
        parts.append(f"nuclear area {'+' if ca > ra else '-'}{_n(abs(ca - ra))} px")
    aa = float(np.nansum(d["ref_artefact_area"].values))
    ab = float(np.nansum(d["rec_artefact_area"].values))
    if ab or aa:
        parts.append(f"artefact area {_n(aa)} -> {_n(ab)} px ({_n(ab)} px of artefact left)")
    if "masked_fraction" in d:
        parts.append(
            f"{float(np.nanmean(d['masked_fraction'].values)) * 100:.1f}% of pixels masked"
        )
    lead = f"mostly {names[main]}: " if main and terms[main] > 0 else ""
    return lead + ", ".join(parts) + "."


def recorded_hidden_threshold(flag_attrs: Mapping[str, Any]) -> float | None:
    """Return the hidden-nuclei threshold a ``flag`` variable records (None: not applied).

    A QC made before flag bit 8 existed records none (or, from a run resumed then, inf):
    its text must not claim the rule.
    """
    try:
        v = float(flag_attrs["hidden_threshold"])
    except (KeyError, TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def selfcheck_reason(d: xr.Dataset) -> str:
    """Say in one sentence why a field was flagged by the reference-free QC."""
    parts = []
    code = int(np.nan_to_num(d["flag"].values))
    sc = (
        float(d["field_selfcheck_phirm_mean"].values)
        if "field_selfcheck_phirm_mean" in d
        else float("nan")
    )
    thr = float(d["flag"].attrs.get("selfcheck_threshold", DEFAULT_SELFCHECK_THRESHOLD))
    res_thr = float(d["flag"].attrs.get("residual_threshold", DEFAULT_RESIDUAL_THRESHOLD))
    if code & FLAG_BITS["selfcheck_below_threshold"]:
        parts.append(
            f"self-check PhIRM {sc:.3f} < {thr:g}: the model loses phenotype when it fills "
            "holes of this field's shapes on its clean pixels"
        )
    if code & FLAG_BITS["residual_artefact_above_threshold"]:
        parts.append(
            f"{_n(d['residual_artefact_area'].values)} px of artefact left after "
            f"restoration (> {res_thr:g} px: the masks missed part of the artefact)"
        )
    if code & FLAG_BITS["selfcheck_not_run"]:
        parts.append("no pseudo-hole could be placed: the restoration was not checked")
    hid_thr = recorded_hidden_threshold(d["flag"].attrs)
    if code & FLAG_BITS["hidden_nuclei_above_threshold"] and hid_thr is not None:
        px = float(np.nan_to_num(d["expected_hidden_nuclear_area"].values))
        parts.append(
            f"about {_n(px)} px of nuclei expected under the holes (>= {hid_thr:g}: holes "
            "over this much nuclear area often lose nuclei; check the restored field by eye)"
        )
    if "nuclei_in_holes" in d and float(np.nan_to_num(d["nuclei_in_holes"].values)) > 0:
        n = float(np.nan_to_num(d["nuclei_in_holes"].values))
        parts.append(f"{_n(n)} {'nucleus' if n == 1 else 'nuclei'} drawn mostly inside the holes")
    if "masked_fraction_field" in d:
        parts.append(
            f"{float(np.nan_to_num(d['masked_fraction_field'].values)) * 100:.1f}% of pixels "
            "restored"
        )
    return "; ".join(parts) + "."


def write_screen_report(
    ds: xr.Dataset,
    out_dir: str | Path,
    *,
    warnings: list[str] | None = None,
    links: dict[str, str] | None = None,
    thumbnails: int = 24,
    sample: int = 3,
) -> Path:
    """Write the report of a screen QC Dataset (:func:`phirm_scale.screenqc.screen_dataset`).

    Writes ``out_dir/index.html`` with: warnings at the top, a plain-words summary (fields
    processed, area restored, fields flagged and why), a heatmap per plate with a colour
    range fitted to the data and the threshold marked, every flagged field with a sentence
    of why (pictures for the ``thumbnails`` worst), pictures of ``sample`` more fields (the
    unflagged ones with the most pixels restored, so that a screen without a flagged field
    still shows what was done), "how to read this", and ``links``. Each picture is source
    (the damaged input) | holes filled | restored | (reference, when it is not the source) |
    |restored - reference|, captioned as such, with alt text.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    thr = float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))
    plates = [str(p) for p in ds["plate"].values]
    fm = ds["field_phirm_mean"].transpose("plate", "row", "column", "field").values
    scored = ~np.isnan(fm)
    n_fields = int(scored.sum())
    n_wells = int((~np.isnan(ds["well_phirm_mean"].values)).sum())
    # pixels restored: the filled masks counted once per field (window fractions would count
    # the pixels of overlapping windows twice)
    masked_px = (
        float(np.nansum(ds["field_restored_area"].values)) if "field_restored_area" in ds else None
    )
    # without a reference the fields are flagged by the self-check and the residual
    # artefact (``flag``); PhIRM against the damaged source would flag every restoration
    flagmode = "flag" in ds
    selfcheck = flagmode and "field_selfcheck_phirm_mean" in ds
    # the reference-free estimate of the true PhIRM (docs/qc-without-ground-truth.md, 8)
    estimate = selfcheck and "plate_estimated_phirm_mean" in ds
    order = (
        ds["field_selfcheck_phirm_mean"].transpose("plate", "row", "column", "field").values
        if selfcheck
        else fm
    )
    flags = (
        np.nan_to_num(ds["flag"].transpose("plate", "row", "column", "field").values)
        if flagmode
        else None
    )
    # whether each plate's PhIRM compares the restored image with its own damaged input
    # (no reference channel: every artefact removed counts as damage)
    vs_source = {}
    for p in plates:
        d = ds.sel(plate=p)
        known = (
            reference_is_source(
                str(d["reference"].values),
                str(d["reference_channel"].values),
                str(d["reconstruction"].values),
            )
            if all(k in d.coords for k in ("reference", "reference_channel", "reconstruction"))
            else None
        )
        vs_source[p] = flagmode if known is None else known
    against = " against the damaged source" if any(vs_source.values()) else ""
    flagged = []
    for i, p in enumerate(plates):
        for j, r in enumerate(ds["row"].values.tolist()):
            for k, c in enumerate(ds["column"].values.tolist()):
                for m, f in enumerate(ds["field"].values.tolist()):
                    v = order[i, j, k, m]
                    bad = (flags[i, j, k, m] > 0) if flags is not None else v < thr
                    if not math.isnan(fm[i, j, k, m]) and bad:
                        key = -1.0 if math.isnan(v) else v
                        flagged.append((key, p, str(r), str(c), int(f)))
    flagged.sort()
    esc = html.escape

    def picture(p: str, r: str, c: str, f: int) -> str:
        name = f"field_{p}_{r}{c}_{f}.png"
        try:
            captions = _screen_thumbnail(ds, p, r, c, f, out / name)
        except Exception as exc:  # noqa: BLE001 - report still useful without pictures
            return f"<em>thumbnail unavailable ({esc(type(exc).__name__)})</em>"
        return (
            f'<img src="{esc(name)}" width="1000" alt="plate {esc(p)} well {esc(r + c)} '
            f"field {f}, panels: {esc(_alt(captions))} (grey scale: the 1-99.5 "
            'percentiles of the source outside the holes)">'
        )

    warn_html = "".join(f'<p class="warn"><b>Warning:</b> {esc(w)}</p>' for w in (warnings or []))
    why_counts: dict[str, int] = {"ncd": 0, "nad": 0, "aad": 0}
    rows_html = []
    for n, (v, p, r, c, f) in enumerate(flagged):
        d = ds.sel(plate=p, row=r, column=c, field=f)
        if flagmode:
            code = int(np.nan_to_num(d["flag"].values))
            for meaning, name in (
                ("selfcheck_below_threshold", "self-check"),
                ("residual_artefact_above_threshold", "residual artefact"),
                ("selfcheck_not_run", "not checked"),
                ("hidden_nuclei_above_threshold", "hidden nuclei"),
            ):
                if code & FLAG_BITS[meaning]:
                    why_counts[name] = why_counts.get(name, 0) + 1
        else:
            terms = {t: float(np.nanmean(d[t].values)) for t in ("ncd", "nad", "aad")}
            why_counts[max(terms, key=lambda t: terms[t])] += 1
        img = ""
        if n < thumbnails:
            img = "<br>" + picture(p, r, c, f)
        rows_html.append(
            f"<tr><td>{esc(p)}</td><td>{esc(r + c)}</td><td>{f}</td>"
            f"<td>{_fmt(v) if v >= 0 else '–'}</td>"
            f"<td>{esc(selfcheck_reason(d) if flagmode else flag_reason(d))}{img}</td></tr>"
        )
    reasons = (
        ", ".join(
            f"{n} by the {t}" for t, n in why_counts.items() if n and t not in ("ncd", "nad", "aad")
        )
        if flagmode
        else ", ".join(f"{n} mostly by {t.upper()}" for t, n in why_counts.items() if n)
    )
    area = (
        f"{_n(masked_px)} px (about {masked_px / max(n_fields, 1):,.0f} px per field)"
        if masked_px is not None
        else "not recorded (no mask label)"
    )
    res_thr = (
        float(ds["flag"].attrs.get("residual_threshold", DEFAULT_RESIDUAL_THRESHOLD))
        if "flag" in ds
        else DEFAULT_RESIDUAL_THRESHOLD
    )
    hid_thr = recorded_hidden_threshold(ds["flag"].attrs) if "flag" in ds else None
    hidden = (
        f" or at least {hid_thr:g} px of nuclei expected under the holes"
        if hid_thr is not None
        else ""
    )
    rule = (
        f"mean self-check PhIRM below {thr:g}, more than {res_thr:g} px of artefact left "
        f"after restoration{hidden}; there is no reference, so PhIRM against the damaged "
        "source is not used to flag"
        if selfcheck
        else f"more than {res_thr:g} px of artefact left after restoration{hidden}; there is "
        "no reference and no self-check"
        if flagmode
        else f"mean PhIRM below {thr:g}"
    )
    scored_vs = (
        "against the damaged source (no reference channel: every artefact removed counts as "
        "damage in that PhIRM)"
        if against
        else "against the reference image"
    )
    plain = (
        f"<p>{len(plates)} plate(s), {n_wells} wells and <b>{n_fields} fields</b> were "
        f"processed: artefact masks, inpainting of the masked pixels "
        f"and PhIRM scoring of the restored image {scored_vs}.</p>"
        f"<p>Area restored (pixels inside the masks the inpainting filled, each pixel "
        f"counted once): {area}.</p>"
        f"<p><b>{len(flagged)} of {n_fields} fields are flagged</b> ({rule})"
        + (f": {reasons}." if flagged else ".")
        + "</p>"
    )
    # a sample of fields pictured whatever was flagged: those with the most pixels restored
    shown = {e[1:] for e in flagged[:thumbnails]}
    area_of = (
        ds["field_restored_area"]
        if "field_restored_area" in ds
        else ds["masked_fraction_field"]
        if "masked_fraction_field" in ds
        else ds["masked_fraction"].mean("window")
        if "masked_fraction" in ds
        else None
    )
    candidates = []
    for i, p in enumerate(plates):
        for j, r in enumerate(ds["row"].values.tolist()):
            for k, c in enumerate(ds["column"].values.tolist()):
                for m, f in enumerate(ds["field"].values.tolist()):
                    key = (p, str(r), str(c), int(f))
                    if scored[i, j, k, m] and key not in shown:
                        a = (
                            float(np.nan_to_num(area_of.sel(plate=p, row=r, column=c, field=f)))
                            if area_of is not None
                            else 0.0
                        )
                        candidates.append((-a, i, j, k, m, key))
    candidates.sort()
    sample_keys = [e[-1] for e in candidates[: max(0, int(sample))]]
    sample_html = "".join(
        f"<h3>plate {esc(p)}, well {esc(r + c)}, field {f}</h3>{picture(p, r, c, f)}"
        for p, r, c, f in sample_keys
    )
    panels = (
        "each picture is the damaged source, the holes the inpainting filled, the restored "
        "image and |restored - reference| (the reference is the damaged source)"
        if against
        else "each picture is the damaged source, the holes the inpainting filled, the "
        "restored image, the reference and |restored - reference|"
    )
    plate_rows = []
    heatmaps = []
    for p in plates:
        d = ds.sel(plate=p)
        nf = int((~np.isnan(d["field_phirm_mean"].values)).sum())
        nflag = sum(1 for e in flagged if e[1] == p)
        mf = (
            _fmt(d["plate_masked_fraction_mean"].values)
            if "plate_masked_fraction_mean" in d
            else "–"
        )
        plate_rows.append(
            f"<tr><td>{esc(p)}</td><td>{nf}</td><td>{nflag}</td>"
            f"<td>{_fmt(d['plate_phirm_mean'].values)}</td>"
            f"<td>{_fmt(d['plate_phirm_min'].values)}</td>"
            f"<td>{_fmt(d['plate_phirm_frac_below'].values)}</td>"
            f"<td>{mf}</td>"
            + (f"<td>{_fmt(d['plate_selfcheck_phirm_mean'].values)}</td>" if selfcheck else "")
            + (f"<td>{_fmt(d['plate_estimated_phirm_mean'].values)}</td>" if estimate else "")
            + f"<td>{esc(str(d['reference'].values))}</td></tr>"
        )
        name = f"heatmap_{p}.png"
        _screen_heatmap(
            ds, p, out / name, thr, against=" against the damaged source" if vs_source[p] else ""
        )
        var, what = heatmap_variable(ds)
        if var == "well_phirm_mean" and vs_source[p]:
            what = "PhIRM against the damaged source"
        heatmaps.append(
            f'<h3>{esc(p)}</h3><img src="{esc(name)}" alt="plate {esc(p)}: mean '
            f"{what} per well as a heatmap, wells with a flagged field outlined in red, "
            f'threshold {thr:g} marked on the colour bar; grey wells were not imaged">'
        )
    link_html = " · ".join(
        f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in (links or {}).items()
    )
    ref_ch = str(ds["reference_channel"].values[0]) if "reference_channel" in ds.coords else "?"
    rec_ch = (
        str(ds["reconstruction_channel"].values[0])
        if "reconstruction_channel" in ds.coords
        else "?"
    )
    how = _HOW_TO_READ.format(
        win=f"{ds.attrs.get('window_height', '?')}x{ds.attrs.get('window_width', '?')} px",
        flagging=(
            "Without a reference fields are flagged by the reference-free checks named above, "
            "not by PhIRM;"
            if flagmode
            else f"A field is <b>flagged</b> when its mean PhIRM is below the threshold "
            f"<b>{thr:g}</b>;"
        ),
        what=heatmap_variable(ds)[1],
        ref=f"source plate, channel {esc(ref_ch)}"
        + (" (the damaged input: no ground truth)" if against else ""),
        rec=f"inpainted plate, channel {esc(rec_ch)}",
    )
    pics = f"; pictures for the {thumbnails} worst" if len(flagged) > thumbnails else ""
    score_head = "mean self-check PhIRM" if selfcheck else "mean PhIRM"
    sc_head = "<th>self-check PhIRM mean</th>" if selfcheck else ""
    if estimate:
        sc_head += "<th>estimated PhIRM (no reference)</th>"
    if selfcheck:
        how += _HOW_SELFCHECK.format(thr=thr, res=res_thr)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PhIRM QC report of the screen</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px;line-height:1.4}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top}}img{{max-width:100%;height:auto}}
.warn{{background:#fde2e2;border:2px solid #c00;padding:.6em 1em}}</style></head><body>
<h1>PhIRM QC report of the screen</h1>
{warn_html}
<h2>What was done and what was found</h2>
{plain}
<p>Data: {link_html}</p>
<h2>Plates</h2>
<table><tr><th>plate</th><th>fields</th><th>flagged</th><th>PhIRM mean{against}</th>
<th>PhIRM min</th>
<th>windows &lt; {thr:g}</th><th>masked fraction</th>{sc_head}<th>plate store</th></tr>
{"".join(plate_rows)}</table>
<h2>Heatmaps</h2>
{"".join(heatmaps)}
<h2>Flagged fields ({len(flagged)})</h2>
<p>Every flagged field ({esc(rule)}), worst first{pics}.</p>
<table><tr><th>plate</th><th>well</th><th>field</th><th>{score_head}</th><th>why</th></tr>
{"".join(rows_html) or "<tr><td colspan=5>none</td></tr>"}</table>
<h2>Sample fields ({len(sample_keys)})</h2>
<p>Fields not pictured above with the most pixels restored, to show what was done: {panels}.
</p>
{sample_html or "<p>none left to show</p>"}
<h2>How to read this</h2>
{how}
<p>software: phirm-scale {esc(str(ds.attrs.get("software_version", "?")))}, mode
{esc(str(ds.attrs.get("mode", "paper")))}</p>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
