"""The :class:`Plate` on disk: metadata, fields and labels read, fields and labels written.

Also :func:`display_metadata`, a plate's viewer windows and pixel size read back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from phirm_scale.errors import PlateError
from phirm_scale.outputs import ATTRS_KEY
from phirm_scale.plate.fields import _checked_array, _read_one, _write_field_data
from phirm_scale.plate.keys import FieldKey, FieldKeyLike
from phirm_scale.plate.ngff import (
    _ALL_CHUNKS,
    _AXES,
    _DIMS,
    _LABEL_TITLES,
    NGFF_VERSION,
    _compressor,
    _multiscales,
    _zarr,
    label_color,
)

if TYPE_CHECKING:
    import dask.array as da


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
