"""Training data: tiles read from a tile store and masks drawn on the fly, per step.

The batches of step ``j`` of epoch ``e`` depend on nothing but ``(seed, e, j)``: the epoch's
order is ``default_rng([seed, e]).permutation``, the step's masks come from
``default_rng([seed, e, j])`` (and with ``augment='dihedral'`` each tile's turn from
``default_rng([seed, e, j, 1])``). So a resumed run sees exactly the batches an uninterrupted one
would, whatever the threads that prepare them (:func:`prefetch`). Never imports Dask or Zarr
(the tile store is opened through :mod:`phirm_scale.tiles`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from phirm_scale.errors import InputError, PhirmError
from phirm_scale.models.training.config import AUGMENTATIONS

__all__ = [
    "StepBatches",
    "TileSource",
    "artefact_pool",
    "check_artefacts",
    "dihedral",
    "open_split",
    "prefetch",
    "validation_set",
]

T = TypeVar("T")
R = TypeVar("R")


def open_split(tiles: str | Path, split: str) -> Any:
    """Open one split of a tile store.

    Parameters
    ----------
    tiles : str or Path
        The tile store.
    split : {'train', 'val', 'test'}
        The split.

    Returns
    -------
    TileSet
        From :func:`phirm_scale.tiles.open_tiles`.
    """
    from phirm_scale.tiles import open_tiles

    return open_tiles(tiles, split)


def artefact_pool(tileset: Any) -> np.ndarray | None:
    """Return the non-empty artefact masks of a split (the pool 'artefacts' masks come from).

    Parameters
    ----------
    tileset : TileSet
        An opened split.

    Returns
    -------
    ndarray or None
        (K, S, S) masks with at least one artefact pixel each; None when there are none.
    """
    if tileset.artefacts is None:
        return None
    arts = np.asarray(tileset.artefacts[:])
    keep = arts.reshape(arts.shape[0], -1).any(axis=1)
    return arts[keep] if keep.any() else None


class TileSource:
    """Reads batches of tiles as float32 (N, 1, S, S) in [0, 1].

    Parameters
    ----------
    tileset : TileSet
        An opened split.
    in_memory_limit : int
        Read the whole split into memory when it is at most this many bytes.
    """

    def __init__(self, tileset: Any, *, in_memory_limit: int = 2 << 30) -> None:
        arr = tileset.images
        self.path = getattr(tileset, "path", None)  # named in errors
        self.n = int(arr.shape[0])
        self.size: tuple[int, ...] = tuple(int(s) for s in arr.shape[1:])
        nbytes = int(np.prod(arr.shape)) * np.dtype(arr.dtype).itemsize
        self.arr = np.asarray(arr[:]) if nbytes <= in_memory_limit else arr

    def read(self, idx: np.ndarray) -> np.ndarray:
        """Read tiles by index.

        Parameters
        ----------
        idx : ndarray of int
            Tile indices (any order).

        Returns
        -------
        (len(idx), 1, S, S) ndarray of float32
            The tiles in ``idx`` order, scaled to [0, 1].
        """
        if isinstance(self.arr, np.ndarray):
            block = self.arr[idx]
        else:
            order = np.argsort(idx)
            block = np.empty((len(idx), *self.size), np.uint8)
            block[order] = self.arr.oindex[np.asarray(idx)[order]]
        return (block.astype(np.float32) / np.float32(255))[:, None]


class StepBatches:
    """The (tiles, masks) of every step of a run, a pure function of (seed, epoch, step).

    Parameters
    ----------
    source : TileSource
        The train split.
    mask_spec : MaskSpec
        The mask family (:func:`phirm_scale.masks.parse_mask_spec`).
    batch_size : int
        Tiles per step (at most the split's size).
    seed : int
        The run's seed.
    pool : ndarray, optional
        Artefact masks for the 'artefacts' and 'mix' families.
    augment : {'none', 'dihedral'}
        'dihedral': each tile turned by one of the 8 symmetries of the square
        (:func:`dihedral`), drawn from ``default_rng([seed, epoch, step, 1])`` (the masks'
        stream is untouched, so the masks are those of an unaugmented run).
    """

    def __init__(
        self,
        source: TileSource,
        mask_spec: Any,
        *,
        batch_size: int,
        seed: int,
        pool: np.ndarray | None = None,
        augment: str = "none",
    ) -> None:
        if augment not in AUGMENTATIONS:
            raise InputError(f"augment must be one of {', '.join(AUGMENTATIONS)}; got {augment!r}")
        if augment == "dihedral" and source.size[-1] != source.size[-2]:
            raise InputError(
                f"{source.path or 'tile store'}: tiles are {source.size[-2]}x{source.size[-1]}; "
                "--augment dihedral needs square tiles"
            )
        self.source = source
        self.mask_spec = mask_spec
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.pool = pool
        self.augment = augment
        self.steps_per_epoch = max(1, source.n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """Return the order of the tiles in ``epoch``.

        Parameters
        ----------
        epoch : int
            0-based epoch.

        Returns
        -------
        ndarray of int
            A permutation of the split's tile indices.
        """
        return np.random.default_rng([self.seed, epoch]).permutation(self.source.n)

    def load(self, epoch: int, step: int, order: np.ndarray | None = None) -> tuple:
        """Read the tiles and draw the masks of one step.

        Parameters
        ----------
        epoch : int
            0-based epoch.
        step : int
            0-based step within the epoch.
        order : ndarray, optional
            :meth:`order` of the epoch (computed when not given).

        Returns
        -------
        tuple of ndarray
            Tiles (B, 1, S, S) float32 in [0, 1] and masks (B, 1, S, S), nonzero = hole.
        """
        from phirm_scale.masks import sample_masks

        perm = self.order(epoch) if order is None else order
        idx = perm[step * self.batch_size : (step + 1) * self.batch_size]
        holes = sample_masks(
            self.mask_spec,
            len(idx),
            self.source.size,
            rng=np.random.default_rng([self.seed, epoch, step]),
            artefact_pool=self.pool,
        )[:, None]
        tiles = self.source.read(idx)
        if self.augment == "dihedral":
            turns = np.random.default_rng([self.seed, epoch, step, 1]).integers(0, 8, len(idx))
            tiles = dihedral(tiles, turns)
        return tiles, holes

    def epoch(self, epoch: int, first_step: int = 0) -> Generator[tuple, None, None]:
        """Yield the batches of ``epoch`` from ``first_step`` on, prepared ahead on threads.

        Parameters
        ----------
        epoch : int
            0-based epoch.
        first_step : int
            Skip the steps before this one (a resumed run).

        Returns
        -------
        Generator of tuple
            :meth:`load`'s result per step, in order (close it to stop early).
        """
        perm = self.order(epoch)
        return prefetch(
            lambda j: self.load(epoch, j, perm), range(first_step, self.steps_per_epoch)
        )


def dihedral(tiles: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Turn each square tile by one of the 8 symmetries of the square.

    Parameters
    ----------
    tiles : (N, ..., S, S) ndarray
        Square tiles (the last two axes).
    which : (N,) ints in 0..7
        ``k = which % 4`` quarter turns counter-clockwise (:func:`numpy.rot90`), then, for
        ``which >= 4``, a mirror of the columns (left-right).

    Returns
    -------
    ndarray
        A new C-contiguous array of the same shape and dtype.
    """
    if tiles.shape[-1] != tiles.shape[-2]:
        raise InputError(f"dihedral turns need square tiles; got {tiles.shape[-2:]}")
    out = np.empty_like(tiles)
    for i, w in enumerate(np.asarray(which, dtype=np.int64)):
        t = np.rot90(tiles[i], int(w) % 4, axes=(-2, -1))
        out[i] = t[..., ::-1] if w >= 4 else t
    return out


def validation_set(
    tiles: str | Path,
    mask_spec: Any,
    *,
    n_tiles: int,
    size: tuple[int, ...],
    seed: int,
    train_pool: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the fixed validation tiles and masks of a run (None without a val split).

    Parameters
    ----------
    tiles : str or Path
        The tile store.
    mask_spec : MaskSpec
        The run's mask family ('artefacts' falls back to 'mix' when the val split has none).
    n_tiles : int
        At most this many tiles (the first ones); 0 disables validation.
    size : tuple of int
        Tile shape.
    seed : int
        The run's seed (the masks use ``default_rng([seed, 1_000_003])``).
    train_pool : ndarray, optional
        Artefact masks to fall back on when the val split has none.

    Returns
    -------
    tuple of ndarray or None
        Images (N, 1, S, S) float32 in [0, 1] and masks (N, 1, S, S).
    """
    from phirm_scale.masks import parse_mask_spec, sample_masks

    try:
        val_set = open_split(tiles, "val")
    except PhirmError:
        return None
    if len(val_set) == 0 or n_tiles <= 0:
        return None
    nv = min(int(n_tiles), len(val_set))
    images = np.asarray(val_set.images[:nv]).astype(np.float32)[:, None] / np.float32(255)
    val_pool = artefact_pool(val_set) if mask_spec.kind in ("artefacts", "mix") else None
    vspec = (
        mask_spec
        if not (mask_spec.kind == "artefacts" and val_pool is None)
        else parse_mask_spec("mix")
    )
    rng = np.random.default_rng([int(seed), 1_000_003])
    pool = val_pool if val_pool is not None else train_pool
    masks = sample_masks(vspec, nv, size, rng=rng, artefact_pool=pool)[:, None]
    return images, masks


def check_artefacts(tiles: str | Path, mask_spec: Any, pool: np.ndarray | None) -> None:
    """Refuse 'artefacts' masks when the train split holds no artefact masks.

    Parameters
    ----------
    tiles : str or Path
        The tile store (for the message).
    mask_spec : MaskSpec
        The run's mask family.
    pool : ndarray or None
        :func:`artefact_pool` of the train split.

    Raises
    ------
    InputError
        'artefacts' without artefact masks.
    """
    if mask_spec.kind == "artefacts" and pool is None:
        raise InputError(
            f"{tiles}: masks 'artefacts' need artefact masks in the train split; this store "
            "has none"
        )


def prefetch(
    fn: Callable[[T], R], items: Iterable[T], workers: int = 2, depth: int = 4
) -> Generator[R, None, None]:
    """Yield ``fn(item)`` for each item, in order, computed ahead on threads.

    Reading tiles and drawing masks thereby overlap the device's training step.

    Parameters
    ----------
    fn : callable
        The work per item.
    items : iterable
        The items.
    workers : int
        Threads.
    depth : int
        At most this many items are computed ahead.

    Returns
    -------
    Generator
        The results in item order (close it to stop the threads early).
    """
    it = iter(items)
    ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tile-loader")
    futs: deque[Future[R]] = deque()
    try:
        # (inside the try: an item source that fails while filling still stops the threads)
        for _, i in zip(range(depth), it, strict=False):
            futs.append(ex.submit(fn, i))
        while futs:
            res = futs.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                futs.append(ex.submit(fn, nxt))
            yield res
    finally:
        for f in futs:
            f.cancel()
        ex.shutdown(wait=True)
