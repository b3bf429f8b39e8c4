"""Per-window PhIRM quality control of a reconstruction against its reference, as xarray.

Three layers, each usable on its own:

1. geometry -- :func:`window_starts` / :func:`window_grid` cut a field into windows of 256
   (the paper's unit) whose edge windows are aligned to the border, so every window is full
   size; a field smaller than the window in one dimension uses its full extent there;
2. the per-field kernel -- :func:`score_field` normalises both images to 8 bit with the
   *reference* field's min/max (:func:`phirm_scale.metric.to_uint8`) and returns, per window,
   the PhIRM components of reference and reconstruction, PSNR, SSIM and (when a mask is given)
   the masked fraction.  It is plain numpy: the Dask stage (:mod:`phirm_scale.stages.score`)
   maps it, one task per field;
3. the reduction -- :func:`to_dataset` stacks kernel results of many fields into an
   :class:`xarray.Dataset` (dims ``row``, ``column``, ``field``, ``window``), computes NCD, NAD,
   AAD and PhIRM per window (vectorised :func:`phirm_scale.metric.phirm_from_components`) and
   adds field, well and plate summaries (:func:`level_summary`).

:func:`write_qc` / :func:`open_qc` store the Dataset with ``to_zarr`` / ``xr.open_zarr``,
:func:`to_table` flattens it to one row per window and :func:`field_table` to one row per
field (the ``flag``, the per-field checks and the field summaries) for CSV / Parquet.

Absent fields (a well with fewer fields, an empty well of the plate layout) are NaN in the
Dataset, so per-window and per-field counts are float64 there. In the Zarr store
(:func:`zarr_encoding`) counts are int64 and ``flag`` int8, with ``_FillValue`` -1 marking
absent fields (CF: xarray decodes them back to NaN, ``mask_and_scale=False`` gives the stored
integers); strings are variable-length UTF-8 (zarr's stable ``string`` type). The tables hold
counts and ``flag`` as int64 (pandas ``Int64`` where a field lacks the value).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import xarray as xr

from phirm_scale import __version__, metric
from phirm_scale.errors import InputError, OutputError, PhirmError
from phirm_scale.flags import (  # the flag rule of the per-field ``flag`` variable
    DEFAULT_HIDDEN_THRESHOLD,
    DEFAULT_RESIDUAL_THRESHOLD,
    DEFAULT_SELFCHECK_THRESHOLD,
    FLAG_BITS,
    flag_codes,
)
from phirm_scale.grid import WINDOW as _GRID_WINDOW
from phirm_scale.grid import (  # re-exported: the window geometry lives in grid
    WindowGrid,
    parse_window,
    window_grid,
    window_starts,
)
from phirm_scale.plate import ATTRS_KEY
from phirm_scale.validation import check_image

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COMPONENTS",
    "FLAG_BITS",
    "add_field_results",
    "add_selfcheck_summaries",
    "flag_fields",
    "flagged_fields",
    "summarise_variable",
    "KERNEL_VARIABLES",
    "SUMMARY_STATISTICS",
    "WINDOW",
    "WINDOW_VARIABLES",
    "WindowGrid",
    "add_summaries",
    "COUNT_SUFFIXES",
    "field_table",
    "is_count",
    "open_qc",
    "zarr_encoding",
    "parse_window",
    "score_field",
    "summarise",
    "level_summary",
    "to_dataset",
    "to_table",
    "window_grid",
    "window_starts",
    "write_qc",
    "write_tables",
]

#: Default window edge (the paper's 256x256 patches; defined in phirm_scale.grid).
WINDOW = _GRID_WINDOW

#: Components counted by :func:`phirm_scale.metric.components`, in this order.
COMPONENTS = ("nuclei_count", "nuclei_area", "artefact_count", "artefact_area")

#: Per-window variables returned by :func:`score_field` (``masked_fraction`` only with a mask).
KERNEL_VARIABLES = (
    tuple(f"ref_{c}" for c in COMPONENTS)
    + tuple(f"rec_{c}" for c in COMPONENTS)
    + ("psnr", "ssim", "masked_fraction")
)

#: Per-window variables of the QC Dataset, in this order (``masked_fraction`` only with a mask).
WINDOW_VARIABLES = KERNEL_VARIABLES[:8] + ("ncd", "nad", "aad", "phirm") + KERNEL_VARIABLES[8:]

#: Statistics of PhIRM in every summary (see :func:`level_summary`).
SUMMARY_STATISTICS = ("phirm_mean", "phirm_min", "phirm_p05", "phirm_frac_below", "n_windows")

_DESCRIPTIONS = {
    "nuclei_count": "number of nuclei (clumps count as the metric mode says)",
    "nuclei_area": "total nuclei area, px",
    "artefact_count": "number of artefact components",
    "artefact_area": "total artefact area, px",
    "ncd": "nuclei count difference term",
    "nad": "nuclei area difference term",
    "aad": "artefact area difference term",
    "phirm": "PhIRM, 0..1, higher = phenotype better kept",
    "psnr": "peak signal-to-noise ratio, dB (inf for identical windows)",
    "ssim": "structural similarity (skimage, data_range 255)",
    "masked_fraction": "fraction of window pixels inside the mask",
}


# --------------------------------------------------------------------------------- geometry
# WindowGrid, window_starts, window_grid and parse_window live in phirm_scale.grid (numpy
# only, so the self-check maths uses them without xarray); re-exported here.


# ----------------------------------------------------------------------------------- kernel
def score_field(
    reference: npt.ArrayLike,
    reconstruction: npt.ArrayLike,
    *,
    window: int | str | None = WINDOW,
    params: metric.PhirmParams | None = None,
    mask: npt.ArrayLike | None = None,
    name: str = "field",
) -> dict[str, np.ndarray]:
    """Score every window of one field: PhIRM components, PSNR, SSIM (and masked fraction).

    Both images are normalised to 8 bit with the reference field's min/max
    (``metric.to_uint8(x, lo=ref.min(), hi=ref.max())``); the windows of
    :func:`window_grid` are then scored independently, each as one image for
    :func:`phirm_scale.metric.components`, :func:`~phirm_scale.metric.psnr` and
    :func:`~phirm_scale.metric.ssim`.

    Parameters
    ----------
    reference, reconstruction : (Y, X) array_like, any integer or float dtype
        The field before and after restoration (same shape).
    window : int, 'field' or None, default 256
        Window edge; ``'field'`` scores the whole field as one window.
    params : PhirmParams, optional
        Metric parameters (default: the paper's).
    mask : (Y, X) array_like, optional
        Nonzero = masked (inpainted) pixel; adds ``masked_fraction``.
    name : str
        Name of the field in error messages.

    Returns
    -------
    dict of str -> (W,) float64 ndarray
        Keys :data:`KERNEL_VARIABLES` (without ``masked_fraction`` when no mask is given),
        windows in :func:`window_grid` order.

    Raises
    ------
    InputError
        Shapes differ, an image is not 2-D, contains NaN/inf, or the reference field is
        constant (nothing to normalise against); the message names ``name``.
    """
    ref = check_image(reference, name, what="reference")
    rec = check_image(reconstruction, name, what="reconstruction")
    if rec.shape != ref.shape:
        raise InputError(f"{name}: reconstruction shape {rec.shape} != reference shape {ref.shape}")
    msk = None
    if mask is not None:
        msk = np.asarray(mask)
        if msk.shape != ref.shape:
            raise InputError(f"{name}: mask shape {msk.shape} != field shape {ref.shape}")
    grid = window_grid(ref.shape, window)
    lo, hi = float(ref.min()), float(ref.max())
    if hi <= lo:
        # metric.to_uint8 would map both images to 0 and hide anything the reconstruction
        # invented: a blank reference field is bad input, not a perfect score.
        raise InputError(
            f"{name}: reference field is constant ({lo:g}); PhIRM needs a "
            "reference with contrast to normalise against"
        )
    ref8 = metric.to_uint8(ref, lo=lo, hi=hi)
    rec8 = metric.to_uint8(rec, lo=lo, hi=hi)

    names = KERNEL_VARIABLES if msk is not None else KERNEL_VARIABLES[:-1]
    out = {k: np.empty(len(grid), dtype=np.float64) for k in names}
    area = float(grid.height * grid.width)
    for i, sl in enumerate(grid.slices()):
        a = np.ascontiguousarray(ref8[sl])
        b = np.ascontiguousarray(rec8[sl])
        ca = metric.components(a, params)
        # an untouched window (inpainting changes hole pixels only) has the same components
        cb = ca if np.array_equal(a, b) else metric.components(b, params)
        for c in COMPONENTS:
            out[f"ref_{c}"][i] = getattr(ca, c)
            out[f"rec_{c}"][i] = getattr(cb, c)
        if msk is not None:
            out["masked_fraction"][i] = np.count_nonzero(msk[sl]) / area
    out["psnr"], out["ssim"] = metric.window_psnr_ssim(
        ref8, rec8, grid.y0, grid.x0, grid.height, grid.width
    )
    return out


# -------------------------------------------------------------------------------- reduction
def _params_attrs(params: metric.PhirmParams) -> dict[str, Any]:
    out = {}
    for k, v in dataclasses.asdict(params).items():
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        out[f"param_{k}"] = v
    return out


def to_dataset(
    results: Mapping[tuple[Any, ...], Mapping[str, np.ndarray]],
    grid: WindowGrid,
    *,
    rows: Iterable[str] | None = None,
    columns: Iterable[str] | None = None,
    params: metric.PhirmParams | None = None,
    threshold: float = DEFAULT_SELFCHECK_THRESHOLD,
    attrs: Mapping[str, Any] | None = None,
    summaries: bool = True,
) -> xr.Dataset:
    """Stack per-field kernel results into the QC Dataset and score every window.

    Parameters
    ----------
    results : mapping of (row, column, field) -> dict
        :func:`score_field` output per field (a :class:`~phirm_scale.plate.FieldKey` is such a
        tuple).  All fields share ``grid``; either all or none carry ``masked_fraction``.
    grid : WindowGrid
        The window grid the results were computed on.
    rows, columns : iterable of str, optional
        Layout of the plate (default: those present in ``results``); wells of the layout
        without results are NaN.
    params : PhirmParams, optional
        Metric parameters used for NCD/NAD/AAD/PhIRM and recorded in the attributes.
    threshold : float, default 0.9
        PhIRM threshold of the ``*_phirm_frac_below`` summaries.
    attrs : mapping, optional
        Extra attributes (inputs, channels, ...), stored as given (JSON-able values).
    summaries : bool, default True
        Add field, well and plate summaries (:func:`add_summaries`).

    Returns
    -------
    xarray.Dataset
        Per-window variables :data:`WINDOW_VARIABLES` with dims ``(row, column, field,
        window)``, coordinates ``row``, ``column``, ``field``, ``window``, ``y0``, ``x0``.
    """
    if not results:
        raise InputError("to_dataset: no field results to reduce")
    params = params if params is not None else metric.PhirmParams()
    keys = sorted(results, key=lambda k: (str(k[0]), str(k[1]), int(k[2])))
    row_names = list(rows) if rows is not None else sorted({str(k[0]) for k in keys})
    col_names = list(columns) if columns is not None else sorted({str(k[1]) for k in keys})
    field_ids = sorted({int(k[2]) for k in keys})
    ri = {r: i for i, r in enumerate(row_names)}
    ci = {c: i for i, c in enumerate(col_names)}
    fi = {f: i for i, f in enumerate(field_ids)}
    nwin = len(grid)

    has_mask = {("masked_fraction" in results[k]) for k in keys}
    if len(has_mask) != 1:
        raise InputError("to_dataset: masked_fraction present for some fields only")
    kernel_vars = KERNEL_VARIABLES if has_mask.pop() else KERNEL_VARIABLES[:-1]

    stacked = {}
    for v in kernel_vars:
        rows_v = []
        for k in keys:
            arr = np.asarray(results[k][v], dtype=np.float64)
            if arr.shape != (nwin,):
                raise InputError(
                    f"to_dataset: {v} of field {tuple(k)} has shape {arr.shape}, expected ({nwin},)"
                )
            rows_v.append(arr)
        stacked[v] = np.stack(rows_v)  # (n_fields_present, W)
    for k in keys:
        if str(k[0]) not in ri or str(k[1]) not in ci:
            raise InputError(f"to_dataset: field {tuple(k)} is outside the plate layout")

    ncd, nad, aad, phirm = metric.phirm_from_components(
        stacked["ref_nuclei_count"],
        stacked["ref_nuclei_area"],
        stacked["ref_artefact_area"],
        stacked["rec_nuclei_count"],
        stacked["rec_nuclei_area"],
        stacked["rec_artefact_area"],
        params=params,
    )
    for v, arr in zip(("ncd", "nad", "aad", "phirm"), (ncd, nad, aad, phirm), strict=True):
        stacked[v] = np.broadcast_to(np.asarray(arr, dtype=np.float64), (len(keys), nwin))

    idx = (
        np.array([ri[str(k[0])] for k in keys], dtype=np.intp),
        np.array([ci[str(k[1])] for k in keys], dtype=np.intp),
        np.array([fi[int(k[2])] for k in keys], dtype=np.intp),
    )
    shape = (len(row_names), len(col_names), len(field_ids), nwin)
    dims = ("row", "column", "field", "window")
    data_vars = {}
    for v in WINDOW_VARIABLES:
        if v not in stacked:
            continue
        full = np.full(shape, np.nan, dtype=np.float64)
        full[idx] = stacked[v]
        base = v[4:] if v.startswith(("ref_", "rec_")) else v
        who = {"ref_": "reference: ", "rec_": "reconstruction: "}.get(v[:4], "")
        data_vars[v] = xr.Variable(dims, full, attrs={"description": who + _DESCRIPTIONS[base]})

    coords = {
        "row": ("row", np.asarray(row_names, dtype=str)),
        "column": ("column", np.asarray(col_names, dtype=str)),
        "field": ("field", np.asarray(field_ids, dtype=np.int64)),
        "window": ("window", np.arange(nwin, dtype=np.int64)),
        "y0": ("window", np.asarray(grid.y0, dtype=np.int64), {"description": "window top, px"}),
        "x0": ("window", np.asarray(grid.x0, dtype=np.int64), {"description": "window left, px"}),
    }
    ds_attrs = {
        "title": "PhIRM quality control",
        "software": "phirm-scale",
        "software_version": __version__,
        "window_height": int(grid.height),
        "window_width": int(grid.width),
        "normalisation": (
            "rint((x - lo) / (hi - lo) * 255) clipped to 0..255, lo/hi = min/max "
            "of the reference field, applied to both images"
        ),
        "threshold": float(threshold),
        "mode": getattr(params, "mode", "paper"),
        **_params_attrs(params),
    }
    ds_attrs.update(dict(attrs or {}))
    ds = xr.Dataset(data_vars, coords=coords, attrs=ds_attrs)
    return add_summaries(ds, threshold=threshold) if summaries else ds


_LEVEL_DIMS = {
    "field": ("window",),
    "well": ("field", "window"),
    "plate": ("row", "column", "field", "window"),
}


def level_summary(
    ds: xr.Dataset, level: str = "plate", *, threshold: float | None = None
) -> xr.Dataset:
    """Summaries of the per-window variables at ``level`` 'field', 'well' or 'plate'.

    Parameters
    ----------
    ds : xarray.Dataset
        A QC Dataset (per-window variables with dims ``row, column, field, window``).
    level : {'field', 'well', 'plate'}
        Reduce over ``window`` (field), ``field, window`` (well) or everything (plate).
    threshold : float, optional
        PhIRM threshold for ``phirm_frac_below`` (default: ``ds.attrs['threshold']`` or 0.9).

    Returns
    -------
    xarray.Dataset
        ``phirm_mean``, ``phirm_min``, ``phirm_p05`` (5th percentile, linear interpolation),
        ``phirm_frac_below`` (fraction of windows with PhIRM < threshold), ``n_windows``,
        ``ssim_mean``, ``masked_fraction_mean`` (with a mask) and the summed components
        ``ref_*`` / ``rec_*``.  Units without any window are NaN (``n_windows`` 0).
    """
    if level not in _LEVEL_DIMS:
        raise InputError(f"level_summary: level must be 'field', 'well' or 'plate', got {level!r}")
    if threshold is None:
        threshold = float(ds.attrs.get("threshold", 0.9))
    red = _LEVEL_DIMS[level]
    keep = [d for d in ("row", "column", "field", "window") if d not in red]

    def _flat(name: str) -> np.ndarray:
        arr = ds[name].transpose(*keep, *red).values
        return arr.reshape(arr.shape[: len(keep)] + (-1,))

    phirm = _flat("phirm")
    valid = ~np.isnan(phirm)
    n = valid.sum(axis=-1)
    out_shape = phirm.shape[:-1]
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = {
            "phirm_mean": np.nanmean(phirm, axis=-1),
            "phirm_min": np.nanmin(phirm, axis=-1),
            "phirm_p05": np.nanpercentile(phirm, 5, axis=-1),
            "phirm_frac_below": np.where(
                n > 0, np.sum(phirm < threshold, axis=-1) / np.maximum(n, 1), np.nan
            ),
            "n_windows": n.astype(np.int64),
            "ssim_mean": np.nanmean(_flat("ssim"), axis=-1),
        }
        if "masked_fraction" in ds:
            stats["masked_fraction_mean"] = np.nanmean(_flat("masked_fraction"), axis=-1)
    for side in ("ref", "rec"):
        for c in COMPONENTS:
            v = f"{side}_{c}"
            stats[v] = np.where(n > 0, np.nansum(_flat(v), axis=-1), np.nan)
    coords = {d: ds[d] for d in keep}
    out = xr.Dataset(
        {k: (tuple(keep), np.asarray(v).reshape(out_shape)) for k, v in stats.items()},
        coords=coords,
        attrs={"level": level, "threshold": float(threshold)},
    )
    return out


def add_summaries(ds: xr.Dataset, *, threshold: float | None = None) -> xr.Dataset:
    """Return ``ds`` with field, well and plate summaries as ``field_*``, ``well_*``, ``plate_*``.

    See :func:`level_summary` for the variables.
    """
    ds = ds.copy()
    for level in ("field", "well", "plate"):
        s = level_summary(ds, level, threshold=threshold)
        for name, var in s.data_vars.items():
            ds[f"{level}_{name}"] = var.variable
    return ds


# ------------------------------------------------------------------------------- export / io
#: Variables whose names end with these hold non-negative integer counts (pixels or objects).
COUNT_SUFFIXES = (
    "nuclei_count",
    "artefact_count",
    "nuclei_area",
    "artefact_area",
    "n_windows",
    "restored_area",
    "n_flagged",
    "selfcheck_draws",
    "nuclei_in_holes",
)

#: Names with a count suffix that are means (over self-check draws), not counts.
_NOT_COUNTS = ("selfcheck_n_windows",)

#: Stored dtype of the per-field ``flag`` (bits :data:`FLAG_BITS`; -1 = absent field).
FLAG_DTYPE = "int8"

#: Stored value of an absent field in integer variables (``_FillValue``).
INT_FILL = -1


def is_count(name: str) -> bool:
    """Whether QC variable ``name`` is an integer count (:data:`COUNT_SUFFIXES`)."""
    return name.endswith(COUNT_SUFFIXES) and not name.endswith(_NOT_COUNTS)


def _is_integer(name: str) -> bool:
    return name == "flag" or is_count(name)


def _integral(values: np.ndarray) -> bool:
    """All finite values are whole numbers >= 0 (else the variable stays float)."""
    if values.dtype.kind in "iub":
        return bool(values.size == 0 or values.min() >= 0)
    if values.dtype.kind != "f":
        return False
    fin = values[np.isfinite(values)]
    return bool(np.all(fin == np.rint(fin)) and np.all(fin >= 0))


def zarr_encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Zarr encoding of a QC Dataset: counts as int64, ``flag`` as int8, ``_FillValue`` -1.

    Variables named as counts (:func:`is_count`) and ``flag`` are stored as integers when
    every value is a whole number >= 0; NaN (an absent field) is stored as -1, which CF
    readers (xarray) decode back to NaN.
    """
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        if not _is_integer(str(name)):
            continue
        values = np.asarray(var.values)
        if not _integral(values):
            continue
        dtype = FLAG_DTYPE if name == "flag" else "int64"
        if values.dtype.kind == "f":
            enc[str(name)] = {"dtype": dtype, "_FillValue": INT_FILL}
        else:
            enc[str(name)] = {"dtype": dtype}
    return enc


def _stable_strings(ds: xr.Dataset) -> xr.Dataset:
    """Fixed-width unicode variables as Python ``str`` objects.

    Zarr stores them as its variable-length UTF-8 ``string`` type, which is in the Zarr v3
    data type registry; numpy ``<U`` would be zarr-python's ``FixedLengthUTF32``, which has
    no Zarr v3 specification (``UnstableSpecificationWarning``, may be unreadable elsewhere).
    """
    ds = ds.copy()
    for name in list(ds.variables):
        var = ds.variables[name]
        if var.dtype.kind == "U":
            new = xr.Variable(var.dims, var.values.astype(object), attrs=var.attrs)
            if name in ds.coords:
                ds = ds.assign_coords({name: new})
            else:
                ds[name] = new
    return ds


def _fixed_strings(ds: xr.Dataset) -> xr.Dataset:
    """Undo :func:`_stable_strings` after reading: string variables as numpy ``str``."""
    for name in list(ds.variables):
        var = ds.variables[name]
        if var.dtype.kind in "OT":
            values = np.asarray(var.values.tolist(), dtype=str).reshape(var.shape)
            new = xr.Variable(var.dims, values, attrs=var.attrs)
            if name in ds.coords:
                ds = ds.assign_coords({name: new})
            else:
                ds[name] = new
    return ds


def _int_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with counts and ``flag`` as int64 (``Int64`` where values are missing)."""
    for c in df.columns:
        if not _is_integer(str(c)) or df[c].dtype.kind not in "fiu":
            continue
        values = df[c].to_numpy(dtype=np.float64)
        if not _integral(values):
            continue
        df[c] = df[c].astype(np.int64 if not np.isnan(values).any() else "Int64")
    return df


def _window_names(ds: xr.Dataset) -> list[str]:
    """Per-window variables: :data:`WINDOW_VARIABLES` first, then the others (self-check)."""
    per_window = [str(v) for v in ds.data_vars if "window" in ds[v].dims]
    first = [v for v in WINDOW_VARIABLES if v in per_window]
    return first + [v for v in per_window if v not in first]


def _field_names(ds: xr.Dataset) -> list[str]:
    """Per-field variables: ``flag``, the ``field_*`` summaries, then the per-field checks."""
    per_field = [
        str(v) for v in ds.data_vars if set(ds[v].dims) - {"plate"} == {"row", "column", "field"}
    ]
    first = [v for v in per_field if v == "flag"]
    summaries = [v for v in per_field if v.startswith("field_")]
    return first + summaries + [v for v in per_field if v not in first + summaries]


def to_table(ds: xr.Dataset) -> pd.DataFrame:
    """Tabulate the QC Dataset with one row per scored window.

    Columns: ``row, column, field, window, y0, x0``, the per-window variables
    (:data:`WINDOW_VARIABLES`) and the other per-window variables of the Dataset (self-check,
    ``estimated_phirm``, residuals); counts as int64. Absent fields are dropped.

    Returns
    -------
    pandas.DataFrame
    """
    names = _window_names(ds)
    df = ds[names].to_dataframe().reset_index()
    df = df[df["phirm"].notna()].reset_index(drop=True)
    lead = [c for c in ("plate", "row", "column", "field", "window", "y0", "x0") if c in df]
    return _int_columns(df[lead + names].copy())


def field_table(ds: xr.Dataset) -> pd.DataFrame:
    """Tabulate the QC Dataset with one row per scored field.

    Columns: ``row, column, field`` (and ``plate`` for a screen), ``flag`` (with the
    self-check), the ``field_*`` summaries (PhIRM, SSIM, summed components, and the
    self-check / estimated PhIRM summaries where present) and the per-field checks; counts and
    ``flag`` as int64 (``Int64`` where a field has no value). Absent fields are dropped.

    Returns
    -------
    pandas.DataFrame
    """
    names = _field_names(ds)
    df = ds[names].to_dataframe().reset_index()
    df = df[df["field_n_windows"].fillna(0) > 0].reset_index(drop=True)
    lead = [c for c in ("plate", "row", "column", "field") if c in df]
    return _int_columns(df[lead + names].copy())


def write_qc(
    ds: xr.Dataset,
    path: str | Path,
    *,
    overwrite: bool = False,
    csv: str | Path | None = None,
    parquet: str | Path | None = None,
    field_csv: str | Path | None = None,
    field_parquet: str | Path | None = None,
) -> Path:
    """Write the QC Dataset with ``to_zarr`` (and optionally the per-window / per-field tables).

    Parameters
    ----------
    ds : xarray.Dataset
    path : path-like
        Output store (``QC.zarr``); must not exist unless ``overwrite``.
    overwrite : bool, default False
    csv, parquet : path-like, optional
        Also write :func:`to_table` (one row per window) as CSV / Parquet.
    field_csv, field_parquet : path-like, optional
        Also write :func:`field_table` (one row per field) as CSV / Parquet.

    The store holds counts as int64, ``flag`` as int8 (:func:`zarr_encoding`) and strings in
    Zarr v3's stable variable-length ``string`` type.

    Returns
    -------
    Path
    """
    from phirm_scale.outputs import atomic_store, guard_output, mark_store

    path = Path(path)
    inputs = [ds.attrs.get("reference"), ds.attrs.get("reconstruction")]
    extra = [p for p in (csv, parquet, field_csv, field_parquet) if p is not None]
    for p in extra:
        if Path(p).exists() and not overwrite:
            raise OutputError(f"{p}: output exists (pass --overwrite to replace it)")
        if Path(p).is_dir():
            raise OutputError(f"{p}: is a folder; expected a table file path")
    # written beside the target, then renamed: a failed write never leaves a half store
    with (
        guard_output(
            path,
            command="score",
            inputs=[i for i in inputs if i],
            overwrite=overwrite,
            remove=False,
        ),
        atomic_store(path) as tmp,
    ):
        with warnings.catch_warnings():
            # consolidated metadata is a zarr-python extension ("must_understand": false:
            # other readers may ignore it)
            warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
            _stable_strings(ds).to_zarr(tmp, mode="w-", encoding=zarr_encoding(ds))
        mark_store(tmp, "score")
    write_tables(ds, csv=csv, parquet=parquet, field_csv=field_csv, field_parquet=field_parquet)
    return path


def write_tables(
    ds: xr.Dataset,
    *,
    csv: str | Path | None = None,
    parquet: str | Path | None = None,
    field_csv: str | Path | None = None,
    field_parquet: str | Path | None = None,
    quoting: int = 0,
    tables: tuple[Callable[[xr.Dataset], pd.DataFrame], Callable[[xr.Dataset], pd.DataFrame]]
    | None = None,
) -> None:
    """Write the per-window (:func:`to_table`) and per-field (:func:`field_table`) tables.

    Each file is written beside its target and renamed. ``quoting`` is the :mod:`csv`
    quoting of the CSV files (0 = minimal); ``tables`` replaces the two table functions.
    """
    from phirm_scale.outputs import atomic_store

    window_of, field_of = tables if tables is not None else (to_table, field_table)
    for table_of, csv_path, parquet_path in (
        (window_of, csv, parquet),
        (field_of, field_csv, field_parquet),
    ):
        if csv_path is None and parquet_path is None:
            continue
        table = table_of(ds)
        if csv_path is not None:
            with atomic_store(csv_path) as tmp:
                table.to_csv(tmp, index=False, quoting=quoting)
        if parquet_path is not None:
            with atomic_store(parquet_path) as tmp:
                table.to_parquet(tmp, index=False)


def open_qc(path: str | Path) -> xr.Dataset:
    """Open a QC store written by :func:`write_qc` (loaded into memory)."""
    path = Path(path)
    if not path.exists():
        raise PhirmError(f"{path}: QC store not found")
    try:
        ds: xr.Dataset = _fixed_strings(xr.open_zarr(path).load())
    except Exception as exc:
        raise PhirmError(f"{path}: not a QC store readable by xarray ({exc})") from exc
    if "phirm" not in ds:
        raise PhirmError(f"{path}: not a phirm-scale QC store (no 'phirm' variable)")
    ds.attrs.pop(ATTRS_KEY, None)  # the store's output marker, not part of the data
    return ds


# ------------------------------------------------------------- real-plate QC (no reference)


def _key_index(
    ds: xr.Dataset, keys: Iterable[tuple[Any, ...]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = {str(r): i for i, r in enumerate(ds["row"].values.tolist())}
    cols = {str(c): i for i, c in enumerate(ds["column"].values.tolist())}
    fields = {int(f): i for i, f in enumerate(ds["field"].values.tolist())}
    try:
        return (
            np.array([rows[str(k[0])] for k in keys], np.intp),
            np.array([cols[str(k[1])] for k in keys], np.intp),
            np.array([fields[int(k[2])] for k in keys], np.intp),
        )
    except KeyError as exc:
        raise InputError(f"field results for {exc} outside the QC dataset's layout") from None


def add_field_results(
    ds: xr.Dataset,
    results: Mapping[tuple[Any, ...], Mapping[str, Any]],
    variables: Mapping[str, tuple[str, str]],
    *,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Add per-field results (self-check, field checks) to a QC Dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        A QC Dataset (:func:`to_dataset`).
    results : mapping of (row, column, field) -> dict
        Per field: (W,) arrays for per-window variables, scalars for per-field ones.
    variables : mapping of name -> (long_name, units)
        The variables to take from ``results``; a (W,) array becomes a ``(row, column,
        field, window)`` variable, a scalar a ``(row, column, field)`` one. Fields without
        results are NaN.
    attrs : mapping, optional
        Dataset attributes to add.

    Returns
    -------
    xarray.Dataset (a copy)
    """
    ds = ds.copy()
    keys = sorted(results, key=lambda k: (str(k[0]), str(k[1]), int(k[2])))
    if not keys:
        return ds
    idx = _key_index(ds, keys)
    nr, nc, nf = ds.sizes["row"], ds.sizes["column"], ds.sizes["field"]
    nwin = ds.sizes["window"]
    for name, (long_name, units) in variables.items():
        first = np.asarray(results[keys[0]][name], dtype=np.float64)
        dims: tuple[str, ...]
        if first.ndim == 1:
            full = np.full((nr, nc, nf, nwin), np.nan)
            dims = ("row", "column", "field", "window")
        else:
            full = np.full((nr, nc, nf), np.nan)
            dims = ("row", "column", "field")
        vals = []
        for k in keys:
            v = np.asarray(results[k][name], dtype=np.float64)
            if v.shape != first.shape or (v.ndim == 1 and v.shape != (nwin,)):
                raise InputError(
                    f"{name} of field {tuple(k)} has shape {v.shape}, expected "
                    f"{first.shape if first.ndim == 0 else (nwin,)}"
                )
            vals.append(v)
        full[idx] = np.stack(vals)
        ds[name] = xr.Variable(
            dims, full, attrs={"long_name": long_name, "units": units, "description": long_name}
        )
    ds.attrs.update(dict(attrs or {}))
    return ds


def summarise_variable(ds: xr.Dataset, name: str, level: str) -> dict[str, np.ndarray]:
    """Summarise per-window variable ``name`` at ``level`` ('field', 'well', 'plate').

    Mean, min and 5th percentile, NaN-aware (as :func:`level_summary` does for ``phirm``).
    """
    if level not in _LEVEL_DIMS:
        raise InputError(
            f"summarise_variable: level must be 'field', 'well' or 'plate', got {level!r}"
        )
    red = _LEVEL_DIMS[level]
    keep = [d for d in ("row", "column", "field", "window") if d not in red]
    arr = ds[name].transpose(*keep, *red).values
    arr = arr.reshape(arr.shape[: len(keep)] + (-1,))
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "mean": np.nanmean(arr, axis=-1),
            "min": np.nanmin(arr, axis=-1),
            "p05": np.nanpercentile(arr, 5, axis=-1),
        }


