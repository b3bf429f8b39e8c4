"""One QC dataset for a whole screen: the per-plate QC Datasets stacked along ``plate``.

:func:`screen_dataset` takes the QC Dataset of every plate (:func:`phirm_scale.qc.to_dataset`,
dims ``row, column, field, window``) and returns one Dataset with dims
``plate, row, column, field, window``:

* a ``plate`` coordinate (the plate names) and, along ``plate``, the provenance of every plate
  as coordinates (``reference``, ``reconstruction``, their channels, ``mask_label``,
  ``n_fields`` as int64), plus every other plate attribute whose value differs between
  plates (e.g. ``selfcheck_pool``); only the attributes all plates share are Dataset
  attributes, and none lists the plates (the ``plate`` coordinate does), so ``xr.concat`` of
  two screens along ``plate`` keeps every plate's provenance and no attribute goes stale;
* every data variable with CF ``long_name`` and ``units`` (``"1"`` for dimensionless
  quantities and counts, ``"px"`` for areas, ``"dB"`` for PSNR; a variable that carries its
  own ``long_name``, such as ``flag`` with its ``flag_masks`` / ``flag_meanings``, keeps it),
  ``Conventions = "CF-1.10"``;
* integer counts stored as int64 and ``flag`` as int8 in Zarr (``_FillValue`` -1 marks absent
  fields; xarray decodes them to NaN on reading, :func:`phirm_scale.qc.zarr_encoding`) and as
  int64 in the CSV / Parquet tables;
* ``row`` / ``column`` labels as the same strings (``"A"``, ``"02"``) in Zarr (variable-length
  UTF-8, a stable Zarr v3 type), CSV (quoted) and Parquet.

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

from phirm_scale import qc as _qc
from phirm_scale.errors import PhirmError
from phirm_scale.plate import ATTRS_KEY
from phirm_scale.qc.store import _fixed_strings, _stable_strings

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

#: Provenance coordinates that are integers (the rest are strings).
_INT_PROVENANCE = ("n_fields",)

#: Variables ending with these are integer counts (:data:`phirm_scale.qc.COUNT_SUFFIXES`).
COUNT_SUFFIXES = _qc.COUNT_SUFFIXES

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
    return _qc.is_count(name)


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
    # attributes that differ between plates describe one plate each: coordinates along plate
    keys = [k for k in dict.fromkeys(a for n in names for a in plates[n].attrs)]
    per_plate = [
        k
        for k in keys
        if k not in PROVENANCE_KEYS
        and len({json.dumps(plates[n].attrs.get(k), sort_keys=True, default=str) for n in names})
        > 1
    ]
    parts = []
    for n in names:
        d = plates[n]
        prov: dict[str, object] = {k: _plain(d.attrs.get(k)) for k in PROVENANCE_KEYS}
        for k in _INT_PROVENANCE:
            value = d.attrs.get(k)
            prov[k] = int(value) if value is not None else -1
        prov.update({k: _plain(d.attrs.get(k)) for k in per_plate})
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
    shared = {
        k: v for k, v in first.attrs.items() if k not in PROVENANCE_KEYS and k not in per_plate
    }
    shared.update(dict(attrs or {}))
    shared["Conventions"] = "CF-1.10"
    shared["title"] = "PhIRM quality control of a screen"
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
        if "long_name" not in var.attrs:  # flag, self-check variables: their own names
            var.attrs.update(cf_attributes(str(name), desc))
        var.attrs.setdefault("units", cf_attributes(str(name), desc)["units"])
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
        "n_fields": {"long_name": "fields scored in the plate", "units": "1"},
    }
    for c, a in coord_attrs.items():
        if c in ds.coords:
            ds[c].attrs.pop("description", None)
            ds[c].attrs.update(a)
    return ds


def _encoding(ds: xr.Dataset) -> dict:
    return _qc.zarr_encoding(ds)


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
    return _labels(_qc.to_table(ds))


def field_table(ds: xr.Dataset) -> pd.DataFrame:
    """One row per scored field (:func:`phirm_scale.qc.field_table`, with a ``well`` column).

    ``flag``, the ``field_*`` summaries and the per-field checks; counts and ``flag`` as int64.
    """
    return _labels(_qc.field_table(ds))


def write_screen_qc(
    ds: xr.Dataset,
    path: str | Path,
    *,
    csv: str | Path | None = None,
    parquet: str | Path | None = None,
    field_csv: str | Path | None = None,
    field_parquet: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the screen QC store (and the per-window / per-field tables as CSV / Parquet).

    CSV labels are quoted. The store is written beside its target and renamed, never half
    written. Types as :func:`phirm_scale.qc.write_qc` writes them.
    """
    from phirm_scale.outputs import atomic_store, guard_output, mark_store

    path = Path(path)
    # only a screen QC store made by `run` is ever replaced (phirm_scale.outputs)
    with (
        guard_output(path, command="run", overwrite=overwrite, remove=False),
        atomic_store(path) as tmp,
    ):
        with warnings.catch_warnings():
            # consolidated metadata: a zarr-python extension ("must_understand": false)
            warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
            _stable_strings(ds).to_zarr(tmp, mode="w-", encoding=_encoding(ds), consolidated=True)
            mark_store(tmp, "run")
    _qc.write_tables(
        ds,
        csv=csv,
        parquet=parquet,
        field_csv=field_csv,
        field_parquet=field_parquet,
        quoting=_csv.QUOTE_NONNUMERIC,
        tables=(window_table, field_table),
    )
    return path


def open_screen_qc(path: str | Path) -> xr.Dataset:
    """Open a screen QC store (loaded)."""
    path = Path(path)
    if not path.exists():
        raise PhirmError(f"{path}: QC store not found")
    ds = _fixed_strings(xr.open_zarr(path).load())
    ds.attrs.pop(ATTRS_KEY, None)  # the store's output marker, not part of the data
    return ds
