"""Why a field was flagged, in one sentence.

:func:`flag_reason` for a field scored against a reference (which PhIRM term cost most,
nuclei lost or invented, area changed), :func:`selfcheck_reason` for the reference-free QC
(the bits of ``flag``, :data:`phirm_scale.flags.FLAG_BITS`), and
:func:`recorded_hidden_threshold`: the hidden-nuclei rule a QC records, if it applied one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from phirm_scale.flags import DEFAULT_RESIDUAL_THRESHOLD, DEFAULT_SELFCHECK_THRESHOLD, FLAG_BITS
from phirm_scale.report._text import _n

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["flag_reason", "recorded_hidden_threshold", "selfcheck_reason"]


def flag_reason(d: xr.Dataset) -> str:
    """One sentence saying why a field (``ds.sel(plate, row, column, field)``) scored low."""
    parts = []
    terms = {t: float(np.nanmean(d[t].values)) for t in ("ncd", "nad", "aad") if t in d}
    main = max(terms, key=lambda t: terms[t]) if terms else None
    names = {"ncd": "nuclei count (NCD)", "nad": "nuclei area (NAD)", "aad": "artefact area (AAD)"}
    rn = float(np.nansum(d["ref_nuclei_count"].values))
    cn = float(np.nansum(d["rec_nuclei_count"].values))
    if cn < rn:
        parts.append(f"{_n(rn - cn)} nuclei lost ({_n(rn)} -> {_n(cn)})")
    elif cn > rn:
        parts.append(f"{_n(cn - rn)} nuclei invented ({_n(rn)} -> {_n(cn)})")
    else:
        parts.append(f"nuclei count unchanged ({_n(rn)})")
    ra = float(np.nansum(d["ref_nuclei_area"].values))
    ca = float(np.nansum(d["rec_nuclei_area"].values))
    if ca != ra:
        parts.append(f"nuclear area {'+' if ca > ra else '-'}{_n(abs(ca - ra))} px")
    aa = float(np.nansum(d["ref_artefact_area"].values))
    ab = float(np.nansum(d["rec_artefact_area"].values))
    if ab or aa:
        parts.append(f"artefact area {_n(aa)} -> {_n(ab)} px ({_n(ab)} px of artefact left)")
    if "masked_fraction" in d:
        parts.append(
            f"{float(np.nanmean(d['masked_fraction'].values)) * 100:.1f}% of pixels masked"
        )
    lead = f"mostly {names[main]}: " if main and terms[main] > 0 else ""
    return lead + ", ".join(parts) + "."


def recorded_hidden_threshold(flag_attrs: Mapping[str, Any]) -> float | None:
    """Return the hidden-nuclei threshold a ``flag`` variable records (None: not applied).

    A QC made before flag bit 8 existed records none (or, from a run resumed then, inf):
    its text must not claim the rule.
    """
    try:
        v = float(flag_attrs["hidden_threshold"])
    except (KeyError, TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def selfcheck_reason(d: xr.Dataset) -> str:
    """Say in one sentence why a field was flagged by the reference-free QC."""
    parts = []
    code = int(np.nan_to_num(d["flag"].values))
    sc = (
        float(d["field_selfcheck_phirm_mean"].values)
        if "field_selfcheck_phirm_mean" in d
        else float("nan")
    )
    thr = float(d["flag"].attrs.get("selfcheck_threshold", DEFAULT_SELFCHECK_THRESHOLD))
    res_thr = float(d["flag"].attrs.get("residual_threshold", DEFAULT_RESIDUAL_THRESHOLD))
    if code & FLAG_BITS["selfcheck_below_threshold"]:
        parts.append(
            f"self-check PhIRM {sc:.3f} < {thr:g}: the model loses phenotype when it fills "
            "holes of this field's shapes on its clean pixels"
        )
    if code & FLAG_BITS["residual_artefact_above_threshold"]:
        parts.append(
            f"{_n(d['residual_artefact_area'].values)} px of artefact left after "
            f"restoration (> {res_thr:g} px: the masks missed part of the artefact)"
        )
    if code & FLAG_BITS["selfcheck_not_run"]:
        parts.append("no pseudo-hole could be placed: the restoration was not checked")
    hid_thr = recorded_hidden_threshold(d["flag"].attrs)
    if code & FLAG_BITS["hidden_nuclei_above_threshold"] and hid_thr is not None:
        px = float(np.nan_to_num(d["expected_hidden_nuclear_area"].values))
        parts.append(
            f"about {_n(px)} px of nuclei expected under the holes (>= {hid_thr:g}: holes "
            "over this much nuclear area often lose nuclei; check the restored field by eye)"
        )
    if "nuclei_in_holes" in d and float(np.nan_to_num(d["nuclei_in_holes"].values)) > 0:
        n = float(np.nan_to_num(d["nuclei_in_holes"].values))
        parts.append(f"{_n(n)} {'nucleus' if n == 1 else 'nuclei'} drawn mostly inside the holes")
    if "masked_fraction_field" in d:
        parts.append(
            f"{float(np.nan_to_num(d['masked_fraction_field'].values)) * 100:.1f}% of pixels "
            "restored"
        )
    return "; ".join(parts) + "."
