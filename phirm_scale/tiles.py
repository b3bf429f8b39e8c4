"""The patch dataset of paper 3.5: tiles cut from a plate channel, split by well.

A tile store is a Zarr v3 group (``TILES.zarr``) with, for each split in ``('train', 'val',
'test')``:

``<split>/images``
    ``(N, S, S)`` uint8, every tile min-max normalised to 0..255 on its own
    (``rint((x - min) / (max - min) * 255)``, :func:`phirm_scale.metric.to_uint8`; a
    constant tile becomes all zeros).  One chunk holds the tiles of one field.
``<split>/artefacts`` (optional)
    ``(N, S, S)`` uint8 0/1 masks cut at the same places from a field label (``artefacts``
    from ``phirm-scale masks`` or ``artefacts_true`` from a synthetic plate); 1 = artefact.
``<split>/positions``
    ``(N, 2)`` int32, the ``(y, x)`` of each tile's top-left corner in its field.

and group attributes ``{"tile_size", "stride", "source", "channel", "label", "seed",
"fractions", "splits": {split: [wells]}, "wells": {split: [well of each tile]},
"fields": {split: ["row/column/field" of each tile]}, "format": "phirm-scale-tiles/1"}``.

Tiles run left to right and top to bottom with step ``stride`` (default ``size``, i.e. no
overlap); when the field side is not a multiple of the step, a last row/column of tiles is
aligned to the far border, so every pixel of the field is in some tile.  Wells (never single
fields or tiles) are assigned to splits, so no well's images leak from training into testing.

This module is the tile store's only reader and writer; plates are read through
:mod:`phirm_scale.plate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from phirm_scale.errors import InputError
from phirm_scale.grid import grid_starts
from phirm_scale.plate import ATTRS_KEY
from phirm_scale.validation import check_image

if TYPE_CHECKING:
    from phirm_scale.plate import FieldKey, Plate

__all__ = [
    "SPLITS",
    "TileSet",
    "TilesWritten",
    "cut_tiles",
    "open_tiles",
    "parse_tiles_path",
    "split_wells",
    "tile_starts",
    "write_tiles",
]

SPLITS = ("train", "val", "test")
_FORMAT = "phirm-scale-tiles/1"


# --------------------------------------------------------------------------- pure helpers
def tile_starts(length: int, size: int, stride: int | None = None) -> list[int]:
    """Start offsets of tiles along one axis; the last tile is aligned to the far border.

    Parameters
    ----------
    length : int
        Axis length of the field.
    size : int
        Tile side.
    stride : int, optional
        Step between tiles (default ``size``).

    Returns
    -------
    list of int

    Examples
    --------
    >>> tile_starts(520, 256)
    [0, 256, 264]
    >>> tile_starts(512, 256)
    [0, 256]
    """
    stride = size if stride is None else int(stride)
    if size < 1 or stride < 1:
        raise InputError(f"tile size and stride must be >= 1; got size={size}, stride={stride}")
    if length < size:
        raise InputError(f"tile size {size} is larger than the field side {length}")
    return grid_starts(length, size, stride)


def cut_tiles(
    image: npt.ArrayLike, *, size: int = 256, stride: int | None = None, normalise: bool = True
) -> tuple[np.ndarray, npt.NDArray[np.int32]]:
    """Cut a 2-D field into square tiles (row-major order).

    Parameters
    ----------
    image : (Y, X) ndarray
        One field of one channel.
    size : int
        Tile side.
    stride : int, optional
        Step between tiles (default ``size``); edge tiles are aligned to the border.
    normalise : bool
        Min-max normalise each tile on its own to uint8 (paper 3.5); otherwise tiles keep
        the image's dtype and values.

    Returns
    -------
    tiles : (N, size, size) ndarray
    positions : (N, 2) ndarray of int32
        ``(y, x)`` of each tile's top-left corner.
    """
    from phirm_scale.metric import to_uint8

    img = check_image(image, "cut_tiles", what="field", allow_empty=True, kinds=None, finite=False)
    ys = tile_starts(img.shape[0], size, stride)
    xs = tile_starts(img.shape[1], size, stride)
    pos = np.array([(y, x) for y in ys for x in xs], np.int32)
    dtype = np.uint8 if normalise else img.dtype
    tiles = np.empty((len(pos), size, size), dtype)
    for i, (y, x) in enumerate(pos):
        t = img[y : y + size, x : x + size]
        tiles[i] = to_uint8(t) if normalise else t
    return tiles, pos


def split_wells(
    wells: Iterable[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> dict[str, list[str]]:
    """Assign whole wells to train/val/test at random (seeded).

    Counts follow the fractions by largest remainder, and every split with a positive
    fraction gets at least one well when there are enough wells.

    Parameters
    ----------
    wells : sequence of str
        Well names (e.g. ``'A02'``); duplicates are ignored.
    fractions : (float, float, float)
        Train, val, test fractions (non-negative, sum 1).
    seed : int
        Seed of the shuffle.

    Returns
    -------
    dict
        ``{'train': [...], 'val': [...], 'test': [...]}``, each sorted.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or not math.isclose(fr.sum(), 1.0, abs_tol=1e-6):
        raise InputError(
            f"split fractions must be three non-negative numbers summing to 1; got {fractions!r}"
        )
    uniq = sorted(set(wells))
    n = len(uniq)
    if n == 0:
        raise InputError("no wells to split")
    raw = fr * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    # every split with a positive fraction gets a well if possible (taken from the largest)
    for i in range(3):
        if fr[i] > 0 and counts[i] == 0 and n >= int((fr > 0).sum()):
            j = int(np.argmax(counts))
            counts[j] -= 1
            counts[i] += 1
    order = np.random.default_rng(seed).permutation(n)
    out, k = {}, 0
    for name, c in zip(SPLITS, counts, strict=True):
        out[name] = sorted(uniq[i] for i in order[k : k + c])
        k += c
    return out


