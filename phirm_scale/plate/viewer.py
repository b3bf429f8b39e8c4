"""Viewer metadata: contrast windows from the data, shown channels, pixel size.

:func:`intensity_range` (a field's robust per-channel range, kept when it is written),
:func:`data_windows` (a plate's windows from those), :func:`write_viewer_metadata` (what every
command that writes a plate calls at its end) and :func:`set_display_metadata`, which writes
the omero windows and the pixel size (read back by
:func:`~phirm_scale.plate.store.display_metadata`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from phirm_scale.errors import PlateError
from phirm_scale.plate.keys import FieldKey, FieldKeyLike
from phirm_scale.plate.markers import read_field_marker
from phirm_scale.plate.ngff import RANGE_KEY, _zarr


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
