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

The package, by seam: the window geometry lives in :mod:`phirm_scale.grid` (numpy only) and
is re-exported here; :mod:`~phirm_scale.qc.kernel` (:func:`score_field`, the variable
names), :mod:`~phirm_scale.qc.dataset` (:func:`to_dataset`, :func:`add_field_results`),
:mod:`~phirm_scale.qc.summaries` (field / well / plate summaries),
:mod:`~phirm_scale.qc.flagging` (the per-field ``flag``; the rule is :mod:`phirm_scale.flags`)
and :mod:`~phirm_scale.qc.store` (Zarr store, tables); every name is importable from
``phirm_scale.qc``.
"""

from __future__ import annotations

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
from phirm_scale.qc.dataset import (
    _key_index,
    _params_attrs,
    add_field_results,
    params_from_attrs,
    to_dataset,
)
from phirm_scale.qc.flagging import flag_fields, flagged_fields
from phirm_scale.qc.kernel import (
    _DESCRIPTIONS,
    COMPONENTS,
    KERNEL_VARIABLES,
    SUMMARY_STATISTICS,
    WINDOW,
    WINDOW_VARIABLES,
    score_field,
)
from phirm_scale.qc.store import (
    _NOT_COUNTS,
    COUNT_SUFFIXES,
    FLAG_DTYPE,
    INT_FILL,
    _field_names,
    _fixed_strings,
    _int_columns,
    _integral,
    _is_integer,
    _stable_strings,
    _window_names,
    field_table,
    is_count,
    open_qc,
    to_table,
    write_qc,
    write_tables,
    zarr_encoding,
)
from phirm_scale.qc.summaries import (
    _LEVEL_DIMS,
    add_selfcheck_summaries,
    add_summaries,
    level_summary,
    summarise,
    summarise_variable,
)
from phirm_scale.validation import check_image

__all__ = [
    "COMPONENTS",
    "FLAG_BITS",
    "add_field_results",
    "params_from_attrs",
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

#: Every name of the single module ``qc.py`` was that is not in ``__all__``, importable from
#: here as before (what it defined and what it imported from phirm_scale).
_MOVED = (
    ATTRS_KEY,
    InputError,
    OutputError,
    PhirmError,
    __version__,
    check_image,
    metric,
    DEFAULT_HIDDEN_THRESHOLD,
    DEFAULT_RESIDUAL_THRESHOLD,
    DEFAULT_SELFCHECK_THRESHOLD,
    FLAG_DTYPE,
    INT_FILL,
    flag_codes,
    _DESCRIPTIONS,
    _GRID_WINDOW,
    _LEVEL_DIMS,
    _NOT_COUNTS,
    _field_names,
    _fixed_strings,
    _int_columns,
    _integral,
    _is_integer,
    _key_index,
    _params_attrs,
    _stable_strings,
    _window_names,
)
