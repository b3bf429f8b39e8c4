"""Classical inpainting: OpenCV Telea and Navier-Stokes, scikit-image biharmonic.

Pure numpy in, numpy out, CPU only, no weights. ``cv2.inpaint`` is fed uint16 (or uint8)
images: on float images in [0, 1] Telea returns garbage. Never imports Dask or Zarr.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["inpaint_biharmonic", "inpaint_navier_stokes", "inpaint_telea"]


def _to_int(
    image: npt.NDArray[np.generic],
    dtype: np.dtype[Any],  # uint8 or uint16, checked by the caller
) -> npt.NDArray[np.unsignedinteger[Any]]:
    top = np.iinfo(dtype).max
    return np.rint(np.clip(image, 0.0, 1.0).astype(np.float64) * top).astype(dtype)


def _cv2_inpaint(
    image: npt.ArrayLike, mask: npt.ArrayLike, flag: int, radius: float, dtype: npt.DTypeLike
) -> npt.NDArray[np.float32]:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D; got shape {image.shape}")
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"dtype must be uint8 or uint16; got {dtype}")
    hole = (np.asarray(mask) != 0).astype(np.uint8)
    src = _to_int(image, dtype)
    filled = cv2.inpaint(src, hole, float(radius), flag)
    out = filled.astype(np.float32) / np.float32(np.iinfo(dtype).max)
    return np.where(hole.astype(bool), out, image.astype(np.float32))


def inpaint_telea(
    image: npt.ArrayLike,
    mask: npt.ArrayLike,
    *,
    radius: float = 3.0,
    dtype: npt.DTypeLike = "uint16",
) -> npt.NDArray[np.float32]:
    """Fill ``mask`` (1 = hole) of a (H, W) image in [0, 1] by Telea's fast marching method.

    Parameters
    ----------
    image : (H, W) ndarray
        Values in [0, 1].
    mask : (H, W) ndarray
        Nonzero = hole.
    radius : float, optional
        Neighbourhood radius in pixels.
    dtype : {'uint16', 'uint8'}, optional
        Integer type ``cv2.inpaint`` works in (``rint(image * max)``).

    Returns
    -------
    (H, W) ndarray of float32
        ``image`` outside the hole, the fill inside.
    """
    return _cv2_inpaint(image, mask, cv2.INPAINT_TELEA, radius, dtype)


def inpaint_navier_stokes(
    image: npt.ArrayLike,
    mask: npt.ArrayLike,
    *,
    radius: float = 3.0,
    dtype: npt.DTypeLike = "uint16",
) -> npt.NDArray[np.float32]:
    """Fill ``mask`` (1 = hole) by OpenCV's Navier-Stokes method (see :func:`inpaint_telea`)."""
    return _cv2_inpaint(image, mask, cv2.INPAINT_NS, radius, dtype)


def inpaint_biharmonic(image: npt.ArrayLike, mask: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Fill ``mask`` (1 = hole) by solving the biharmonic equation (scikit-image).

    Parameters
    ----------
    image : (H, W) ndarray
        Values in [0, 1].
    mask : (H, W) ndarray
        Nonzero = hole.

    Returns
    -------
    (H, W) ndarray of float32
    """
    from skimage.restoration import inpaint_biharmonic as _bh

    image = np.asarray(image)
    hole = np.asarray(mask) != 0
    if not hole.any():
        return image.astype(np.float32)
    if hole.all():
        return np.full(image.shape, 0.5, np.float32)
    out = np.clip(_bh(image.astype(np.float64), hole), 0.0, 1.0).astype(np.float32)
    return np.where(hole, out, image.astype(np.float32))
