"""The one home of the reference-free flag rule: its bits, its default thresholds, the rule.

A restored field is flagged (``flag``, a CF bit mask; 0 = trusted) by the reference-free QC
(docs/qc-without-ground-truth.md, sections 4 and 7):

====  =====================================  ==============================================
bit   meaning (``flag_meanings``)            rule
====  =====================================  ==============================================
1     ``selfcheck_below_threshold``          a field with holes, mean self-check PhIRM below
                                             the self-check threshold (0.9)
2     ``residual_artefact_above_threshold``  more than the residual threshold (50 px) of
                                             PhIRM artefact left in the restored field
4     ``selfcheck_not_run``                  a field with holes on which no pseudo-hole fits
                                             (its self-check is NaN, never a silent 1.0)
8     ``hidden_nuclei_above_threshold``      a field with holes expected to hide at least
                                             the hidden threshold (8500 px) of nuclei
====  =====================================  ==============================================

:func:`flag_codes` is the rule (numpy arrays); the QC (:func:`phirm_scale.qc.flag_fields`),
restore-then-verify (``inpaint --verify``, :func:`phirm_scale.fieldqc.flag_code`), the report
and the CLI take the bits and defaults from here. Pure Python at import (the CLI imports it
for its option defaults); numpy is imported by :func:`flag_codes` only.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from phirm_scale.errors import InputError

__all__ = [
    "DEFAULT_HIDDEN_THRESHOLD",
    "DEFAULT_RESIDUAL_THRESHOLD",
    "DEFAULT_SELFCHECK_DRAWS",
    "DEFAULT_SELFCHECK_THRESHOLD",
    "FLAG_BITS",
    "check_hidden_threshold",
    "flag_codes",
    "flag_names",
]

#: Flag bits of a field (CF ``flag_masks`` / ``flag_meanings`` of the QC ``flag`` variable).
FLAG_BITS = {
    "selfcheck_below_threshold": 1,
    "residual_artefact_above_threshold": 2,
    "selfcheck_not_run": 4,
    "hidden_nuclei_above_threshold": 8,
}

#: Flag a field with holes whose mean self-check PhIRM is below this (bit 1; also the
#: PhIRM threshold of the "fraction below" summaries).
DEFAULT_SELFCHECK_THRESHOLD = 0.9

#: Flag a field whose restored version keeps more than this many px of PhIRM artefact
#: (bit 2; PhIRM's own component floor).
DEFAULT_RESIDUAL_THRESHOLD = 50.0

#: Flag a field whose holes are expected to hide at least this many nuclear pixels (bit 8;
#: :func:`phirm_scale.fieldqc.expected_hidden_nuclear_area`; chosen on the tuning plates of
#: docs/qc-without-ground-truth.md, section 7).
DEFAULT_HIDDEN_THRESHOLD = 8500.0

#: Pseudo-hole draws of the self-check per field (docs/qc-without-ground-truth.md section 3).
DEFAULT_SELFCHECK_DRAWS = 4


def check_hidden_threshold(value: object) -> float:
    """Return ``value`` as the hidden-nuclei threshold (px), checked: a finite number > 0.

    At 0 or below every field with holes would be flagged; NaN would disable the flag
    silently.

    Raises
    ------
    InputError
        Anything else.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or float(value) <= 0
    ):
        raise InputError(f"--hidden-threshold must be a finite number of px > 0, got {value!r}")
    return float(value)


def flag_codes(
    has_holes: Any,
    *,
    selfcheck_phirm: Any = None,
    residual_area: Any = None,
    hidden_area: Any = None,
    selfcheck_threshold: float = DEFAULT_SELFCHECK_THRESHOLD,
    residual_threshold: float = DEFAULT_RESIDUAL_THRESHOLD,
    hidden_threshold: float = DEFAULT_HIDDEN_THRESHOLD,
) -> Any:
    """Apply the flag rule to fields (arrays broadcast together; int64 codes, 0 = trusted).

    ``has_holes``: whether each field has holes. A measure passed as None was not made and
    sets none of its bits (no self-check: neither 1 nor 4). NaN residual or hidden areas set
    nothing; a NaN self-check of a field with holes sets 4. Bits :data:`FLAG_BITS`; "below",
    "more than" and "at least" as the table of this module says.

    Raises
    ------
    InputError
        A ``hidden_threshold`` that is not a finite number > 0.
    """
    import numpy as np

    hidden_threshold = check_hidden_threshold(hidden_threshold)
    holes = np.asarray(has_holes, bool)
    code = np.zeros(holes.shape, np.int64)
    with np.errstate(invalid="ignore"):
        if selfcheck_phirm is not None:
            sc = np.asarray(selfcheck_phirm, np.float64)
            code = code | np.where(
                holes & (sc < selfcheck_threshold), FLAG_BITS["selfcheck_below_threshold"], 0
            )
            code = code | np.where(holes & np.isnan(sc), FLAG_BITS["selfcheck_not_run"], 0)
        if residual_area is not None:
            res = np.asarray(residual_area, np.float64)
            code = code | np.where(
                res > residual_threshold, FLAG_BITS["residual_artefact_above_threshold"], 0
            )
        if hidden_area is not None:
            hid = np.asarray(hidden_area, np.float64)
            code = code | np.where(
                holes & (hid >= hidden_threshold), FLAG_BITS["hidden_nuclei_above_threshold"], 0
            )
    return code


def flag_names(code: int) -> list[str]:
    """Return the ``flag_meanings`` of the bits set in ``code``, in bit order."""
    return [name for name, bit in FLAG_BITS.items() if int(code) & bit]
