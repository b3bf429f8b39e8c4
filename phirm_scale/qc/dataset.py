"""The reduction: kernel results of many fields as one QC :class:`xarray.Dataset`.

:func:`to_dataset` stacks :func:`~phirm_scale.qc.kernel.score_field` results into dims
``row``, ``column``, ``field``, ``window``, computes NCD, NAD, AAD and PhIRM per window
(vectorised :func:`phirm_scale.metric.phirm_from_components`) and adds the summaries
(:func:`~phirm_scale.qc.summaries.add_summaries`); :func:`add_field_results` adds per-field
results of the reference-free QC (self-check, field checks).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from phirm_scale import __version__, metric
from phirm_scale.errors import InputError
from phirm_scale.flags import DEFAULT_SELFCHECK_THRESHOLD
from phirm_scale.grid import WindowGrid
from phirm_scale.qc.kernel import _DESCRIPTIONS, KERNEL_VARIABLES, WINDOW_VARIABLES
from phirm_scale.qc.summaries import add_summaries


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


def params_from_attrs(attrs: Mapping[str, Any]) -> metric.PhirmParams:
    """Return the PhIRM parameters a QC Dataset records.

    Its ``param_*`` attributes (written by :func:`to_dataset`); the defaults for those it
    lacks.
    """
    return metric.PhirmParams(
        **{k[len("param_") :]: v for k, v in attrs.items() if k.startswith("param_")}
    )


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