def parse_tiles_path(path: str | Path) -> tuple[Path, str | None]:
    """Split ``'TILES.zarr:test'`` into ``(Path('TILES.zarr'), 'test')``; no suffix -> None."""
    s = str(path)
    head, sep, tail = s.rpartition(":")
    if sep and tail in SPLITS and head:
        return Path(head), tail
    if sep and head and "/" not in tail and "\\" not in tail and not Path(s).exists():
        raise InputError(f"{s}: unknown split {tail!r}; expected one of {', '.join(SPLITS)}")
    return Path(s), None


# --------------------------------------------------------------------------- reader
@dataclass
class TileSet:
    """One split of a tile store.

    Attributes
    ----------
    path : Path
        The store.
    split : str
        ``'train'``, ``'val'`` or ``'test'``.
    images : zarr.Array
        ``(N, S, S)`` uint8 tiles (index it to read: ``ts.images[:8]``).
    artefacts : zarr.Array or None
        ``(N, S, S)`` uint8 0/1 artefact masks, when the store has them.
    positions : zarr.Array
        ``(N, 2)`` int32 tile corners.
    attrs : dict
        The store's attributes.
    """

    path: Path
    split: str
    images: Any
    artefacts: Any
    positions: Any
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def tile_size(self) -> int:
        """The edge of every tile, px."""
        return int(self.attrs["tile_size"])

    @property
    def wells(self) -> list[str]:
        """The well of each tile."""
        return list(self.attrs["wells"][self.split])

    @property
    def fields(self) -> list[str]:
        """``'row/column/field'`` of each tile."""
        return list(self.attrs["fields"][self.split])

    def __repr__(self) -> str:
        art = "with" if self.artefacts is not None else "without"
        return (
            f"TileSet({str(self.path)!r}, split={self.split!r}, n={len(self)}, "
            f"size={self.attrs.get('tile_size')}, {art} artefacts)"
        )