def add_selfcheck_summaries(ds: xr.Dataset) -> xr.Dataset:
    """Add the field, well and plate summaries of the per-window ``selfcheck_phirm``.

    Adds ``{field,well,plate}_selfcheck_phirm_{mean,min,p05}`` (and the same of
    ``estimated_phirm`` where the Dataset has it), and well/plate counts of
    flagged fields when ``flag`` exists.
    """
    ds = ds.copy()
    what = {"selfcheck_phirm": "the self-check PhIRM", "estimated_phirm": "the estimated PhIRM"}
    for var in (v for v in what if v in ds):
        for level in ("field", "well", "plate"):
            keep = [d for d in ("row", "column", "field") if d not in _LEVEL_DIMS[level]]
            for stat, arr in summarise_variable(ds, var, level).items():
                ds[f"{level}_{var}_{stat}"] = xr.Variable(
                    tuple(keep),
                    arr,
                    attrs={
                        "long_name": f"{stat} over windows of {what[var]} per {level}",
                        "units": "1",
                    },
                )
    if "flag" in ds:
        flagged = (ds["flag"] > 0).where(ds["flag"].notnull())
        for level, dims in (("well", ("field",)), ("plate", ("row", "column", "field"))):
            ds[f"{level}_n_flagged"] = flagged.sum(dims, skipna=True).astype(np.int64)
            ds[f"{level}_n_flagged"].attrs = {
                "long_name": f"flagged fields per {level}",
                "units": "1",
            }
    return ds


