"""Field, well and plate summaries of the per-window QC variables.

:func:`level_summary` reduces PhIRM (mean, min, 5th percentile, fraction below the
threshold, window count), SSIM, the masked fraction and the summed components at one level;
:func:`add_summaries` adds all three levels to a QC Dataset. :func:`summarise_variable` and
:func:`add_selfcheck_summaries` do the same for the self-check's per-window variables.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from phirm_scale.errors import InputError
from phirm_scale.qc.kernel import COMPONENTS

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


#: The former name of :func:`level_summary` (kept importable; issue 21: three functions were
#: named ``summarise``).
summarise = level_summary
