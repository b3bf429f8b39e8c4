"""Low-level field I/O: one field's arrays created, written, and opened checked.

A field is written by one writer (one chunk per channel); reads refuse missing, unfinished or
damaged data by name instead of returning zarr's fill value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from phirm_scale.errors import PlateError
from phirm_scale.outputs import ATTRS_KEY
from phirm_scale.plate.keys import FieldKey, FieldKeyLike
from phirm_scale.plate.markers import _group_marker
from phirm_scale.plate.ngff import (
    _ALL_CHUNKS,
    _DIMS,
    RANGE_KEY,
    _compressor,
    _field_attrs,
    _level_shape,
    _zarr,
    downsample2,
)
from phirm_scale.plate.viewer import intensity_range

if TYPE_CHECKING:
    import zarr


def _read_one(path: str, key: tuple, channel: int) -> np.ndarray:
    arr = _checked_array(Path(path), FieldKey(*key), "0", [channel], [str(channel)])
    return np.asarray(arr[0, channel, 0])


def _missing_chunk(arr: Any, arr_path: Path, channels: Sequence[int]) -> str | None:
    """Key of the first chunk of ``channels`` whose file is missing, else None."""
    chunks = arr.chunks
    ny = -(-arr.shape[3] // chunks[3])
    nx = -(-arr.shape[4] // chunks[4])
    for c in channels:
        for iy in range(ny):
            for ix in range(nx):
                ck = arr.metadata.encode_chunk_key((0, c // chunks[1], 0, iy, ix))
                if not (arr_path / ck).exists():
                    return ck
    return None


def _checked_array(
    plate_path: Path,
    key: FieldKey,
    level_path: str,
    channels: Sequence[int],
    names: Sequence[str],
    what: str = "image data",
) -> Any:
    """Open a field's (or label's) level array, refusing missing or damaged data by name."""
    gpath = Path(plate_path) / key.path
    apath = gpath / level_path
    if not (apath / "zarr.json").exists():
        raise PlateError(
            f"{plate_path}: field {key}: {what} is missing ({apath.name} array "
            "deleted or never written)"
        )
    marker = _group_marker(gpath if what == "image data" else apath.parent)
    if marker is not None and marker.get("complete") is False:
        raise PlateError(
            f"{plate_path}: field {key}: {what} incomplete (its writing never "
            "finished; rerun the command that writes it)"
        )
    try:
        arr = _zarr().open_array(str(apath), mode="r")
    except Exception as exc:  # damaged array metadata
        raise PlateError(
            f"{plate_path}: field {key}: {what} is damaged ({type(exc).__name__})"
        ) from exc
    if marker is not None and marker.get("all_chunks") and arr.ndim == 5:
        ck = _missing_chunk(arr, apath, channels)
        if ck is not None:
            raise PlateError(
                f"{plate_path}: field {key}: {what} damaged: chunk file "
                f"{apath.name}/{ck} ({', '.join(names)}) is missing although the "
                "field was completed; rerun the command that wrote it with "
                "--overwrite"
            )
    return arr


def _create_field_group(
    path: str | Path,
    key: FieldKeyLike,
    *,
    channel_names: Sequence[str],
    dtype: npt.DTypeLike,
    shape: tuple[int, int],
    n_levels: int = 1,
) -> zarr.Group:
    """(Re)create one field group and its empty level arrays (low level).

    The group gets multiscales + omero metadata; anything there before is discarded.
    Returns the zarr group.
    """
    zarr = _zarr()
    key = FieldKey(*key)
    dtype = np.dtype(dtype)
    fpath = Path(path) / key.path
    g = zarr.create_group(
        str(fpath),
        zarr_format=3,
        overwrite=True,
        attributes={
            **_field_attrs(key, channel_names, dtype, n_levels),
            ATTRS_KEY: {"complete": False},
        },
    )
    comp = _compressor()
    for lev in range(n_levels):
        ly, lx = _level_shape(shape, lev)
        g.create_array(
            str(lev),
            shape=(1, len(channel_names), 1, ly, lx),
            chunks=(1, 1, 1, ly, lx),
            dtype=dtype,
            compressors=comp,
            fill_value=0,
            dimension_names=_DIMS,
            overwrite=True,
        )
    return g


def _write_field_data(
    path: str | Path,
    key: FieldKey,
    array: np.ndarray,
    *,
    channel_names: Sequence[str],
    dtype: npt.DTypeLike,
    shape: tuple[int, int],
    n_levels: int = 1,
    field_attrs: Mapping[str, Any] | None = None,
    create: bool = False,
) -> None:
    """Low-level: write one field's levels and mark it complete.

    Does not need the plate metadata (convert writes that last). ``array`` is ``(C, Y, X)``.
    With ``create`` the field group is (re)created first (:func:`_create_field_group`), so
    that one task owns the field entirely; otherwise it must exist.
    """
    zarr = _zarr()
    key = FieldKey(*key)
    a = np.asarray(array)
    if a.ndim == 2 and len(channel_names) == 1:
        a = a[None]
    dtype = np.dtype(dtype)
    if a.shape != (len(channel_names), *shape):
        raise PlateError(
            f"{path}: field {key}: data of shape {a.shape}, expected {(len(channel_names), *shape)}"
        )
    if a.dtype != dtype:
        if np.can_cast(a.dtype, dtype, casting="safe"):
            a = a.astype(dtype)
        else:
            raise PlateError(f"{path}: field {key}: data of dtype {a.dtype}, plate is {dtype}")
    fpath = Path(path) / key.path
    if create:
        g = _create_field_group(
            path, key, channel_names=channel_names, dtype=dtype, shape=shape, n_levels=n_levels
        )
        marker: dict = {}
    else:
        g = zarr.open_group(str(fpath), mode="r+")
        marker = dict(dict(g.attrs).get(ATTRS_KEY, {}))
        if marker.get("complete") is not False:
            marker["complete"] = False
            g.attrs.update({ATTRS_KEY: marker})
    arrays = [
        zarr.open_array(str(fpath / str(lev)), mode="r+").with_config(_ALL_CHUNKS)
        for lev in range(n_levels)
    ]
    level = a
    for lev, arr in enumerate(arrays):
        if lev:
            level = downsample2(level)
        arr[0, :, 0] = level
    marker.update(dict(field_attrs or {}))
    if RANGE_KEY not in (field_attrs or {}):  # the data's range, for the viewer windows
        marker[RANGE_KEY] = intensity_range(a)
    marker["complete"] = True
    marker["all_chunks"] = True
    g.attrs.update({ATTRS_KEY: marker})
