"""Inpainting models: classical (Telea, Navier-Stokes, biharmonic) and learned.

Context Encoder, DeepFill v2 and EdgeConnect, all single channel, all called as
``model(images, masks)`` on (N, 1, H, W) batches in [0, 1] with masks 1 = hole, returning the
composited result. Get one with :func:`get_model`. Layout: :mod:`.registry` (look-up and
cache), :mod:`.adapters` (each model's pre/post-processing), :mod:`.networks` (the torch
networks), :mod:`.checkpoint` (the one checkpoint format and guarded loader),
:mod:`.training` (trainers, data, validation, logs and the loop; :func:`.train.train` is the
entry). Never imports Dask or Zarr.
"""

from __future__ import annotations

from phirm_scale.models.adapters.base import InpaintModel
from phirm_scale.models.registry import MODEL_NAMES, get_model, list_models

__all__ = ["MODEL_NAMES", "InpaintModel", "get_model", "list_models"]
