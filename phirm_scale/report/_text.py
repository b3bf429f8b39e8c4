"""Numbers and captions as the report writes them (HTML-escaped where they are text)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def _alt(captions: Sequence[str]) -> str:
    """Join the panel captions into one line of alt text."""
    return "; ".join(" ".join(c.split()) for c in captions)


def _fmt(v: object) -> str:
    try:
        v = float(v)  # type: ignore[arg-type]  # whatever float() takes; the rest as text
    except (TypeError, ValueError):
        return html.escape(str(v))
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "inf"
    return f"{v:.0f}" if v == int(v) and abs(v) >= 10 else f"{v:.4g}"


def _n(v: float | npt.NDArray[np.number[Any]]) -> str:
    v = float(v)
    if math.isnan(v):
        return "–"
    return f"{v:,.0f}" if v == int(v) else f"{v:,.3g}"
