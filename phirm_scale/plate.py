"""OME-Zarr HCS plates: open, read, create and write fields and labels.

This is the only module of phirm-scale that knows OME-Zarr paths. A plate is an NGFF 0.5
(Zarr v3) HCS store::

    <plate>.ome.zarr/                 ome.plate (rows, columns, wells, field_count, name)
        <row>/<col>/                  ome.well (images: fields)
            <field>/                  ome.multiscales (axes t c z y x) + ome.omero (channels)
                0, 1, ...             levels, arrays (1, C, 1, Y, X); one chunk per channel
                labels/<name>/0       NGFF labels, (1, 1, 1, Y, X) unsigned integers

Every array chunk holds one whole field of one channel (``(1, 1, 1, Y, X)``, blosc lz4 +
shuffle), so a field is written by exactly one writer: one task per field never races another.
A field group carries ``phirm_scale.complete = true`` once all its levels were written; stages
use it to resume where a killed run stopped.

Examples
--------
>>> p = open_plate("plate.ome.zarr")                                # doctest: +SKIP
>>> img = p.read_field(p.fields[0], "DAPI")                         # doctest: +SKIP
>>> out = create_plate_like(p, "plate_inpainted.ome.zarr")           # doctest: +SKIP
>>> out.write_field(p.fields[0], p.read_field(p.fields[0]))         # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt

from phirm_scale.errors import OutputError, PlateError
from phirm_scale.outputs import ATTRS_KEY, store_command

if TYPE_CHECKING:
    import dask.array as da
    import zarr

__all__ = [
    "FieldKey",
    "FieldKeyLike",
    "Plate",
    "open_plate",
    "create_plate",
    "create_plate_like",
    "row_name",
    "row_index",
    "NGFF_VERSION",
    "ATTRS_KEY",
    "open_field_view",
    "field_done",
    "read_field_marker",
    "read_root_attrs",
    "remove_store",
    "downsample2",
    "intensity_range",
    "set_display_metadata",
    "display_metadata",
]

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


class FieldKey(NamedTuple):
    """Address of one field of view: ``row`` ('A'), ``column`` ('01'), ``field`` (0, 1, ...)."""

    row: str
    column: str
    field: int

    @property
    def path(self) -> str:
        """Path of the field group inside the plate (``'A/01/0'``)."""
        return f"{self.row}/{self.column}/{self.field}"

    def __str__(self) -> str:  # used in error messages
        return f"{self.row}{self.column}/{self.field}"


#: A field address as callers pass it: a :class:`FieldKey` or any ``(row, column, field)``
#: sequence (converted with ``FieldKey(str(row), str(column), int(field))``).
FieldKeyLike: TypeAlias = FieldKey | Sequence[Any]


# --------------------------------------------------------------------------- names


def row_name(index: int) -> str:
    """Plate row name of a 0-based row index: 0 -> 'A', 25 -> 'Z', 26 -> 'AA'."""
    if index < 0:
        raise ValueError(f"row index must be >= 0, got {index}")
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(ord("A") + rem) + name
    return name


def row_index(name: str) -> int:
    """0-based index of a plate row name ('A' -> 0, 'AA' -> 26)."""
    if not re.fullmatch(r"[A-Z]+", name):
        raise ValueError(f"not a plate row name: {name!r}")
    idx = 0
    for ch in name:
        idx = idx * 26 + (ord(ch) - ord("A") + 1)
    return idx - 1


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


# --------------------------------------------------------------------------- metadata blocks


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


# --------------------------------------------------------------------------- Plate


class Plate:
    """An OME-Zarr HCS plate on disk.

    Use :func:`open_plate`, :func:`create_plate` or :func:`create_plate_like` rather than
    this constructor.

    Attributes
    ----------
    path : Path
        The plate store.
    name : str
        Plate name (``ome.plate.name``).
    rows, columns : list of str
        Row and column names of the plate grid, as in the metadata.
    channel_names : list of str
        Channel labels (omero metadata of the fields).
    field_shape : tuple of int
        ``(Y, X)`` of level 0.
    dtype : numpy.dtype
        Data type of the image arrays.
    fields : list of FieldKey
        Sorted fields present in the plate.
    wells : list of (str, str)
        Sorted wells present.
    n_levels : int
        Number of multiscale levels.
    writable : bool
        Whether image data may be written (``write_field``). Labels may always be added.
    """

    def __init__(
        self, path: str | Path, *, writable: bool = False, _only: FieldKeyLike | None = None
    ):
        self.path = Path(path)
        self.writable = writable
        self._load(_only)

    # -- reading metadata -------------------------------------------------
    def _load(self, only: FieldKeyLike | None = None) -> None:
        zarr = _zarr()
        path = self.path
        if not path.exists():
            raise PlateError(f"{path}: no such plate")
        try:
            root = zarr.open_group(str(path), mode="r")
        except Exception as exc:  # any zarr failure means "not a plate"
            raise PlateError(f"{path}: not a Zarr group ({type(exc).__name__})") from exc
        ome = dict(root.attrs).get("ome", {})
        plate = ome.get("plate") if isinstance(ome, Mapping) else None
        if not plate:
            raise PlateError(f"{path}: not an OME-Zarr HCS plate (no ome.plate metadata)")
        self._attrs_all = dict(root.attrs)
        self.name = str(plate.get("name", path.name.split(".")[0]))
        self.rows = [r["name"] for r in plate["rows"]]
        self.columns = [c["name"] for c in plate["columns"]]
        fields: list[FieldKey] = []
        wells: list[tuple[str, str]] = []
        if only is not None:  # one-field view for tasks: no scan of every well
            only = FieldKey(str(only[0]), str(only[1]), int(only[2]))
            if not (path / only.path / "zarr.json").exists():
                raise PlateError(f"{path}: no field {only}")
            fields, wells = [only], [(only.row, only.column)]
        for w in [] if only is not None else plate["wells"]:
            r, c = w["path"].split("/")
            try:
                wg = zarr.open_group(str(path / r / c), mode="r")
            except Exception:  # noqa: BLE001 - a listed but absent well has no fields
                continue
            images = dict(wg.attrs).get("ome", {}).get("well", {}).get("images", [])
            if not images:
                continue
            wells.append((r, c))
            for im in images:
                fields.append(FieldKey(r, c, int(im["path"])))
        if not fields:
            raise PlateError(f"{path}: HCS plate without any field")
        order = {r: i for i, r in enumerate(self.rows)}
        corder = {c: i for i, c in enumerate(self.columns)}
        self.fields = sorted(fields, key=lambda k: (order[k.row], corder[k.column], k.field))
        self.wells = sorted(set(wells), key=lambda w: (order[w[0]], corder[w[1]]))
        first = zarr.open_group(str(path / self.fields[0].path), mode="r")
        fome = dict(first.attrs).get("ome", {})
        try:
            datasets = fome["multiscales"][0]["datasets"]
        except (KeyError, IndexError) as exc:
            raise PlateError(f"{path}/{self.fields[0].path}: field without multiscales") from exc
        self.level_paths = [d["path"] for d in datasets]
        self.n_levels = len(self.level_paths)
        if not (path / self.fields[0].path / self.level_paths[0] / "zarr.json").exists():
            raise PlateError(
                f"{path}: field {self.fields[0]}: image data is missing "
                f"({self.level_paths[0]} array deleted or never written)"
            )
        arr = zarr.open_array(str(path / self.fields[0].path / self.level_paths[0]), mode="r")
        if arr.ndim != 5:
            raise PlateError(f"{path}/{self.fields[0].path}/0: expected TCZYX, got {arr.ndim}-D")
        self.field_shape = (int(arr.shape[3]), int(arr.shape[4]))
        self.dtype = np.dtype(arr.dtype)
        chans = fome.get("omero", {}).get("channels")
        if chans:
            self.channel_names = [str(c.get("label", i)) for i, c in enumerate(chans)]
        else:
            self.channel_names = [str(i) for i in range(arr.shape[1])]
        if len(self.channel_names) != arr.shape[1]:
            raise PlateError(
                f"{path}: {len(self.channel_names)} channel names for {arr.shape[1]} channels"
            )

    def __repr__(self) -> str:
        return (
            f"Plate({str(self.path)!r}, wells={len(self.wells)}, fields={len(self.fields)}, "
            f"channels={self.channel_names}, shape={self.field_shape}, dtype={self.dtype})"
        )

    @property
    def attrs(self) -> dict:
        """Plate-level custom attributes (everything but ``ome``), e.g. provenance."""
        return {k: v for k, v in self._attrs_all.items() if k != "ome"}

    @property
    def n_channels(self) -> int:
        """Count the channels."""
        return len(self.channel_names)

    @property
    def metadata(self) -> dict:
        """The root ``ome`` metadata block (plate)."""
        return dict(self._attrs_all.get("ome", {}))

    def update_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Merge ``attrs`` into the plate-level custom attributes (``ome`` is protected)."""
        if "ome" in attrs:
            raise PlateError(f"{self.path}: 'ome' attributes cannot be changed")
        root = _zarr().open_group(str(self.path), mode="r+")
        root.attrs.update(dict(attrs))
        self._attrs_all = dict(root.attrs)

    def well_fields(self, row: str, column: str) -> list[FieldKey]:
        """Fields of one well, sorted."""
        return [k for k in self.fields if k.row == row and k.column == column]

    def channel_index(self, channel: str | int) -> int:
        """Index of a channel given by name or index; PlateError naming the plate if unknown."""
        if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
            if 0 <= int(channel) < self.n_channels:
                return int(channel)
        elif channel in self.channel_names:
            return self.channel_names.index(channel)
        elif isinstance(channel, str) and channel.isdigit() and int(channel) < self.n_channels:
            return int(channel)
        raise PlateError(
            f"{self.path}: no channel {channel!r} (channels: {', '.join(self.channel_names)})"
        )

    def _check_key(self, key: FieldKeyLike) -> FieldKey:
        key = FieldKey(str(key[0]), str(key[1]), int(key[2]))
        if key not in self._field_set:
            raise PlateError(f"{self.path}: no field {key}")
        return key

    @property
    def _field_set(self) -> set:
        fs = self.__dict__.get("_fs")
        if fs is None:
            fs = self.__dict__["_fs"] = set(self.fields)
        return fs

    def _array(self, key: FieldKey, level: int = 0, mode: str = "r") -> Any:
        if not 0 <= level < self.n_levels:
            raise PlateError(f"{self.path}: no level {level} (levels: 0..{self.n_levels - 1})")
        return _zarr().open_array(str(self.path / key.path / self.level_paths[level]), mode=mode)

    # -- reading data ------------------------------------------------------
    def read_field(
        self, key: FieldKeyLike, channel: str | int | None = None, level: int = 0
    ) -> np.ndarray:
        """Read one field as ``(C, Y, X)`` (all channels) or ``(Y, X)`` (one channel).

        A field whose array is missing, whose writing never finished, or whose chunk files
        are missing although it was completed raises :class:`PlateError` naming the field
        (zarr alone would silently return the fill value).
        """
        key = self._check_key(key)
        if not 0 <= level < self.n_levels:
            raise PlateError(f"{self.path}: no level {level} (levels: 0..{self.n_levels - 1})")
        chans = list(range(self.n_channels)) if channel is None else [self.channel_index(channel)]
        arr = _checked_array(
            self.path, key, self.level_paths[level], chans, [self.channel_names[c] for c in chans]
        )
        if channel is None:
            return np.asarray(arr[0, :, 0])
        return np.asarray(arr[0, chans[0], 0])

    def dask_field(self, key: FieldKeyLike, channel: str | int) -> da.Array:
        """One channel of one field as a single-chunk ``(Y, X)`` Dask array (lazy)."""
        import dask
        import dask.array as da
        from dask.base import tokenize

        key = self._check_key(key)
        c = self.channel_index(channel)
        name = "phirm-field-" + tokenize(str(self.path), tuple(key), c)
        d = dask.delayed(_read_one, pure=True, name=name)(str(self.path), tuple(key), c)
        return da.from_delayed(d, shape=self.field_shape, dtype=self.dtype)

    def field_complete(self, key: FieldKeyLike) -> bool:
        """Whether every level of a field was written (``phirm_scale.complete`` marker)."""
        key = self._check_key(key)
        g = _zarr().open_group(str(self.path / key.path), mode="r")
        return bool(dict(g.attrs).get(ATTRS_KEY, {}).get("complete", False))

    def missing_fields(self) -> list[FieldKey]:
        """Fields whose data was not (completely) written yet."""
        return [k for k in self.fields if not self.field_complete(k)]

    def field_attrs(self, key: FieldKeyLike) -> dict:
        """Return the custom attributes of a field group (everything but ``ome``)."""
        key = self._check_key(key)
        g = _zarr().open_group(str(self.path / key.path), mode="r")
        return {k: v for k, v in dict(g.attrs).items() if k != "ome"}

    # -- labels --------------------------------------------------------------
    def label_names(self, key: FieldKeyLike) -> list[str]:
        """Names of the labels of a field (``labels`` group metadata)."""
        key = self._check_key(key)
        p = self.path / key.path / "labels"
        if not (p / "zarr.json").exists():
            return []
        g = _zarr().open_group(str(p), mode="r")
        return list(dict(g.attrs).get("ome", {}).get("labels", []))

    def has_label(self, key: FieldKeyLike, name: str) -> bool:
        """Whether field ``key`` has a complete label image ``name``."""
        key = self._check_key(key)
        p = self.path / key.path / "labels" / name
        if not (p / "0" / "zarr.json").exists():
            return False
        g = _zarr().open_group(str(p), mode="r")
        return bool(dict(g.attrs).get(ATTRS_KEY, {}).get("complete", False))

    def read_label(self, key: FieldKeyLike, name: str) -> np.ndarray:
        """Read label image ``name`` of a field as ``(Y, X)``."""
        key = self._check_key(key)
        if not self.has_label(key, name):
            raise PlateError(f"{self.path}: field {key} has no label {name!r}")
        arr = _checked_array(
            self.path, key, f"labels/{name}/0", [0], [name], what=f"label {name!r}"
        )
        return np.asarray(arr[0, 0, 0])

    def label_attrs(self, key: FieldKeyLike, name: str) -> dict:
        """Return the phirm-scale attributes of label ``name`` of a field (``{}`` if none).

        E.g. the method and parameters that made an artefact mask.
        """
        key = self._check_key(key)
        p = self.path / key.path / "labels" / name
        if not p.exists():
            return {}
        g = _zarr().open_group(str(p), mode="r")
        return dict(dict(g.attrs).get(ATTRS_KEY, {}))

    def write_label(
        self,
        key: FieldKeyLike,
        name: str,
        array: np.ndarray,
        *,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write (or replace) the NGFF label image ``name`` of a field.

        Labels are added beside the image; image data is never touched, so this works on a
        plate opened read-only. One writer per field: do not write two labels of the same
        field concurrently.

        Parameters
        ----------
        key : FieldKey
        name : str
            Label name, e.g. ``'artefacts'``.
        array : (Y, X) ndarray of bool or unsigned integers (uint8, uint16, uint32).
        attrs : mapping, optional
            JSON-able settings stored with the label (under ``phirm_scale``, beside the
            ``complete`` marker), e.g. the method and parameters of a mask.
        """
        key = self._check_key(key)
        extra = dict(attrs or {})
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name or ""):
            raise PlateError(f"{self.path}: invalid label name {name!r}")
        a = np.asarray(array)
        if a.dtype == bool:
            a = a.astype(np.uint8)
        if a.dtype not in (np.uint8, np.uint16, np.uint32):
            raise PlateError(
                f"{self.path}: label {name!r} of field {key} must be uint8/16/32, got {a.dtype}"
            )
        if a.shape != self.field_shape:
            raise PlateError(
                f"{self.path}: label {name!r} of field {key} has shape {a.shape}, "
                f"expected {self.field_shape}"
            )
        zarr = _zarr()
        fpath = self.path / key.path
        labels_path = fpath / "labels"
        names = self.label_names(key)
        if name not in names:
            names = sorted([*names, name])
        lg = zarr.open_group(str(labels_path), mode="a")
        lg.attrs.update({"ome": {"version": NGFF_VERSION, "labels": names}})
        multiscales = _multiscales(self.n_levels, _LABEL_TITLES.get(name, name))
        # the image's pixel size (scale and axis units), so that the label lies on the image
        ims = dict(zarr.open_group(str(fpath), mode="r").attrs).get("ome", {}).get("multiscales")
        if ims:
            multiscales[0]["axes"] = json.loads(json.dumps(ims[0].get("axes", _AXES)))
            pairs = zip(multiscales[0]["datasets"], ims[0].get("datasets", []), strict=False)
            for ds, ids in pairs:
                if "coordinateTransformations" in ids:
                    ds["coordinateTransformations"] = ids["coordinateTransformations"]
        attrs = {
            "ome": {
                "version": NGFF_VERSION,
                "multiscales": multiscales,
                "image-label": {
                    "version": NGFF_VERSION,
                    "source": {"image": "../../"},
                    "colors": [{"label-value": 1, "rgba": list(label_color(name))}],
                    "properties": [{"label-value": 1, "name": _LABEL_TITLES.get(name, name)}],
                },
            },
            ATTRS_KEY: {"complete": False},
        }
        g = zarr.create_group(str(labels_path / name), attributes=attrs, overwrite=True)
        level = a
        for lev in range(self.n_levels):  # as many levels as the image (NGFF); nearest
            if lev:
                level = level[::2, ::2]
            arr = g.create_array(
                str(lev),
                shape=(1, 1, 1, *level.shape),
                chunks=(1, 1, 1, *level.shape),
                dtype=a.dtype,
                compressors=_compressor(),
                fill_value=0,
                dimension_names=_DIMS,
                overwrite=True,
                config=_ALL_CHUNKS,
            )
            arr[0, 0, 0] = level
        g.attrs.update({ATTRS_KEY: {**extra, "complete": True, "all_chunks": True}})

    # -- writing image data --------------------------------------------------
    def write_field(
        self, key: FieldKeyLike, array: np.ndarray, *, field_attrs: Mapping[str, Any] | None = None
    ) -> None:
        """Write all channels of one field, ``(C, Y, X)``, and its downsampled levels.

        The field is marked complete afterwards (see :meth:`field_complete`);
        ``field_attrs`` (JSON-able) are stored beside that marker.
        """
        if not self.writable:
            raise PlateError(
                f"{self.path}: plate opened read-only; image data is never modified in place"
            )
        key = self._check_key(key)
        _write_field_data(
            self.path,
            key,
            array,
            channel_names=self.channel_names,
            dtype=self.dtype,
            shape=self.field_shape,
            n_levels=self.n_levels,
            field_attrs=field_attrs,
        )


def open_field_view(path: str | Path, key: FieldKeyLike, *, mode: str = "r") -> Plate:
    """Open a :class:`Plate` that knows only field ``key``: what a per-field task opens.

    It reads 2 metadata documents instead of every well's.
    """
    return Plate(path, writable=(mode == "r+"), _only=key)


def _read_one(path: str, key: tuple, channel: int) -> np.ndarray:
    arr = _checked_array(Path(path), FieldKey(*key), "0", [channel], [str(channel)])
    return np.asarray(arr[0, channel, 0])


def _group_marker(path: Path) -> dict | None:
    """``phirm_scale`` attributes of the group at ``path`` (None: no such key)."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    m = meta.get("attributes", {}).get(ATTRS_KEY)
    return dict(m) if isinstance(m, Mapping) else None


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


def field_done(path: str | Path, key: FieldKeyLike) -> bool:
    """Tell whether field ``key`` of the store at ``path`` carries the complete marker.

    Low level: works before the plate metadata exists, i.e. during a conversion.
    """
    f = Path(path) / FieldKey(*key).path / "zarr.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("attributes", {}).get(ATTRS_KEY, {}).get("complete", False))


def read_field_marker(path: str | Path, key: FieldKeyLike) -> dict:
    """Low-level: phirm-scale's attributes of field ``key`` (empty when absent)."""
    f = Path(path) / FieldKey(*key).path / "zarr.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError):
        return {}
    return dict(meta.get("attributes", {}).get(ATTRS_KEY, {}))


def read_root_attrs(path: str | Path) -> dict | None:
    """Low-level: the root group's attributes of a Zarr v3 store, None if there is none."""
    f = Path(path) / "zarr.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return dict(meta.get("attributes", {}))


def remove_store(path: str | Path) -> None:
    """Delete a store written by phirm-scale.

    Anything else is refused: plates from other software, TIFF folders, foreign stores and
    folders.
    """
    _prepare_output(Path(path), overwrite=True)


# --------------------------------------------------------------------------- creating


def _check_layout(
    rows: Sequence[str], columns: Sequence[str], fields: Iterable[FieldKeyLike]
) -> dict[tuple[str, str], list[int]]:
    wells: dict[tuple[str, str], list[int]] = {}
    for k in fields:
        k = FieldKey(str(k[0]), str(k[1]), int(k[2]))
        if k.row not in rows or k.column not in columns:
            raise PlateError(f"field {k}: well {k.row}{k.column} outside the plate grid")
        wells.setdefault((k.row, k.column), [])
        if k.field in wells[(k.row, k.column)]:
            raise PlateError(f"field {k} listed twice")
        wells[(k.row, k.column)].append(k.field)
    return {w: sorted(f) for w, f in wells.items()}


def _prepare_output(path: Path, overwrite: bool) -> None:
    if path.exists():
        if path.is_dir() and not any(path.iterdir()):
            return
        if not overwrite:
            raise OutputError(f"{path}: output exists (use overwrite to replace it)")
        made_by = store_command(path) if path.is_dir() else None
        if made_by is None:
            raise OutputError(
                f"{path}: exists and is not a Zarr store written by "
                "phirm-scale; refusing to delete it"
            )
        shutil.rmtree(path)


def _create_layout(
    path: str | Path,
    *,
    rows: Sequence[str],
    columns: Sequence[str],
    fields: Iterable[FieldKeyLike],
    channel_names: Sequence[str],
    shape: tuple[int, int],
    dtype: npt.DTypeLike,
    name: str,
    n_levels: int = 1,
    attrs: Mapping[str, Any] | None = None,
    plate_metadata: bool = True,
    skip_existing: bool = False,
    create_fields: bool = True,
) -> None:
    """Low-level: write groups, well and field metadata and empty arrays of a plate.

    With ``plate_metadata=False`` the root ``ome.plate`` block is left out (written later by
    :func:`_write_plate_metadata`): convert writes it last, so a killed conversion never
    looks like a plate. ``skip_existing`` keeps field groups already present (resume).
    ``create_fields=False`` leaves the field groups to the tasks that write them
    (:func:`_write_field_data` with ``create=True``).
    """
    zarr = _zarr()
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_well_metadata

    path = Path(path)
    rows, columns = list(rows), list(columns)
    wells = _check_layout(rows, columns, fields)
    shape = (int(shape[0]), int(shape[1]))
    dtype = np.dtype(dtype)
    if n_levels < 1:
        raise PlateError(f"{path}: n_levels must be >= 1, got {n_levels}")
    fmt = FormatV05()
    root = zarr.open_group(str(path), mode="a", zarr_format=3)
    if attrs:
        root.attrs.update(dict(attrs))
    for r in sorted({w[0] for w in wells}):
        if not (path / r / "zarr.json").exists():
            zarr.create_group(str(path / r), zarr_format=3)
    for (r, c), flist in wells.items():
        wpath = path / r / c
        if not (skip_existing and (wpath / "zarr.json").exists()):
            wg = zarr.create_group(str(wpath), zarr_format=3, overwrite=True)
            write_well_metadata(wg, [{"path": str(f)} for f in flist], fmt=fmt)
        if not create_fields:
            continue
        for f in flist:
            key = FieldKey(r, c, f)
            fpath = wpath / str(f)
            if (
                skip_existing
                and (fpath / "zarr.json").exists()
                and all((fpath / str(lev) / "zarr.json").exists() for lev in range(n_levels))
            ):
                continue
            _create_field_group(
                path, key, channel_names=channel_names, dtype=dtype, shape=shape, n_levels=n_levels
            )
    if plate_metadata:
        _write_plate_metadata(
            path,
            rows=rows,
            columns=columns,
            wells=list(wells),
            name=name,
            field_count=max(len(v) for v in wells.values()),
        )


def _write_plate_metadata(
    path: str | Path,
    *,
    rows: Sequence[str],
    columns: Sequence[str],
    wells: Sequence[tuple[str, str]],
    name: str,
    field_count: int,
) -> None:
    """Write the root ``ome.plate`` block (ome-zarr-py's writer, NGFF 0.5)."""
    zarr = _zarr()
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_plate_metadata as _wpm

    rows, columns = list(rows), list(columns)
    root = zarr.open_group(str(path), mode="r+")
    well_list = [
        {"path": f"{r}/{c}", "rowIndex": rows.index(r), "columnIndex": columns.index(c)}
        for r, c in sorted(wells, key=lambda w: (rows.index(w[0]), columns.index(w[1])))
    ]
    keep = {k: v for k, v in dict(root.attrs).items() if k != "ome"}
    _wpm(
        root,
        rows,
        columns,
        well_list,
        fmt=FormatV05(),
        field_count=int(field_count),
        name=str(name),
    )
    # ome-zarr's writer replaces the 'ome' key only; make sure our attrs survive unchanged
    if keep:
        cur = dict(root.attrs)
        if any(cur.get(k) != v for k, v in keep.items()):
            root.attrs.update(keep)


def create_plate(
    path: str | Path,
    *,
    rows: Sequence[str],
    columns: Sequence[str],
    fields: Iterable[FieldKeyLike],
    channel_names: Sequence[str],
    shape: tuple[int, int],
    dtype: npt.DTypeLike,
    name: str | None = None,
    n_levels: int = 1,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Plate:
    """Create an empty, writable HCS plate.

    Parameters
    ----------
    path : str or Path
        Output store (``*.ome.zarr``).
    rows, columns : sequence of str
        Plate grid (e.g. ``['A', 'B']``, ``['01', '02']``).
    fields : iterable of FieldKey or (row, column, field)
        Fields to create (wells are those with at least one field).
    channel_names : sequence of str
    shape : (Y, X)
    dtype : numpy dtype
    name : str, optional
        Plate name; default the store name without suffixes.
    n_levels : int
        Multiscale levels (level k is downsampled by 2**k).
    attrs : mapping, optional
        Plate-level custom attributes (JSON-serialisable).
    overwrite : bool
        Replace an existing store; otherwise an existing ``path`` is a PlateError.

    Returns
    -------
    Plate
        Opened writable.
    """
    path = Path(path)
    channel_names = [str(c) for c in channel_names]
    if len(set(channel_names)) != len(channel_names) or not channel_names:
        raise PlateError(f"{path}: channel names must be unique and non-empty: {channel_names}")
    if attrs is not None:
        try:
            json.dumps(dict(attrs))
        except TypeError as exc:
            raise PlateError(f"{path}: plate attributes are not JSON-serialisable ({exc})") from exc
    fields = list(fields)
    if not fields:
        raise PlateError(f"{path}: a plate needs at least one field")
    _check_layout(list(rows), list(columns), fields)
    _prepare_output(path, overwrite)
    mine = dict((attrs or {}).get(ATTRS_KEY, {}) or {})
    mine.setdefault("command", "create-plate")  # marker: see phirm_scale.outputs
    attrs = {**dict(attrs or {}), ATTRS_KEY: mine}
    _create_layout(
        path,
        rows=rows,
        columns=columns,
        fields=fields,
        channel_names=channel_names,
        shape=shape,
        dtype=dtype,
        name=name or path.name.split(".")[0],
        n_levels=n_levels,
        attrs=attrs,
    )
    return Plate(path, writable=True)


def create_plate_like(
    plate: Plate | str | Path,
    out_path: str | Path,
    *,
    channel_names: Sequence[str] | None = None,
    dtype: npt.DTypeLike | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    n_levels: int | None = None,
) -> Plate:
    """Create an empty plate with the layout (rows, columns, fields, shape) of ``plate``.

    Channel names and dtype default to the source's; ``attrs`` become the plate-level custom
    attributes (e.g. provenance). Used for derived (inpainted) plates; the source is untouched.
    """
    src = plate if isinstance(plate, Plate) else open_plate(plate)
    out = create_plate(
        out_path,
        rows=src.rows,
        columns=src.columns,
        fields=src.fields,
        channel_names=list(channel_names) if channel_names is not None else src.channel_names,
        shape=src.field_shape,
        dtype=dtype if dtype is not None else src.dtype,
        name=src.name,
        n_levels=src.n_levels if n_levels is None else n_levels,
        attrs=attrs,
        overwrite=overwrite,
    )
    # the viewer metadata of the source (contrast windows of the same channels, pixel size)
    disp = display_metadata(src)
    same_channels = channel_names is None or list(channel_names) == list(src.channel_names)
    if disp.get("pixel_size") or (same_channels and disp.get("windows")):
        set_display_metadata(
            out.path,
            out.fields,
            windows=disp.get("windows") if same_channels else None,
            pixel_size=disp.get("pixel_size"),
            unit=disp.get("unit", "micrometer"),
        )
    return out


def open_plate(path: str | Path, *, mode: str = "r") -> Plate:
    """Open an OME-Zarr HCS plate.

    Parameters
    ----------
    path : str or Path
    mode : {'r', 'r+'}
        ``'r'`` (default): image data read-only (labels may still be added); ``'r+'``: fields
        may be written with :meth:`Plate.write_field`.

    Raises
    ------
    PlateError
        If ``path`` is not an HCS plate.
    """
    if mode not in ("r", "r+"):
        raise PlateError(f"{path}: mode must be 'r' or 'r+', got {mode!r}")
    return Plate(path, writable=(mode == "r+"))


# --------------------------------------------------------------------------- display metadata


def intensity_range(
    array: np.ndarray,
    low: float = 0.1,
    high: float = 99.9,
    step: int = 2,
    *,
    exclude: np.ndarray | None = None,
) -> list[list[float]]:
    """Compute per channel ``[p_low, p_high]`` percentiles of a ``(C, Y, X)`` field.

    Every ``step``-th pixel in y and x is used; the result serves as viewer contrast limits.
    Left out: pixels at an integer dtype's maximum (saturated: artefacts would push the
    window to the top of the range and the nuclei to black) and pixels where ``exclude``
    (``(Y, X)`` bool, e.g. a known artefact mask) is true; a channel with nothing left keeps
    all its pixels.
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    sub = a[:, ::step, ::step].reshape(a.shape[0], -1)
    keep = np.ones(sub.shape[1], bool)
    if exclude is not None:
        keep &= ~np.asarray(exclude, bool)[::step, ::step].reshape(-1)
    top = np.iinfo(a.dtype).max if np.issubdtype(a.dtype, np.integer) else None
    out = []
    for ch in sub:
        ok = keep & (ch != top) if top is not None else keep
        vals = ch[ok] if ok.any() else ch
        lo, hi = np.percentile(vals, [low, high]) if vals.size else (0.0, 0.0)
        out.append([float(lo), float(hi)])
    return out


def data_windows(path: str | Path, keys: Iterable[FieldKeyLike]) -> list[list[float]] | None:
    """Per channel ``[start, end]`` contrast window of a plate's fields, from the data.

    The median over the fields of each field's 0.1 / 99.9 percentiles (:func:`intensity_range`,
    kept in the field's attributes when it was written; read from level 0 for a field written
    without them), robust to a few fields full of artefacts. ``end > start`` always. None
    for no field.
    """
    zarr = _zarr()
    ranges = []
    dtype = None
    for k in keys:
        k = FieldKey(*k)
        found = read_field_marker(path, k).get(RANGE_KEY)
        arr = None
        if not found or dtype is None:
            arr = zarr.open_array(str(Path(path) / k.path / "0"), mode="r")
            dtype = np.dtype(arr.dtype)
        if not found:
            assert arr is not None
            found = intensity_range(np.asarray(arr[0, :, 0]))
        ranges.append(found)
    if not ranges:
        return None
    med = np.median(np.asarray(ranges, dtype=np.float64), axis=0)  # (C, 2)
    top = float(np.iinfo(dtype).max) if dtype is not None and dtype.kind in "iu" else None
    out = []
    for lo, hi in med.tolist():
        if hi <= lo:  # a flat channel: a window one step wide, inside the dtype's range
            step = 1.0 if top is not None else max(abs(lo) * 1e-3, 1e-6)
            hi = lo + step
            if top is not None and hi > top:
                lo, hi = top - step, top
        out.append([float(lo), float(hi)])
    return out


def write_viewer_metadata(
    path: str | Path,
    keys: Iterable[FieldKeyLike],
    *,
    active: Sequence[str] | None = None,
    pixel_size: float | None = None,
    unit: str = "micrometer",
) -> None:
    """Make a finished plate viewer-ready.

    Windows from the data (:func:`data_windows`), only the channels ``active`` (names; all
    when None) switched on, the pixel size when known. What every command that writes a
    plate calls at its end.
    """
    fkeys = [FieldKey(*k) for k in keys]
    windows = data_windows(path, fkeys)
    flags = None
    if active is not None and fkeys:
        zarr = _zarr()
        ome = dict(zarr.open_group(str(Path(path) / fkeys[0].path), mode="r").attrs).get("ome", {})
        names = [str(c.get("label")) for c in ome.get("omero", {}).get("channels", [])]
        unknown = [a for a in active if a not in names]
        if unknown:
            raise PlateError(f"{path}: no channel {unknown[0]!r} to show (channels: {names})")
        flags = [n in active for n in names]
    set_display_metadata(
        path, fkeys, windows=windows, pixel_size=pixel_size, unit=unit, active=flags
    )


def set_display_metadata(
    path: str | Path,
    keys: Iterable,
    *,
    windows: Sequence[Sequence[float]] | None = None,
    pixel_size: float | None = None,
    unit: str = "micrometer",
    active: Sequence[bool] | None = None,
) -> None:
    """Write viewer metadata into the fields ``keys`` of a plate.

    The omero contrast window (``start``/``end``, per channel), which channels are shown
    (``active``, per channel) and the physical pixel size (the y/x scale of every level, and
    of the labels, with ``unit`` on the space axes).
    """
    zarr = _zarr()
    for k in keys:
        k = FieldKey(*k)
        g = zarr.open_group(str(Path(path) / k.path), mode="r+")
        ome = json.loads(json.dumps(dict(g.attrs).get("ome", {})))
        omero = ome.get("omero", {})
        if omero:
            rdefs = omero.setdefault("rdefs", {})
            rdefs.setdefault("model", "color")
            rdefs.setdefault("defaultT", 0)
            rdefs.setdefault("defaultZ", 0)
        if windows is not None:
            # strict=False: windows pair with channels by position; a field written without
            # omero channels keeps none (as before)
            for ch, (lo, hi) in zip(omero.get("channels", []), windows, strict=False):
                ch.setdefault("window", {})
                ch["window"]["start"], ch["window"]["end"] = float(lo), float(hi)
        if active is not None:
            for ch, on in zip(omero.get("channels", []), active, strict=False):
                ch["active"] = bool(on)
        if pixel_size is not None:
            _scale_multiscales(ome, pixel_size, unit)
        g.attrs.update({"ome": ome})
        if pixel_size is not None:
            lpath = Path(path) / k.path / "labels"
            for name in (
                json.loads((lpath / "zarr.json").read_text())
                .get("attributes", {})
                .get("ome", {})
                .get("labels", [])
                if (lpath / "zarr.json").exists()
                else []
            ):
                lg = zarr.open_group(str(lpath / name), mode="r+")
                lome = json.loads(json.dumps(dict(lg.attrs).get("ome", {})))
                _scale_multiscales(lome, pixel_size, unit)
                lg.attrs.update({"ome": lome})


def _scale_multiscales(ome: dict, pixel_size: float, unit: str) -> None:
    for ms in ome.get("multiscales", []):
        for ax in ms.get("axes", []):
            if ax.get("name") in ("y", "x"):  # z keeps no unit: no z step is known
                ax["unit"] = unit
        for lev, ds in enumerate(ms.get("datasets", [])):
            s = float(pixel_size) * 2**lev
            ds["coordinateTransformations"] = [{"type": "scale", "scale": [1.0, 1.0, 1.0, s, s]}]


def display_metadata(plate: Plate) -> dict:
    """Read the omero windows and pixel size of a plate's first field (for derived plates)."""
    if not plate.fields:
        return {}
    k = plate.fields[0]
    zarr = _zarr()
    ome = dict(zarr.open_group(str(plate.path / k.path), mode="r").attrs).get("ome", {})
    out: dict = {}
    chans = ome.get("omero", {}).get("channels", [])
    if chans:
        out["windows"] = [[c["window"]["start"], c["window"]["end"]] for c in chans]
    ms = (ome.get("multiscales") or [{}])[0]
    axes = ms.get("axes", [])
    unit = next((a.get("unit") for a in axes if a.get("type") == "space" and a.get("unit")), None)
    if unit:
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        out["pixel_size"], out["unit"] = float(scale[-1]), unit
    return out
