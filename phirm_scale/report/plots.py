"""Plate pictures: the heatmap of a plate's wells and the histogram of per-window PhIRM.

:func:`plate_heatmap` (single-plate QC) and :func:`_screen_heatmap` (one plate of a screen,
cropped to its occupied wells, coloured by :func:`heatmap_variable`) draw through
:func:`_heatmap_figure`: one square cell per well, a colour bar as tall as the plate with
the threshold marked, wells holding a flagged field (:func:`flagged_wells`) outlined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from phirm_scale.flags import DEFAULT_SELFCHECK_THRESHOLD
from phirm_scale.report.pictures import _fig, _scored_against

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = [
    "OUTLINE_COLOUR",
    "OUTLINE_GID",
    "flagged_wells",
    "heatmap_variable",
    "phirm_histogram",
    "plate_heatmap",
]

#: Outline colour of flagged wells in the heatmaps (the threshold on the colour bar: crimson).
OUTLINE_COLOUR = "red"

#: Artist id of a flagged well's outline (tests and readers of the figure find them by it).
OUTLINE_GID = "flagged-well"


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
