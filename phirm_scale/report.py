"""HTML report of a QC store: plate heatmap, PhIRM histogram, worst fields with thumbnails.

``write_report(QC.zarr, out_dir)`` writes into ``out_dir``:

* ``heatmap.png`` -- mean PhIRM per well on the plate grid (empty wells grey);
* ``histogram.png`` -- per-window PhIRM, with the summary threshold marked;
* ``worst_<row><column>_<field>.png`` -- for the ``worst`` fields of lowest mean PhIRM:
  reference | reconstruction | absolute difference (8 bit, normalised with the reference
  field's min/max as in the metric), windows below the threshold outlined; read from the plates
  recorded in the QC attributes (skipped, with a note, when they cannot be read);
* ``index.html`` -- inputs, plate summary, the pictures and the worst-field table.

Matplotlib is used through :class:`matplotlib.figure.Figure` only (no pyplot state, no GUI
backend), so reports can be written from worker threads.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from phirm_scale.errors import PhirmError

__all__ = [
    "field_thumbnail",
    "phirm_histogram",
    "plate_heatmap",
    "worst_fields",
    "write_report",
]


def _fig(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def worst_fields(ds, n: int = 6) -> list[tuple[str, str, int, float]]:
    """The ``n`` scored fields of lowest mean PhIRM (ties: lowest minimum, then plate order).

    Returns
    -------
    list of (row, column, field, mean PhIRM)
    """
    mean = ds["phirm"].mean("window", skipna=True) if "field_phirm_mean" not in ds \
        else ds["field_phirm_mean"]
    low = ds["phirm"].min("window", skipna=True) if "field_phirm_min" not in ds \
        else ds["field_phirm_min"]
    m = mean.transpose("row", "column", "field").values
    lo = low.transpose("row", "column", "field").values
    entries = []
    for i, r in enumerate(ds["row"].values.tolist()):
        for j, c in enumerate(ds["column"].values.tolist()):
            for k, f in enumerate(ds["field"].values.tolist()):
                if not math.isnan(m[i, j, k]):
                    entries.append((float(m[i, j, k]), float(lo[i, j, k]), (i, j, k),
                                    (str(r), str(c), int(f))))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    return [(*e[3], e[0]) for e in entries[:max(0, int(n))]]


def plate_heatmap(ds, path) -> Path:
    """Save the mean PhIRM per well as a plate heatmap PNG."""
    from matplotlib import colormaps

    values = (ds["well_phirm_mean"] if "well_phirm_mean" in ds
              else ds["phirm"].mean(("field", "window"), skipna=True))
    data = values.transpose("row", "column").values
    rows = [str(r) for r in ds["row"].values]
    cols = [str(c) for c in ds["column"].values]
    fig = _fig(max(4.0, 0.45 * len(cols) + 2.0), max(2.5, 0.45 * len(rows) + 1.2))
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="#cccccc")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0.0, vmax=1.0,
                   interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_title("mean PhIRM per well (grey: not scored)")
    if data.size <= 96:
        for (i, j), v in np.ndenumerate(data):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="PhIRM")
    path = Path(path)
    fig.savefig(path)
    return path


def phirm_histogram(ds, path, *, threshold: float | None = None) -> Path:
    """Save a histogram of per-window PhIRM (threshold marked) as PNG."""
    vals = ds["phirm"].values.ravel()
    vals = vals[~np.isnan(vals)]
    thr = float(ds.attrs.get("threshold", 0.9)) if threshold is None else float(threshold)
    fig = _fig(6, 3.2)
    ax = fig.add_subplot()
    ax.hist(vals, bins=np.linspace(0, 1, 41), color="#3b6ea8")
    ax.axvline(thr, color="crimson", ls="--", label=f"threshold {thr:g}")
    ax.set_xlabel("PhIRM per window")
    ax.set_ylabel("windows")
    ax.set_title(f"{vals.size} windows, {np.mean(vals < thr) * 100 if vals.size else 0:.1f}% "
                 f"below {thr:g}")
    ax.legend(loc="upper left")
    path = Path(path)
    fig.savefig(path)
    return path


def field_thumbnail(ds, row: str, column: str, field: int, path, *, reference=None,
                    reconstruction=None) -> Path:
    """Save reference | reconstruction | |difference| of one field as PNG.

    ``reference`` / ``reconstruction`` are ``(Y, X)`` arrays; by default they are read from the
    plates and channels recorded in ``ds.attrs``.
    """
    from matplotlib.patches import Rectangle

    from phirm_scale.metric import to_uint8

    if reference is None or reconstruction is None:
        from phirm_scale.plate import FieldKey, open_plate

        key = FieldKey(str(row), str(column), int(field))
        reference = open_plate(ds.attrs["reference"]).read_field(
            key, ds.attrs.get("reference_channel", 0))
        reconstruction = open_plate(ds.attrs["reconstruction"]).read_field(
            key, ds.attrs.get("reconstruction_channel", 0))
    lo, hi = float(np.min(reference)), float(np.max(reference))
    a8 = to_uint8(reference, lo, hi)
    b8 = to_uint8(reconstruction, lo, hi)
    diff = np.abs(a8.astype(np.int16) - b8.astype(np.int16)).astype(np.uint8)
    thr = float(ds.attrs.get("threshold", 0.9))
    sel = ds.sel(row=row, column=column, field=field)
    h = int(ds.attrs.get("window_height", a8.shape[0]))
    w = int(ds.attrs.get("window_width", a8.shape[1]))
    fig = _fig(10.5, 3.8)
    axes = fig.subplots(1, 3)
    for ax, img, title in zip(axes, (a8, b8, diff),
                              ("reference", "reconstruction", "|difference|")):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    for y0, x0, p in zip(sel["y0"].values, sel["x0"].values, sel["phirm"].values):
        if p < thr:
            for ax in axes[1:]:
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, lw=1.0,
                                       ec="crimson"))
    fig.suptitle(f"{row}{column} field {field}: mean PhIRM "
                 f"{float(np.nanmean(sel['phirm'].values)):.3f} (red: windows < {thr:g})",
                 fontsize=10)
    path = Path(path)
    fig.savefig(path)
    return path


def _fmt(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "inf"
    return f"{v:.0f}" if v == int(v) and abs(v) >= 10 else f"{v:.4g}"


def _pair(summary, component: str) -> str:
    return (f"{_fmt(summary['ref_' + component].values)} / "
            f"{_fmt(summary['rec_' + component].values)}")


def write_report(qc, out_dir, *, worst: int = 6) -> Path:
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

    from phirm_scale.qc import open_qc, summarise

    ds = qc if isinstance(qc, xr.Dataset) else open_qc(qc)
    if "phirm" not in ds:
        raise PhirmError("report: the Dataset has no 'phirm' variable (not a QC Dataset)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PhirmError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    plate_heatmap(ds, out / "heatmap.png")
    phirm_histogram(ds, out / "histogram.png")
    plate = summarise(ds, "plate")
    thr = float(ds.attrs.get("threshold", 0.9))

    worst_rows = []
    note = ""
    for r, c, f, m in worst_fields(ds, worst):
        name = f"worst_{r}{c}_{f}.png"
        try:
            field_thumbnail(ds, r, c, f, out / name)
            img = f'<img src="{html.escape(name)}" width="900">'
        except Exception as exc:  # noqa: BLE001 - a report without thumbnails is still useful
            img = "<em>thumbnail unavailable</em>"
            note = (f"Thumbnails need the plates recorded in the QC attributes "
                    f"({html.escape(str(ds.attrs.get('reference')))}, "
                    f"{html.escape(str(ds.attrs.get('reconstruction')))}): "
                    f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}")
        fs = ds.sel(row=r, column=c, field=f)
        worst_rows.append(
            f"<tr><td>{r}{c}</td><td>{f}</td><td>{m:.4f}</td>"
            f"<td>{_fmt(fs['phirm'].min())}</td>"
            f"<td>{_fmt(fs['ref_nuclei_count'].sum())} / {_fmt(fs['rec_nuclei_count'].sum())}"
            f"</td><td>{_fmt(fs['ref_artefact_area'].sum())} / "
            f"{_fmt(fs['rec_artefact_area'].sum())}</td></tr>"
            f"<tr><td colspan=6>{img}</td></tr>")

    summary = [("fields scored", int((~np.isnan(ds['phirm'].values)).any(-1).sum())),
               ("windows", int(plate["n_windows"])),
               ("PhIRM mean", plate["phirm_mean"].values),
               ("PhIRM min", plate["phirm_min"].values),
               ("PhIRM 5th percentile", plate["phirm_p05"].values),
               (f"fraction of windows < {thr:g}", plate["phirm_frac_below"].values),
               ("SSIM mean", plate["ssim_mean"].values),
               ("nuclei ref / rec", _pair(plate, "nuclei_count")),
               ("nuclei area ref / rec", _pair(plate, "nuclei_area")),
               ("artefact area ref / rec", _pair(plate, "artefact_area"))]
    if "masked_fraction_mean" in plate:
        summary.append(("masked fraction mean", plate["masked_fraction_mean"].values))
    inputs = [(k, ds.attrs[k]) for k in ("reference", "reference_channel", "reconstruction",
                                         "reconstruction_channel", "mask_label", "window",
                                         "mode", "threshold", "software_version")
              if k in ds.attrs]
    tr = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>"
                   for k, v in summary)
    ti = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in inputs)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PhIRM QC report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:left}}</style></head><body>
<h1>PhIRM QC report</h1>
<h2>Inputs</h2><table>{ti}</table>
<h2>Plate summary</h2><table>{tr}</table>
<h2>Plate heatmap</h2><img src="heatmap.png" alt="mean PhIRM per well">
<h2>PhIRM per window</h2><img src="histogram.png" alt="histogram of PhIRM per window">
<h2>Worst fields</h2>
<p>{note}</p>
<table><tr><th>well</th><th>field</th><th>mean PhIRM</th><th>min PhIRM</th>
<th>nuclei ref / rec</th><th>artefact area ref / rec</th></tr>
{''.join(worst_rows)}</table>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
