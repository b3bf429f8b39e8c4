"""Inpainting models: classical (Telea, Navier-Stokes, biharmonic) and learned (Context
Encoder, DeepFill v2, EdgeConnect), all single channel, all called as
``model(images, masks)`` on (N, 1, H, W) batches in [0, 1] with masks 1 = hole, returning the
composited result. Get one with :func:`get_model`. Never imports Dask or Zarr.
"""

from __future__ import annotations

from phirm_scale.models.registry import (
    MODEL_NAMES,
    InpaintModel,
    get_model,
    list_models,
)

__all__ = ["MODEL_NAMES", "InpaintModel", "get_model", "list_models"]
