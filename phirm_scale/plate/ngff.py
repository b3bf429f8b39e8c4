"""The NGFF 0.5 pieces every plate array and group is written with.

Constants (version, axes, the all-chunks array config, label titles and colours, the key of
a field's intensity range), the lazy zarr import and the codec, the multiscale level shapes and
:func:`downsample2`, and the ``multiscales`` / ``omero`` metadata blocks of a field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from phirm_scale.plate.keys import FieldKey

#: NGFF version written by this module.
NGFF_VERSION = "0.5"
_AXES = [
    {"name": "t", "type": "time"},
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space"},
    {"name": "y", "type": "space"},
    {"name": "x", "type": "space"},
]
_DIMS = ("t", "c", "z", "y", "x")
#: the array config every field and label array is written with: every chunk is written, even
#: one equal to the fill value, so a chunk file missing from a completed field means damage
#: (checked on read), never "all zeros". Per array, never through ``zarr.config.set``: that
#: context sets zarr's one global config, and a thread leaving it while another writes put the
#: other back to skipping empty chunks (a completed all-zero label then read as damaged).
_ALL_CHUNKS = {"write_empty_chunks": True}
#: What the labels phirm-scale writes are, as viewers show them (the label's multiscales name).
_LABEL_TITLES = {
    "artefacts": "artefact mask (holes inpainted)",
    "artefacts_true": "true artefacts (synthetic ground truth)",
}
_COLORS = ["0000FF", "00FFFF", "FFFFFF", "00FF00", "FF0000", "FF00FF", "FFFF00"]
#: Label colours (NGFF ``image-label`` ``colors``, value 1): each label its own, so a mask and
#: its ground truth can be told apart on top of each other; other names get one of the rest.
_LABEL_COLORS = {"artefacts": (255, 0, 255, 255), "artefacts_true": (255, 255, 0, 255)}
_OTHER_LABEL_COLORS = [(0, 255, 0, 255), (255, 128, 0, 255), (255, 0, 0, 255), (0, 255, 255, 255)]
#: where each field's per-channel intensity range is kept (its phirm_scale attributes)
RANGE_KEY = "intensity_p0.1_p99.9"


def _zarr() -> Any:
    import zarr  # imported here to keep `import phirm_scale.plate` light

    return zarr


def _compressor() -> Any:
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def _level_shape(shape: tuple[int, int], level: int) -> tuple[int, int]:
    y, x = shape
    for _ in range(level):
        y, x = (y + 1) // 2, (x + 1) // 2
    return y, x


def downsample2(image: np.ndarray) -> np.ndarray:
    """Halve the last two axes by 2x2 block means (edge-padded to even size).

    Integer inputs are rounded back to their dtype. Used to build multiscale levels.
    """
    a = np.asarray(image)
    y, x = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(0, y % 2), (0, x % 2)]
    if y % 2 or x % 2:
        a = np.pad(a, pad, mode="edge")
    f = a.astype(np.float64)
    out = f.reshape(*a.shape[:-2], a.shape[-2] // 2, 2, a.shape[-1] // 2, 2).mean(axis=(-3, -1))
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
    return out.astype(image.dtype)


def _multiscales(n_levels: int, name: str) -> list[dict]:
    datasets = []
    for lev in range(n_levels):
        s = float(2**lev)
        datasets.append(
            {
                "path": str(lev),
                "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0, s, s]}],
            }
        )
    return [{"name": name, "axes": _AXES, "datasets": datasets}]


def _omero(channel_names: Sequence[str], dtype: npt.DTypeLike) -> dict[str, Any]:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        lo, hi = float(np.iinfo(dtype).min), float(np.iinfo(dtype).max)
    else:
        lo, hi = 0.0, 1.0
    return {
        "channels": [
            {
                "label": str(name),
                "color": _COLORS[i % len(_COLORS)],
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"min": lo, "max": hi, "start": lo, "end": hi},
            }
            for i, name in enumerate(channel_names)
        ],
        # defaultT / defaultZ: readers that validate omero (iohub) need them
        "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0},
    }


def label_color(name: str) -> tuple[int, int, int, int]:
    """Return the RGBA colour label ``name`` is shown in (its ``image-label`` metadata)."""
    import zlib

    if name in _LABEL_COLORS:
        return _LABEL_COLORS[name]
    return _OTHER_LABEL_COLORS[zlib.crc32(name.encode()) % len(_OTHER_LABEL_COLORS)]


def _field_attrs(
    key: FieldKey, channel_names: Sequence[str], dtype: npt.DTypeLike, n_levels: int
) -> dict[str, Any]:
    return {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": _multiscales(n_levels, f"well {key.row}{key.column} field {key.field}"),
            "omero": _omero(channel_names, dtype),
        }
    }
