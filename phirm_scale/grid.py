"""Where tiles and windows start along one axis, and the QC's window grid of a field.

The one rule shared by the QC windows, the tile store and the inpainting tiles
(:func:`grid_starts`, pure Python), and the windows PhIRM is scored in
(:class:`WindowGrid`, :func:`window_grid`; numpy only, no xarray, Dask or Zarr: the
self-check and field-check maths use them; :mod:`phirm_scale.qc` re-exports them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from phirm_scale.errors import InputError

__all__ = ["WINDOW", "WindowGrid", "grid_starts", "parse_window", "window_grid", "window_starts"]

#: Default QC window edge (px).
WINDOW = 256


def grid_starts(length: int, size: int, stride: int | None = None) -> list[int]:
    """Start offsets of ``size``-long pieces covering ``[0, length)``.

    Pieces start at ``0, stride, 2 * stride, ...`` (``stride`` defaults to ``size``); when the
    last one does not end at ``length``, one more is aligned to the border (it overlaps its
    neighbour), so every piece is full size. ``[0]`` when ``length <= size``: callers decide
    whether that single piece is the full extent (windows) or a padded tile.

    Examples
    --------
    >>> grid_starts(520, 256)
    [0, 256, 264]
    >>> grid_starts(520, 256, 224)
    [0, 224, 264]
    >>> grid_starts(200, 256)
    [0]
    """
    stride = size if stride is None else int(stride)
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be >= 1, got size={size}, stride={stride}")
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


class WindowGrid(NamedTuple):
    """Windows covering a field: top-left corners and the common window shape.

    Attributes
    ----------
    y0, x0 : (W,) ndarray of int64
        Top-left corner of every window, row-major (all x for the first y, then the next y).
    height, width : int
        Shape of every window.
    """

    y0: np.ndarray
    x0: np.ndarray
    height: int
    width: int

    def __len__(self) -> int:  # number of windows, not of tuple fields
        return int(self.y0.size)

    def slices(self) -> Iterable[tuple[slice, slice]]:
        """Yield ``(slice_y, slice_x)`` of every window, in grid order."""
        for y, x in zip(self.y0.tolist(), self.x0.tolist(), strict=True):
            yield slice(y, y + self.height), slice(x, x + self.width)


def window_starts(length: int, size: int | None) -> np.ndarray:
    """Start offsets of full-size windows covering ``[0, length)``.

    Windows are laid from 0 in steps of ``size``; when they do not end at ``length``, one last
    window is aligned to the border (it overlaps its neighbour).  A ``length`` not larger than
    ``size`` (or ``size`` None) gives one window of the full extent.

    Parameters
    ----------
    length : int
        Extent of the field along one axis (> 0).
    size : int or None
        Window edge; None means the whole extent.

    Returns
    -------
    starts : (K,) ndarray of int64

    Examples
    --------
    >>> window_starts(600, 256).tolist()
    [0, 256, 344]
    >>> window_starts(200, 256).tolist()
    [0]
    """
    if length <= 0:
        raise InputError(f"window_starts: length must be > 0, got {length}")
    if size is None:
        return np.zeros(1, dtype=np.int64)
    return np.asarray(grid_starts(length, size), dtype=np.int64)


def window_grid(shape: tuple[int, int], window: int | str | None = WINDOW) -> WindowGrid:
    """Window grid of a ``(Y, X)`` field for windows of ``window`` (None = the whole field).

    Parameters
    ----------
    shape : (int, int)
        Field shape ``(Y, X)``.
    window : int, 'field' or None, default 256
        Window edge (see :func:`parse_window`); in a dimension smaller than ``window`` the
        full extent is used.

    Returns
    -------
    WindowGrid
    """
    if len(shape) != 2:
        raise InputError(f"window_grid: expected a (Y, X) shape, got {tuple(shape)}")
    edge = parse_window(window)
    ys = window_starts(int(shape[0]), edge)
    xs = window_starts(int(shape[1]), edge)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    h = int(shape[0]) if edge is None else min(edge, int(shape[0]))
    w = int(shape[1]) if edge is None else min(edge, int(shape[1]))
    return WindowGrid(yy.ravel(), xx.ravel(), h, w)


def parse_window(window: int | str | None) -> int | None:
    """Normalise a window option: an int >= 7 (SSIM needs 7x7), or ``'field'``/None -> None."""
    if window is None or (isinstance(window, str) and window.strip().lower() == "field"):
        return None
    try:
        value = int(window)
    except (TypeError, ValueError):
        raise InputError(f"window must be an integer >= 7 or 'field', got {window!r}") from None
    if value < 7 or (isinstance(window, float) and window != value):
        raise InputError(f"window must be an integer >= 7 or 'field', got {window!r}")
    return value
