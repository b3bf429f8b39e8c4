"""The per-field ``flag`` of a QC Dataset and the flagged fields.

:func:`flag_fields` applies the flag rule of :mod:`phirm_scale.flags` (numpy) to a QC
Dataset; :func:`flagged_fields` lists the flagged fields in plate order.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from phirm_scale.flags import (  # the flag rule of the per-field ``flag`` variable
    DEFAULT_HIDDEN_THRESHOLD,
    DEFAULT_RESIDUAL_THRESHOLD,
    DEFAULT_SELFCHECK_THRESHOLD,
    FLAG_BITS,
    flag_codes,
)
from phirm_scale.qc.summaries import add_selfcheck_summaries


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
