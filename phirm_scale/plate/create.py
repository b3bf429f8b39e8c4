"""New plates: :func:`create_plate`, :func:`create_plate_like` and their layout writers.

Also :func:`remove_store`, which deletes only stores phirm-scale wrote.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from phirm_scale.errors import OutputError, PlateError
from phirm_scale.outputs import ATTRS_KEY, store_command
from phirm_scale.plate.fields import _create_field_group
from phirm_scale.plate.keys import FieldKey, FieldKeyLike
from phirm_scale.plate.ngff import _zarr
from phirm_scale.plate.store import Plate, display_metadata, open_plate
from phirm_scale.plate.viewer import set_display_metadata


def remove_store(path: str | Path) -> None:
    """Delete a store written by phirm-scale.

    Anything else is refused: plates from other software, TIFF folders, foreign stores and
    folders.
    """
    _prepare_output(Path(path), overwrite=True)


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