def flag_fields(
    ds: xr.Dataset,
    *,
    selfcheck_threshold: float = DEFAULT_SELFCHECK_THRESHOLD,
    residual_threshold: float = DEFAULT_RESIDUAL_THRESHOLD,
    hidden_threshold: float = DEFAULT_HIDDEN_THRESHOLD,
) -> xr.Dataset:
    """Per-field ``flag`` (bit mask, :data:`FLAG_BITS`) from the self-check and residuals.

    The rule of :mod:`phirm_scale.flags` (:func:`~phirm_scale.flags.flag_codes`), per field:
    a field with holes (``masked_fraction_field > 0``) whose mean self-check PhIRM is below
    ``selfcheck_threshold`` gets bit 1; a field whose restored version keeps more than
    ``residual_threshold`` px of PhIRM artefact gets bit 2; a field with holes on which no
    pseudo-hole could be placed gets bit 4 (its self-check is NaN, never a silent 1.0); a
    field whose holes are expected to hide at least ``hidden_threshold`` nuclear pixels
    (``expected_hidden_nuclear_area``, :func:`phirm_scale.fieldqc.expected_hidden_nuclear_area`)
    gets bit 8 (a field with holes only). Measures the Dataset lacks set none of their bits.
    Absent fields are NaN; 0 = trusted.

    Raises
    ------
    InputError
        A ``hidden_threshold`` that is not a finite number > 0.
    """
    from phirm_scale.flags import check_hidden_threshold

    hidden_threshold = check_hidden_threshold(hidden_threshold)
    ds = ds.copy()
    dims = ("row", "column", "field")
    present = ds["phirm"].notnull().any("window").transpose(*dims)
    has_holes = (
        (ds["masked_fraction_field"] > 0).transpose(*dims)
        if "masked_fraction_field" in ds
        else present
    )

    def per_field(name: str, reduce: bool = False) -> np.ndarray | None:
        if name not in ds:
            return None
        v = ds[name].mean("window", skipna=True) if reduce else ds[name]
        return v.transpose(*dims).values

    code = flag_codes(
        has_holes.values,
        selfcheck_phirm=per_field("selfcheck_phirm", reduce=True),
        residual_area=per_field("residual_artefact_area"),
        hidden_area=per_field("expected_hidden_nuclear_area"),
        selfcheck_threshold=selfcheck_threshold,
        residual_threshold=residual_threshold,
        hidden_threshold=hidden_threshold,
    )
    flag = np.where(present.values, code.astype(np.float64), np.nan)
    ds["flag"] = xr.Variable(
        dims,
        flag,
        attrs={
            "long_name": "quality flag of the restored field (0 = trusted)",
            "units": "1",
            "flag_masks": list(FLAG_BITS.values()),
            "flag_meanings": " ".join(FLAG_BITS),
            "selfcheck_threshold": float(selfcheck_threshold),
            "residual_threshold": float(residual_threshold),
            "hidden_threshold": float(hidden_threshold),
        },
    )
    return add_selfcheck_summaries(ds) if "selfcheck_phirm" in ds else ds


def flagged_fields(ds: xr.Dataset) -> list[tuple[str, str, int, int]]:
    """``(row, column, field, flag)`` of every flagged field, in plate order."""
    if "flag" not in ds:
        return []
    out = []
    f = ds["flag"].transpose("row", "column", "field").values
    for i, j, k in zip(*np.nonzero(np.nan_to_num(f) > 0), strict=True):
        out.append(
            (
                str(ds["row"].values[i]),
                str(ds["column"].values[j]),
                int(ds["field"].values[k]),
                int(f[i, j, k]),
            )
        )
    return out


#: The former name of :func:`level_summary` (kept importable; issue 21: three functions were
#: named ``summarise``).
summarise = level_summary
