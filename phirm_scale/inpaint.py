"""Inpaint one field with a loaded model: tiles, batches, stitching. numpy in, numpy out.

A field (any size, any integer or float dtype) and its hole mask (1 = hole) go in; the field
comes out with only its hole pixels replaced, bit for bit equal to the input elsewhere.

* Tiles of ``tile`` px with ``overlap`` px of overlap cover the field, the last tile of a row
  or column aligned to the border; a field smaller than a tile is reflect-padded.
* Tiles without a hole pixel are skipped: the work follows the artefact area, not the field.
* Each tile is min-max normalised to [0, 1] over its *known* (non-hole) pixels, as the
  training tiles were, and mapped back after the model.
* Overlapping predictions are blended with a weight that falls linearly to the tile borders
  (so seams get the prediction of the tile that saw most context), then rounded and clipped to
  the field's dtype.
* A model with ``whole_field = True`` (OpenCV's Telea and Navier-Stokes) gets the whole field
  in one call instead, seamless: uint8/uint16 fields straight through its
  ``inpaint_integer`` (``cv2.inpaint`` on the raw field, as fast as calling it directly),
  other dtypes normalised over all known pixels.

The model is any callable ``model(images, masks) -> images`` on ``(N, 1, H, W)`` float32 arrays
(images in [0, 1], masks 1 = hole), e.g. :func:`phirm_scale.models.get_model`. This module never
imports Dask or Zarr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from phirm_scale.errors import InputError
from phirm_scale.grid import grid_starts

__all__ = ["tile_starts", "hole_tiles", "inpaint_field", "InpaintStats"]

Model = Callable[[np.ndarray, np.ndarray], np.ndarray]


def tile_starts(length: int, tile: int, overlap: int = 0) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap``
    px of overlap; the last tile ends at the border. ``[0]`` when ``length <= tile``.
    """
    if tile <= 0 or not 0 <= overlap < tile:
        raise InputError(
            f"tile must be > 0 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}"
        )
    return grid_starts(length, tile, tile - overlap)


def hole_tiles(mask: np.ndarray, tile: int, overlap: int = 0) -> list[tuple[int, int]]:
    """``(y0, x0)`` of the tiles that contain at least one hole pixel."""
    hole = np.asarray(mask) > 0
    ys = tile_starts(hole.shape[0], tile, overlap)
    xs = tile_starts(hole.shape[1], tile, overlap)
    return [(y, x) for y in ys for x in xs if hole[y : y + tile, x : x + tile].any()]


@dataclass(frozen=True)
class InpaintStats:
    """What :func:`inpaint_field` did: tiles in the grid, tiles run, hole pixels."""

    tiles_total: int
    tiles_inpainted: int
    hole_pixels: int


def _ramp(n: int, overlap: int) -> np.ndarray:
    w = np.ones(n, dtype=np.float64)
    if overlap > 0:
        r = (np.arange(overlap, dtype=np.float64) + 1) / (overlap + 1)
        w[:overlap] = np.minimum(w[:overlap], r)
        w[-overlap:] = np.minimum(w[-overlap:], r[::-1])
    return w


