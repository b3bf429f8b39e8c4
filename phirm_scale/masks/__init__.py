"""Masks (1 = hole), pure numpy.

Artefact masks from an artefact channel (paper 3.3), from the nuclei channel alone (the
components PhIRM calls artefacts, :func:`saturation_mask`) and artificial masks for training
and evaluation (paper 3.4).

Never imports Dask or Zarr.
"""

from __future__ import annotations

from phirm_scale.masks._artefacts import *  # noqa: F403 - re-exports each module's __all__
from phirm_scale.masks._artefacts import __all__ as _art_all
from phirm_scale.masks._generators import *  # noqa: F403 - re-exports each module's __all__
from phirm_scale.masks._generators import __all__ as _gen_all
from phirm_scale.masks._saturation import *  # noqa: F403 - re-exports each module's __all__
from phirm_scale.masks._saturation import __all__ as _sat_all

__all__ = [*_art_all, *_gen_all, *_sat_all]
