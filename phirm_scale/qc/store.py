"""The QC Dataset on disk: the Zarr store and the per-window / per-field tables.

:func:`write_qc` / :func:`open_qc` store the Dataset with ``to_zarr`` / ``xr.open_zarr``;
:func:`to_table` flattens it to one row per window and :func:`field_table` to one row per
field for CSV / Parquet (:func:`write_tables`). Counts are int64 and ``flag`` int8 in the
store (:func:`zarr_encoding`, ``_FillValue`` -1 for absent fields) and int64 in the tables
(pandas ``Int64`` where a field lacks the value); strings are Zarr's variable-length UTF-8.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from phirm_scale.errors import OutputError, PhirmError
from phirm_scale.plate import ATTRS_KEY
from phirm_scale.qc.kernel import WINDOW_VARIABLES

if TYPE_CHECKING:
    import pandas as pd


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