def inpaint_field(
    image: np.ndarray,
    mask: np.ndarray,
    model: Model,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 16,
    return_stats: bool = False,
):
    """Fill the holes of one field with ``model``.

    Parameters
    ----------
    image : (M, N) ndarray
        The field, integer or float (no NaN).
    mask : (M, N) ndarray
        Hole mask, non-zero = hole.
    model : callable
        ``model(images, masks)`` on ``(B, 1, tile, tile)`` float32 arrays, returning the
        composited images (see :func:`phirm_scale.models.get_model`).
    tile, overlap : int
        Tile size and overlap in pixels.
    batch_size : int
        Tiles per model call (and per forward pass: a model with ``per_call_batch_size``, as
        every :class:`~phirm_scale.models.registry.InpaintModel`, gets it as ``batch_size=``).
    return_stats : bool
        Also return an :class:`InpaintStats`.

    Returns
    -------
    ndarray of the input's dtype and shape (and the stats when asked). Pixels outside the
    mask are equal to the input; a mask without holes returns a copy of the input.
    """
    image = np.asarray(image)
    hole = np.asarray(mask) > 0
    if image.ndim != 2:
        raise InputError(f"expected a 2-D field, got shape {image.shape}")
    if hole.shape != image.shape:
        raise InputError(f"mask shape {hole.shape} differs from field shape {image.shape}")
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise InputError("field contains NaN or infinite values")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    H, W = image.shape
    out = image.copy()
    n_hole = int(hole.sum())
    if n_hole == 0:
        grid = len(tile_starts(max(H, tile), tile, overlap)) * len(
            tile_starts(max(W, tile), tile, overlap)
        )
        stats = InpaintStats(grid, 0, 0)
        return (out, stats) if return_stats else out
    if n_hole == hole.size:
        raise InputError("the mask covers the whole field: nothing is left to inpaint from")

    direct = getattr(model, "inpaint_integer", None)
    if (
        getattr(model, "whole_field", False)
        and direct is not None
        and image.dtype in (np.uint8, np.uint16)
    ):
        out = direct(image, hole)
        stats = InpaintStats(1, 1, n_hole)
        return (out, stats) if return_stats else out
    if getattr(model, "whole_field", False):
        known = image[~hole].astype(np.float64)
        lo, hi = float(known.min()), float(known.max())
        if hi <= lo:
            hi = lo + 1.0
        x = np.clip((image.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
        x[hole] = 0.0
        pred = np.asarray(
            model(x[None, None], hole[None, None].astype(np.float32)), dtype=np.float64
        )
        if pred.shape != (1, 1, H, W):
            raise InputError(f"model returned shape {pred.shape}, expected {(1, 1, H, W)}")
        filled = pred[0, 0][hole] * (hi - lo) + lo
        stats = InpaintStats(1, 1, n_hole)
    else:
        filled, stats = _tiled(image, hole, model, tile, overlap, batch_size, n_hole)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        filled = np.clip(np.rint(filled), info.min, info.max)
    out[hole] = filled.astype(image.dtype)
    return (out, stats) if return_stats else out


def _tiled(image, hole, model, tile, overlap, batch_size, n_hole):
    """Tile, skip clean tiles, normalise per tile, run in batches, blend; hole values."""
    H, W = image.shape
    # reflect-pad fields smaller than a tile
    ph, pw = max(0, tile - H), max(0, tile - W)
    img = image.astype(np.float64)
    hl = hole
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)), mode="symmetric")
        hl = np.pad(hole, ((0, ph), (0, pw)), mode="symmetric")
    known = img[~hl]
    field_lo, field_hi = float(known.min()), float(known.max())

    starts = hole_tiles(hl, tile, overlap)
    acc = np.zeros(img.shape, dtype=np.float64)
    wsum = np.zeros(img.shape, dtype=np.float64)
    weight = np.outer(_ramp(tile, overlap), _ramp(tile, overlap))
    for b in range(0, len(starts), batch_size):
        chunk = starts[b : b + batch_size]
        xs = np.empty((len(chunk), 1, tile, tile), np.float32)
        ms = np.empty((len(chunk), 1, tile, tile), np.float32)
        ranges = []
        for i, (y, x) in enumerate(chunk):
            t = img[y : y + tile, x : x + tile]
            h = hl[y : y + tile, x : x + tile]
            k = t[~h]
            lo, hi = (float(k.min()), float(k.max())) if k.size else (field_lo, field_hi)
            if hi <= lo:
                hi = lo + 1.0
            norm = np.clip((t - lo) / (hi - lo), 0.0, 1.0)
            norm[h] = 0.0
            xs[i, 0] = norm
            ms[i, 0] = h
            ranges.append((lo, hi))
        if getattr(model, "per_call_batch_size", False):
            pred = model(xs, ms, batch_size=batch_size)
        else:
            pred = model(xs, ms)
        pred = np.asarray(pred, dtype=np.float64)
        if pred.shape != xs.shape:
            raise InputError(f"model returned shape {pred.shape}, expected {xs.shape}")
        for i, (y, x) in enumerate(chunk):
            lo, hi = ranges[i]
            acc[y : y + tile, x : x + tile] += weight * (pred[i, 0] * (hi - lo) + lo)
            wsum[y : y + tile, x : x + tile] += weight
    filled = acc[:H, :W][hole] / wsum[:H, :W][hole]
    grid = len(tile_starts(max(H, tile), tile, overlap)) * len(
        tile_starts(max(W, tile), tile, overlap)
    )
    return filled, InpaintStats(grid, len(starts), n_hole)
