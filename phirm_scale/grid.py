"""Where tiles and windows start along one axis.

The one rule shared by the QC windows, the tile store and the inpainting tiles. Pure Python,
no imports of Dask or Zarr.
"""

from __future__ import annotations

__all__ = ["grid_starts"]


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
