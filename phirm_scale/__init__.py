"""phirm-scale: restore HCS plates by inpainting and score them with PhIRM.

The dozen names a user needs, importable from here (each loaded on first use, so ``import
phirm_scale`` stays light for the CLI):

- the metric: :func:`score`, :func:`components`, :class:`PhirmParams`;
- masks and one field: :func:`artefact_mask`, :func:`saturation_mask`,
  :func:`inpaint_field`, :func:`get_model`;
- plates and stages: :func:`open_plate`, :func:`convert`, :func:`make_artefact_masks`,
  :func:`inpaint_plate`, :func:`score_plates`;
- a whole screen: :func:`run_screen` with :class:`ScreenSettings`, and :func:`open_qc` for
  the QC it writes.

Everything else stays where it is documented (``phirm_scale.qc``, ``phirm_scale.stages.*``,
...).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import Any

try:  # single source: pyproject.toml's [project] version, through the installed metadata
    __version__ = _version("phirm-scale")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"

#: public name -> the module that defines it
_PUBLIC = {
    "score": "phirm_scale.metric",
    "components": "phirm_scale.metric",
    "PhirmParams": "phirm_scale.metric",
    "artefact_mask": "phirm_scale.masks",
    "saturation_mask": "phirm_scale.masks",
    "inpaint_field": "phirm_scale.inpaint",
    "get_model": "phirm_scale.models",
    "open_plate": "phirm_scale.plate",
    "convert": "phirm_scale.stages.convert",
    "make_artefact_masks": "phirm_scale.stages.masks",
    "inpaint_plate": "phirm_scale.stages.inpaint",
    "score_plates": "phirm_scale.stages.score",
    "run_screen": "phirm_scale.run",
    "ScreenSettings": "phirm_scale.run",
    "open_qc": "phirm_scale.qc",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'phirm_scale' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
