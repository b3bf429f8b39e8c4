"""Validation during training: the experiment's scores on the run's fixed validation tiles.

The scoring is :func:`phirm_scale.evaluate.score_tiles`, the one the experiment
(``phirm-scale evaluate``) uses, so a validation PhIRM and an evaluation PhIRM mean the same.
Never imports Dask or Zarr.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["PSNR_CAP", "validation_scores"]

#: identical images have infinite PSNR; it is capped at this (dB) for the mean
PSNR_CAP = 100.0


def validation_scores(
    model: Callable[..., Any], images: np.ndarray, masks: np.ndarray
) -> dict[str, float]:
    """Return the mean scores of ``model`` on a validation batch.

    Images and reconstructions are scored as 8 bit, ``rint(x * 255)``
    (:func:`phirm_scale.metric.to_uint8` with ``lo=0, hi=1``), with
    :func:`phirm_scale.evaluate.score_tiles`: PhIRM in the paper's and the reference code's
    modes, PSNR (capped at :data:`PSNR_CAP`) and SSIM; and the L1 error in the holes.

    Parameters
    ----------
    model : InpaintModel
        Any ``model(images, masks)``.
    images : (N, 1, H, W) ndarray of float32
        Values in [0, 1].
    masks : (N, 1, H, W) ndarray
        1 = hole.

    Returns
    -------
    dict of str to float
        ``n, phirm, phirm_reference, psnr, ssim, l1_hole``.
    """
    from phirm_scale.evaluate import score_tiles
    from phirm_scale.metric import to_uint8

    rec = np.asarray(model(images, masks))
    sc = score_tiles(to_uint8(images[:, 0], 0.0, 1.0), to_uint8(rec[:, 0], 0.0, 1.0))
    hole = np.asarray(masks) != 0
    l1 = float(np.abs(rec - images)[hole].mean()) if hole.any() else 0.0
    return {
        "n": int(images.shape[0]),
        "phirm": float(sc["phirm"].mean()),
        "phirm_reference": float(sc["phirm_reference"].mean()),
        "psnr": float(np.minimum(sc["psnr"], PSNR_CAP).mean()),
        "ssim": float(sc["ssim"].mean()),
        "l1_hole": l1,
    }
