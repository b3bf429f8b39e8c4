"""One QC dataset for a whole screen: the per-plate QC Datasets stacked along ``plate``.

:func:`screen_dataset` takes the QC Dataset of every plate (:func:`phirm_scale.qc.to_dataset`,
dims ``row, column, field, window``) and returns one Dataset with dims
``plate, row, column, field, window``:

* a ``plate`` coordinate (the plate names) and, along ``plate``, the provenance of every plate
  as coordinates (``reference``, ``reconstruction``, their channels, ``mask_label``,
  ``n_fields``, ...), so concatenating two screens keeps every plate's provenance;
* every data variable with CF ``long_name`` and ``units`` (``"1"`` for dimensionless
  quantities and counts, ``"px"`` for areas, ``"dB"`` for PSNR), ``Conventions = "CF-1.10"``;
* integer counts stored as integers in Zarr (``_FillValue`` -1 marks absent fields; xarray
  decodes them to NaN on reading) and as int64 in the CSV / Parquet tables;
* ``row`` / ``column`` labels as the same strings (``"A"``, ``"02"``) in Zarr, CSV (quoted) and
  Parquet.

The store opens with plain xarray (``xr.open_zarr``), phirm-scale not needed.
"""

from __future__ import annotations

import csv as _csv
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from phirm_scale.errors import PhirmError
from phirm_scale.plate import ATTRS_KEY

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "cf_attributes",
    "field_table",
    "open_screen_qc",
    "screen_dataset",
    "window_table",
    "write_screen_qc",
    "PROVENANCE_KEYS",
    "COUNT_SUFFIXES",
]

#: Per-plate attributes of the plate QC kept as coordinates along ``plate``.
PROVENANCE_KEYS = (
    "reference",
    "reference_channel",
    "reconstruction",
    "reconstruction_channel",
    "mask_label",
    "n_fields",
)

#: Variables ending with these are integer counts.
COUNT_SUFFIXES = (
    "nuclei_count",
    "artefact_count",
    "nuclei_area",
    "artefact_area",
    "n_windows",
    "restored_area",
)

_LEVEL_PREFIX = {"field_": "per field: ", "well_": "per well: ", "plate_": "per plate: "}
_SIDE_PREFIX = {"ref_": "reference ", "rec_": "reconstruction "}
_BASE = {
    "nuclei_count": ("number of nuclei", "1"),
    "nuclei_area": ("total nuclei area", "px"),
    "artefact_count": ("number of artefact components", "1"),
    "artefact_area": ("total artefact area", "px"),
    "ncd": ("PhIRM nuclei count difference term (NCD)", "1"),
    "nad": ("PhIRM nuclei area difference term (NAD)", "1"),
    "aad": ("PhIRM artefact area difference term (AAD)", "1"),
    "phirm": ("PhIRM (1 = phenotype kept, 0 = lost)", "1"),
    "psnr": ("peak signal-to-noise ratio", "dB"),
    "ssim": ("structural similarity (SSIM)", "1"),
    "masked_fraction": ("fraction of pixels inside the artefact mask", "1"),
    "phirm_mean": ("mean PhIRM over windows", "1"),
    "phirm_min": ("minimum PhIRM over windows", "1"),
    "phirm_p05": ("5th percentile of PhIRM over windows", "1"),
    "phirm_frac_below": ("fraction of windows with PhIRM below the threshold", "1"),
    "n_windows": ("number of scored windows", "1"),
    "ssim_mean": ("mean SSIM over windows", "1"),
    "masked_fraction_mean": ("mean fraction of pixels inside the artefact mask", "1"),
}