def open_tiles(path: str | Path, split: str | None = None) -> TileSet:
    """Open one split of a tile store.

    Parameters
    ----------
    path : str or Path
        ``TILES.zarr`` or ``TILES.zarr:split``.
    split : {'train', 'val', 'test'}, optional
        Overrides nothing: it must agree with a ``:split`` suffix.  Default: the suffix, else
        ``'train'``.

    Returns
    -------
    TileSet

    Raises
    ------
    InputError
        If the path is not a tile store or the split is unknown.
    """
    import zarr

    p, suffix = parse_tiles_path(path)
    if split is not None and suffix is not None and split != suffix:
        raise InputError(f"{path}: split suffix {suffix!r} contradicts split={split!r}")
    split = split or suffix or "train"
    if split not in SPLITS:
        raise InputError(f"{p}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not p.exists():
        raise InputError(f"{p}: no such tile store")
    try:
        g = zarr.open_group(str(p), mode="r")
        attrs = dict(g.attrs)
    except Exception as exc:  # noqa: BLE001 - any zarr failure means "not a tile store"
        raise InputError(f"{p}: not a tile store ({type(exc).__name__})") from None
    if attrs.get("format") != _FORMAT:
        raise InputError(f"{p}: not a phirm-scale tile store (attribute 'format' missing)")
    if split not in g:
        raise InputError(f"{p}: no split {split!r} in this tile store")
    sg = g[split]
    if not isinstance(sg, zarr.Group):
        raise InputError(f"{p}: split {split!r} is not a group; not a phirm-scale tile store")
    return TileSet(
        path=p,
        split=split,
        images=sg["images"],
        artefacts=sg.get("artefacts"),
        positions=sg["positions"],
        attrs=attrs,
    )


# --------------------------------------------------------------------------- writer
@dataclass(frozen=True)
class TilesWritten:
    """What :func:`write_tiles` wrote: the store, tiles per split and the wells per split."""

    path: Path
    counts: dict
    split_wells: dict


def _well_name(key: FieldKey) -> str:
    return f"{key.row}{key.column}"


def write_tiles(
    plate: Plate | str | Path,
    out: str | Path,
    *,
    channel: str | int,
    size: int = 256,
    stride: int | None = None,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    label: str | None = None,
    overwrite: bool = False,
) -> TilesWritten:
    """Cut every field of a plate channel into tiles and write a tile store.

    Parameters
    ----------
    plate : Plate or path
        The source plate (:func:`phirm_scale.plate.open_plate`).
    out : path
        The tile store to create (``TILES.zarr``).
    channel : str or int
        Channel name or index.
    size : int
        Tile side (paper: 256).
    stride : int, optional
        Step between tiles (default ``size``); edge tiles are aligned to the border.
    split : (float, float, float)
        Train/val/test fractions of the wells.
    seed : int
        Seed of the well split.
    label : str, optional
        Field label to cut artefact masks from (``'artefacts'`` or ``'artefacts_true'``);
        every field must have it.
    overwrite : bool
        Replace an existing store.

    Returns
    -------
    TilesWritten

    Raises
    ------
    InputError, PlateError
        Bad channel, missing label, tile larger than a field, bad fractions, existing output:
        all checked before anything is written.
    """
    from phirm_scale.plate import open_plate

    if isinstance(plate, (str, Path)):
        plate = open_plate(plate)
    out = Path(out)
    ci = plate.channel_index(channel)
    ch_name = plate.channel_names[ci]
    fy, fx = plate.field_shape
    ys, xs = tile_starts(fy, size, stride), tile_starts(fx, size, stride)
    per_field = len(ys) * len(xs)
    assignment = split_wells([_well_name(k) for k in plate.fields], split, seed=seed)
    if label is not None:
        missing = [k for k in plate.fields if not plate.has_label(k, label)]
        if missing:
            k = missing[0]
            raise InputError(
                f"{plate.path}: field {k.row}/{k.column}/{k.field} has no label {label!r}"
                f" ({len(missing)} of {len(plate.fields)} fields lack it)"
            )
    import zarr

    from phirm_scale.outputs import atomic_store, guard_output, marker_attrs

    with (
        guard_output(out, command="tiles", inputs=[plate.path], overwrite=overwrite, remove=False),
        atomic_store(out) as tmp,
    ):
        well_split = {w: s for s, ws in assignment.items() for w in ws}
        fields_of = {s: [k for k in plate.fields if well_split[_well_name(k)] == s] for s in SPLITS}

        g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        attrs: dict[str, Any] = {
            ATTRS_KEY: marker_attrs("tiles"),
            "format": _FORMAT,
            "tile_size": int(size),
            "stride": int(size if stride is None else stride),
            "source": str(plate.path),
            "channel": ch_name,
            "label": label,
            "seed": int(seed),
            "fractions": [float(f) for f in split],
            "normalisation": "per-tile min-max to uint8: rint((x-min)/(max-min)*255)",
            "splits": assignment,
            "wells": {},
            "fields": {},
        }
        counts = {}
        for s in SPLITS:
            keys = fields_of[s]
            n = len(keys) * per_field
            counts[s] = n
            sg = g.require_group(s)
            chunk = (max(1, per_field), size, size)
            imgs = sg.create_array("images", shape=(n, size, size), dtype="uint8", chunks=chunk)
            arts = (
                sg.create_array("artefacts", shape=(n, size, size), dtype="uint8", chunks=chunk)
                if label is not None
                else None
            )
            posa = sg.create_array(
                "positions", shape=(n, 2), dtype="int32", chunks=(max(1, per_field), 2)
            )
            attrs["wells"][s] = [_well_name(k) for k in keys for _ in range(per_field)]
            attrs["fields"][s] = [
                f"{k.row}/{k.column}/{k.field}" for k in keys for _ in range(per_field)
            ]
            for i, key in enumerate(keys):
                img = plate.read_field(key, channel=ci)
                tiles, pos = cut_tiles(img, size=size, stride=stride)
                sl = slice(i * per_field, (i + 1) * per_field)
                imgs[sl] = tiles
                posa[sl] = pos
                if arts is not None and label is not None:  # arts exist with a label
                    lab = np.asarray(plate.read_label(key, label)) != 0
                    at, _ = cut_tiles(
                        lab.astype(np.uint8), size=size, stride=stride, normalise=False
                    )
                    arts[sl] = at
        g.attrs.update(attrs)
    return TilesWritten(path=out, counts=counts, split_wells=assignment)
