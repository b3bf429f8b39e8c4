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
* The cut (:func:`cut_hole_tiles`: one gather of a sliding-window view) and the blend
  (:func:`blend_hole_tiles`: one ``bincount`` over the tiles' hole pixels) work on all hole
  tiles of a field at once, equal bit for bit to a loop over the tiles.
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
from typing import Any, Literal, TypeVar, overload

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from phirm_scale.errors import InputError
from phirm_scale.grid import grid_starts
from phirm_scale.validation import check_image, check_same_shape

__all__ = [
    "overlap_tile_starts",
    "hole_tiles",
    "inpaint_field",
    "InpaintStats",
    "FieldTiles",
    "cut_hole_tiles",
    "blend_hole_tiles",
    "blend_weight",
]

Model = Callable[[np.ndarray, np.ndarray], np.ndarray]
FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
T = TypeVar("T", bound=np.generic)


def overlap_tile_starts(length: int, tile: int, overlap: int = 0) -> list[int]:
    """Start offsets of inpainting tiles of size ``tile`` covering ``length``.

    Tiles overlap by at least ``overlap`` px (blended); the last tile ends at the border.
    ``[0]`` when ``length <= tile`` (a short axis is padded to one tile). Unlike
    :func:`phirm_scale.tiles.tile_starts` (training tiles by ``stride``, which refuses an axis
    shorter than a tile), this takes the overlap and never refuses a short axis.

    Parameters
    ----------
    length : int
        Axis length of the field.
    tile, overlap : int
        Tile size and overlap in pixels (``0 <= overlap < tile``).

    Returns
    -------
    list of int
    """
    if tile <= 0 or not 0 <= overlap < tile:
        raise InputError(
            f"tile must be > 0 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}"
        )
    return grid_starts(length, tile, tile - overlap)


def hole_tiles(mask: np.ndarray, tile: int, overlap: int = 0) -> list[tuple[int, int]]:
    """Find the tiles that contain at least one hole pixel.

    Parameters
    ----------
    mask : (M, N) ndarray
        Hole mask, non-zero = hole.
    tile, overlap : int
        Tile size and overlap in pixels.

    Returns
    -------
    list of (int, int)
        ``(y0, x0)`` of each such tile, row-major over the grid of :func:`overlap_tile_starts` (a
        field smaller than a tile has the one tile ``(0, 0)``).
    """
    hole = np.asarray(mask) > 0
    ys = np.array(overlap_tile_starts(hole.shape[0], tile, overlap), dtype=np.int64)
    xs = np.array(overlap_tile_starts(hole.shape[1], tile, overlap), dtype=np.int64)
    return [(int(ys[i]), int(xs[j])) for i, j in np.argwhere(_window_any(hole, ys, xs, tile))]


def _window_any(hole: BoolArray, ys: IntArray, xs: IntArray, tile: int) -> BoolArray:
    """Tell, as ``(len(ys), len(xs))`` booleans, which windows hold a hole pixel.

    One ``any`` per row band of tiles (a fast contiguous reduction; a field has only a few
    bands), then per window from a cumulative count along the band.
    """
    bands = np.stack([hole[y : y + tile].any(axis=0) for y in ys])  # (len(ys), W)
    count = np.zeros((len(ys), bands.shape[1] + 1), np.int64)
    np.cumsum(bands, axis=1, out=count[:, 1:])
    return np.asarray(count[:, np.minimum(xs + tile, bands.shape[1])] - count[:, xs] > 0)


@dataclass(frozen=True)
class InpaintStats:
    """What :func:`inpaint_field` did: tiles in the grid, tiles run, hole pixels."""

    tiles_total: int
    tiles_inpainted: int
    hole_pixels: int


def _ramp(n: int, overlap: int) -> FloatArray:
    w = np.ones(n, dtype=np.float64)
    if overlap > 0:
        r = (np.arange(overlap, dtype=np.float64) + 1) / (overlap + 1)
        w[:overlap] = np.minimum(w[:overlap], r)
        w[-overlap:] = np.minimum(w[-overlap:], r[::-1])
    return w


def blend_weight(tile: int, overlap: int) -> FloatArray:
    """Make the ``(tile, tile)`` float64 weight that blends overlapping tiles.

    A linear ramp over the ``overlap`` px at each tile border, 1 inside (the outer product of
    two 1-D ramps): seams get the prediction of the tile that saw most context.

    Parameters
    ----------
    tile, overlap : int
        Tile size and overlap in pixels.

    Returns
    -------
    (tile, tile) float64 ndarray
    """
    r = _ramp(tile, overlap)
    return np.outer(r, r)


@dataclass(frozen=True)
class FieldTiles:
    """The hole tiles of one field, cut and normalised for a model (:func:`cut_hole_tiles`).

    Attributes
    ----------
    starts : (n, 2) int64 ndarray
        ``(y0, x0)`` of each tile in the (padded) field, row-major over the tile grid.
    images : (n, 1, tile, tile) float32 ndarray
        Each tile min-max normalised to [0, 1] over its known pixels; 0 in the holes.
    masks : (n, 1, tile, tile) float32 ndarray
        1 = hole.
    holes : (n, tile, tile) bool ndarray
        The same as booleans.
    lo, hi : (n,) float64 ndarray
        The normalisation range of each tile (``hi > lo``).
    padded_shape : (int, int)
        The field's shape after reflect-padding to at least one tile.
    """

    starts: IntArray
    images: Float32Array
    masks: Float32Array
    holes: BoolArray
    lo: FloatArray
    hi: FloatArray
    padded_shape: tuple[int, int]

    def __len__(self) -> int:
        return int(self.starts.shape[0])


def _pad_to_tile(a: NDArray[T], tile: int) -> NDArray[T]:
    ph, pw = max(0, tile - a.shape[0]), max(0, tile - a.shape[1])
    if ph or pw:
        return np.pad(a, ((0, ph), (0, pw)), mode="symmetric")
    return a


def _windows(a: NDArray[T], ys: IntArray, xs: IntArray, tile: int) -> NDArray[T]:
    """Copy out the ``tile`` x ``tile`` windows of ``a`` at ``(ys[i], xs[i])``: (n, tile, tile)."""
    return sliding_window_view(a, (tile, tile))[ys, xs]


#: tiles normalised per numpy call in :func:`cut_hole_tiles` (8 float64 tiles of 256 px: 4 MiB,
#: so each step's data stays in the CPU cache between its few passes)
CUT_CHUNK = 8


def _extreme_initial(dtype: np.dtype[Any], low: bool) -> int | float:
    """Return the identity of ``min`` (``low``) or ``max`` over ``dtype``."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return int(info.max if low else info.min)
    return float(np.inf if low else -np.inf)


def cut_hole_tiles(image: np.ndarray, hole: np.ndarray, tile: int, overlap: int) -> FieldTiles:
    """Cut every tile holding a hole pixel out of one field and normalise it.

    The tiles are gathered in one fancy index of a sliding-window view; the normalisation runs
    over :data:`CUT_CHUNK` tiles per numpy call. Equal, bit for bit, to cutting the tiles one by
    one: ``t = image[y:y+tile, x:x+tile]`` in float64, ``lo, hi`` its known pixels' min and
    max (``hi = lo + 1`` when equal), ``clip((t - lo) / (hi - lo), 0, 1)`` with holes set to 0,
    cast to float32 (the clip changes nothing: known pixels lie in ``[lo, hi]``).

    Parameters
    ----------
    image : (M, N) ndarray
        The field, integer or float.
    hole : (M, N) bool ndarray
        Hole mask (True = hole); not all True.
    tile, overlap : int
        Tile size and overlap in pixels (the grid of :func:`overlap_tile_starts`).

    Returns
    -------
    FieldTiles
        Fields smaller than a tile are reflect-padded first; a tile without a known pixel is
        normalised over the whole field's known pixels.
    """
    img = _pad_to_tile(np.asarray(image), tile)
    hl = _pad_to_tile(np.asarray(hole, dtype=bool), tile)
    starts = np.array(hole_tiles(hl, tile, overlap), dtype=np.int64).reshape(-1, 2)
    ys, xs = starts[:, 0], starts[:, 1]
    h = _windows(hl, ys, xs, tile)
    t = _windows(img, ys, xs, tile)
    known = ~h
    # min / max over the known pixels, in the field's dtype (exact), then as float64
    lo = np.min(t, axis=(1, 2), where=known, initial=_extreme_initial(t.dtype, True))
    hi = np.max(t, axis=(1, 2), where=known, initial=_extreme_initial(t.dtype, False))
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    empty = ~known.any(axis=(1, 2))
    if empty.any():  # no known pixel in the tile: the field's range
        k = img[~hl]
        lo[empty], hi[empty] = float(k.min()), float(k.max())
    hi = np.where(hi <= lo, lo + 1.0, hi)
    span = hi - lo
    images = np.empty((len(starts), 1, tile, tile), np.float32)
    for s in range(0, len(starts), CUT_CHUNK):
        e = s + CUT_CHUNK
        d = np.subtract(t[s:e], lo[s:e, None, None], dtype=np.float64)
        # divided in float64, rounded once to float32 on the way out
        np.divide(d, span[s:e, None, None], out=images[s:e, 0], casting="same_kind")
        np.copyto(images[s:e, 0], 0.0, where=h[s:e])
    return FieldTiles(
        starts=starts,
        images=images,
        masks=h.astype(np.float32)[:, None],
        holes=h,
        lo=lo,
        hi=hi,
        padded_shape=(int(hl.shape[0]), int(hl.shape[1])),
    )


def blend_hole_tiles(
    tiles: FieldTiles, pred: np.ndarray, hole: np.ndarray, tile: int, overlap: int
) -> FloatArray:
    """Map the model's tiles back to field units and blend them: the hole pixels' values.

    Only the tiles' hole pixels are touched: their values ``weight * (pred * (hi - lo) + lo)``
    and weights are summed per field pixel with one :func:`numpy.bincount` each, which adds
    them tile by tile in grid order, as a plain loop over the tiles does (bit for bit equal).

    Parameters
    ----------
    tiles : FieldTiles
        What :func:`cut_hole_tiles` cut.
    pred : (n, 1, tile, tile) ndarray
        The model's output for ``tiles.images`` (in [0, 1]).
    hole : (M, N) bool ndarray
        The field's (unpadded) hole mask.
    tile, overlap : int
        As for the cut.

    Returns
    -------
    (hole.sum(),) float64 ndarray
        The blended value of every hole pixel, row-major.
    """
    hp, wp = tiles.padded_shape
    sel = tiles.holes
    n = len(tiles)
    counts = np.count_nonzero(sel.reshape(n, -1), axis=1)
    p = np.asarray(pred).reshape(sel.shape)[sel].astype(np.float64)
    w = np.broadcast_to(blend_weight(tile, overlap), sel.shape)[sel]
    value = w * (p * np.repeat(tiles.hi - tiles.lo, counts) + np.repeat(tiles.lo, counts))
    local = np.arange(tile, dtype=np.int64)[:, None] * wp + np.arange(tile, dtype=np.int64)
    base = tiles.starts[:, 0] * wp + tiles.starts[:, 1]
    flat = np.broadcast_to(local, sel.shape)[sel] + np.repeat(base, counts)
    acc = np.bincount(flat, weights=value, minlength=hp * wp).reshape(hp, wp)
    wsum = np.bincount(flat, weights=w, minlength=hp * wp).reshape(hp, wp)
    fh, fw = hole.shape
    out: FloatArray = acc[:fh, :fw][hole] / wsum[:fh, :fw][hole]
    return out


@overload
def inpaint_field(
    image: np.ndarray,
    mask: np.ndarray,
    model: Model,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 16,
    return_stats: Literal[False] = False,
) -> np.ndarray: ...


@overload
def inpaint_field(
    image: np.ndarray,
    mask: np.ndarray,
    model: Model,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 16,
    return_stats: Literal[True],
) -> tuple[np.ndarray, InpaintStats]: ...


@overload
def inpaint_field(
    image: np.ndarray,
    mask: np.ndarray,
    model: Model,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 16,
    return_stats: bool,
) -> np.ndarray | tuple[np.ndarray, InpaintStats]: ...


def inpaint_field(
    image: np.ndarray,
    mask: np.ndarray,
    model: Model,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 16,
    return_stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, InpaintStats]:
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
        Tiles per model call (a model with ``per_call_batch_size``, as every
        :class:`~phirm_scale.models.registry.InpaintModel`, gets it as ``batch_size=``; a
        learned model's forward passes keep one fixed size whatever it is, so results do not
        depend on it).
    return_stats : bool
        Also return an :class:`InpaintStats`.

    Returns
    -------
    ndarray of the input's dtype and shape (and the stats when asked). Pixels outside the
    mask are equal to the input; a mask without holes returns a copy of the input.
    """
    image = check_image(image, "inpaint_field", what="field", allow_empty=True, kinds=None)
    hole = np.asarray(mask) > 0
    check_same_shape(image, hole, "inpaint_field", what=("field", "mask"))
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    fh, fw = image.shape
    out = image.copy()
    n_hole = int(np.count_nonzero(hole))
    if n_hole == 0:
        grid = len(overlap_tile_starts(max(fh, tile), tile, overlap)) * len(
            overlap_tile_starts(max(fw, tile), tile, overlap)
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
        if pred.shape != (1, 1, fh, fw):
            raise InputError(f"model returned shape {pred.shape}, expected {(1, 1, fh, fw)}")
        filled = pred[0, 0][hole] * (hi - lo) + lo
        stats = InpaintStats(1, 1, n_hole)
    else:
        filled, stats = _tiled(image, hole, model, tile, overlap, batch_size, n_hole)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        filled = np.clip(np.rint(filled), info.min, info.max)
    out[hole] = filled.astype(image.dtype)
    return (out, stats) if return_stats else out


def _tiled(
    image: np.ndarray,
    hole: BoolArray,
    model: Model,
    tile: int,
    overlap: int,
    batch_size: int,
    n_hole: int,
) -> tuple[FloatArray, InpaintStats]:
    """Cut the hole tiles, run them in batches, blend: the hole pixels' values."""
    fh, fw = image.shape
    tiles = cut_hole_tiles(image, hole, tile, overlap)
    xs, ms = tiles.images, tiles.masks
    run: Callable[..., Any] = model
    per_call = bool(getattr(model, "per_call_batch_size", False))
    preds = []
    for b in range(0, len(tiles), batch_size):
        x, m = xs[b : b + batch_size], ms[b : b + batch_size]
        p = np.asarray(run(x, m, batch_size=batch_size) if per_call else run(x, m))
        if p.shape != x.shape:
            raise InputError(f"model returned shape {p.shape}, expected {x.shape}")
        preds.append(p)
    pred = preds[0] if len(preds) == 1 else np.concatenate(preds)
    filled = blend_hole_tiles(tiles, pred, hole, tile, overlap)
    grid = len(overlap_tile_starts(max(fh, tile), tile, overlap)) * len(
        overlap_tile_starts(max(fw, tile), tile, overlap)
    )
    return filled, InpaintStats(grid, len(tiles), n_hole)