def cf_attributes(name: str, description: str | None = None) -> dict[str, str]:
    """CF ``long_name`` and ``units`` of a QC variable (``"1"`` when dimensionless).

    Unknown variables (added by later stages) get their ``description`` as long name and
    units ``"1"``, or ``"px"`` / ``"dB"`` when their name says area / psnr.
    """
    level = next((p for p in _LEVEL_PREFIX if name.startswith(p)), "")
    rest = name[len(level) :]
    side = next((p for p in _SIDE_PREFIX if rest.startswith(p)), "")
    base = rest[len(side) :]
    if base in _BASE:
        long_name, units = _BASE[base]
        long_name = _SIDE_PREFIX.get(side, "") + long_name
        if level and base in {"nuclei_count", "nuclei_area", "artefact_count", "artefact_area"}:
            long_name = "summed " + long_name
        return {"long_name": _LEVEL_PREFIX.get(level, "") + long_name, "units": units}
    units = "px" if "area" in base else "dB" if "psnr" in base else "1"
    return {"long_name": description or name.replace("_", " "), "units": units}


def _is_count(name: str) -> bool:
    return name.endswith(COUNT_SUFFIXES)


def _plain(value: object) -> str:
    """Return a provenance value as a string coordinate (None -> '')."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def screen_dataset(plates: Mapping[str, xr.Dataset], *, attrs: Mapping | None = None) -> xr.Dataset:
    """Stack per-plate QC Datasets along a new ``plate`` dimension (see the module doc).

    Parameters
    ----------
    plates : mapping of plate name -> QC Dataset
        Every Dataset from :func:`phirm_scale.qc.to_dataset` with the same window grid
        (same field shape and window); rows, columns and fields may differ (outer join,
        absent fields NaN).
    attrs : mapping, optional
        Screen attributes (JSON-able), added to the shared ones.

    Returns
    -------
    xarray.Dataset
    """
    if not plates:
        raise PhirmError("screen QC: no plate results")
    names = list(plates)
    if len(set(names)) != len(names):
        raise PhirmError(f"screen QC: duplicate plate names {names}")
    first = plates[names[0]]
    for n in names[1:]:
        d = plates[n]
        if (
            d.sizes["window"] != first.sizes["window"]
            or not np.array_equal(d["y0"].values, first["y0"].values)
            or not np.array_equal(d["x0"].values, first["x0"].values)
        ):
            raise PhirmError(
                f"screen QC: plate {n!r} has another window grid than plate "
                f"{names[0]!r} (different field shape or window)"
            )
    parts = []
    for n in names:
        d = plates[n]
        prov = {k: _plain(d.attrs.get(k)) for k in PROVENANCE_KEYS}
        d = d.copy()
        d.attrs = {}
        d = d.expand_dims(plate=[n])
        for k, v in prov.items():
            d = d.assign_coords({k: ("plate", [v])})
        parts.append(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ds = xr.concat(
            parts,
            dim="plate",
            join="outer",
            data_vars="all",
            coords="different",
            compat="equals",
            fill_value=np.nan,
        )
    shared = {k: v for k, v in first.attrs.items() if k not in PROVENANCE_KEYS}
    shared.update(dict(attrs or {}))
    shared["Conventions"] = "CF-1.10"
    shared["title"] = "PhIRM quality control of a screen"
    shared["plates"] = [str(n) for n in names]
    ds.attrs = shared
    # one variable order whatever the inputs' (a store read back lists them alphabetically)
    from phirm_scale.qc import WINDOW_VARIABLES

    first_vars = [v for v in WINDOW_VARIABLES if v in ds.data_vars]
    ds = ds[first_vars + sorted(str(v) for v in ds.data_vars if v not in first_vars)]
    return _decorate(ds)


def _decorate(ds: xr.Dataset) -> xr.Dataset:
    """CF attributes on every variable and coordinate, labels as strings."""
    ds["plate"] = ds["plate"].astype(str)
    ds["row"] = ds["row"].astype(str)
    ds["column"] = ds["column"].astype(str)
    for name, var in ds.data_vars.items():
        desc = var.attrs.pop("description", None)
        var.attrs.update(cf_attributes(str(name), desc))
    coord_attrs = {
        "plate": {"long_name": "plate name"},
        "row": {"long_name": "plate row (A, B, ...)"},
        "column": {"long_name": "plate column, zero-padded (01, 02, ...)"},
        "field": {"long_name": "field of view index within the well", "units": "1"},
        "window": {"long_name": "scoring window index within the field", "units": "1"},
        "y0": {"long_name": "window top edge", "units": "px"},
        "x0": {"long_name": "window left edge", "units": "px"},
        "reference": {"long_name": "reference plate store"},
        "reference_channel": {"long_name": "reference channel"},
        "reconstruction": {"long_name": "reconstruction plate store"},
        "reconstruction_channel": {"long_name": "reconstruction channel"},
        "mask_label": {"long_name": "label holding the artefact mask"},
        "n_fields": {"long_name": "fields scored in the plate"},
    }
    for c, a in coord_attrs.items():
        if c in ds.coords:
            ds[c].attrs.pop("description", None)
            ds[c].attrs.update(a)
    return ds


def _encoding(ds: xr.Dataset) -> dict:
    enc = {}
    for name in ds.data_vars:
        if _is_count(str(name)):
            enc[name] = {"dtype": "int64", "_FillValue": -1}
    return enc


def _labels(df: pd.DataFrame) -> pd.DataFrame:
    """row/column/plate as strings; a ``well`` column (e.g. 'A02')."""
    for c in ("plate", "row", "column"):
        if c in df:
            df[c] = df[c].astype(str)
    if "row" in df and "column" in df:
        pos = list(df.columns).index("column") + 1
        df.insert(pos, "well", df["row"] + df["column"])
    return df


def window_table(ds: xr.Dataset) -> pd.DataFrame:
    """Return one row per scored window.

    Columns ``plate, row, column, well, field, window, y0, x0`` and the per-window
    variables (counts as int64); absent fields dropped.
    """
    names = [v for v in ds.data_vars if "window" in ds[v].dims]
    df = ds[names].to_dataframe().reset_index()
    df = df[df["phirm"].notna()].reset_index(drop=True)
    for v in names:
        if _is_count(str(v)):
            df[v] = df[v].astype(np.int64)
    lead = [c for c in ("plate", "row", "column", "field", "window", "y0", "x0") if c in df]
    df = df[lead + [str(v) for v in names]]
    return _labels(df)


def field_table(ds: xr.Dataset) -> pd.DataFrame:
    """One row per scored field: the ``field_*`` summaries (counts as int64)."""
    names = [v for v in ds.data_vars if str(v).startswith("field_")]
    df = ds[names].to_dataframe().reset_index()
    df = df[df["field_n_windows"].fillna(0) > 0].reset_index(drop=True)
    for v in names:
        if _is_count(str(v)):
            df[v] = df[v].astype(np.int64)
    keep = [c for c in ("plate", "row", "column", "field") if c in df]
    return _labels(df[keep + [str(v) for v in names]])


def write_screen_qc(
    ds: xr.Dataset,
    path: str | Path,
    *,
    csv: str | Path | None = None,
    parquet: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the screen QC store (and the per-window table as CSV / Parquet).

    CSV labels are quoted. The store is written beside its target and renamed, never half
    written.
    """
    from phirm_scale.outputs import atomic_store, guard_output, mark_store

    path = Path(path)
    # only a screen QC store made by `run` is ever replaced (phirm_scale.outputs)
    with (
        guard_output(path, command="run", overwrite=overwrite, remove=False),
        atomic_store(path) as tmp,
    ):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
            warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
            ds.to_zarr(tmp, mode="w-", encoding=_encoding(ds), consolidated=True)
            # rewriting the group metadata re-describes the string coordinates: same warning
            mark_store(tmp, "run")
    if csv is not None or parquet is not None:
        table = window_table(ds)
        if csv is not None:
            with atomic_store(csv) as tmp:
                table.to_csv(tmp, index=False, quoting=_csv.QUOTE_NONNUMERIC)
        if parquet is not None:
            with atomic_store(parquet) as tmp:
                table.to_parquet(tmp, index=False)
    return path


def open_screen_qc(path: str | Path) -> xr.Dataset:
    """Open a screen QC store (loaded)."""
    path = Path(path)
    if not path.exists():
        raise PhirmError(f"{path}: QC store not found")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        ds = xr.open_zarr(path).load()
    ds.attrs.pop(ATTRS_KEY, None)  # the store's output marker, not part of the data
    return ds
