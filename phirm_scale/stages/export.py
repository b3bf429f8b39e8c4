"""Export stage: a plate's fields back to TIFFs in its source's naming, plus a LoadData CSV.

For CellProfiler and every other tool that reads a folder of TIFFs: each field and channel
of the plate becomes one TIFF holding exactly the plate's pixels (same dtype; the pixel
size, when the plate has one in micrometres, as OME-XML ``PhysicalSizeX/Y``), and
``load_data.csv`` lists them as CellProfiler's LoadData module reads them (one row per field:
``FileName_<channel>``, ``PathName_<channel>`` for every channel, then ``Metadata_Plate``,
``Metadata_Well``, ``Metadata_Row``, ``Metadata_Column``, ``Metadata_Site``).

File names follow the source's layout, read from the plate's provenance: a converted plate
records its layout (``phirm_scale.convert.layout``) and each field the file names it came
from (``source``, relative to the source folder); a restored plate records the plate it was
made from (``phirm_scale.inpaint.source``), which is followed. When the original names are
known, the export uses them, so a pipeline made for the source folder reads the export
unchanged (ImageXpress in, ImageXpress out). Otherwise the names are made in the layout
found (``imagexpress``: ``{plate}_{well}_s{site}_w{channel}.tif``; ``cellomics``:
``{plate}_{well}f{site:02d}d{channel}.tif``), ImageXpress when none is (a synthetic plate,
a ``--pattern`` source).

The output folder is written as ``<out>.partial`` and renamed when complete; an existing
non-empty folder is refused unless it is an earlier export and ``overwrite`` is given. The
plate, the plates it was made from and the source folder are never written.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from phirm_scale.errors import PlateError

if TYPE_CHECKING:
    from distributed import Client

    from phirm_scale.plate import FieldKey, Plate

__all__ = ["ExportPlan", "ExportTask", "LOAD_FILE", "export_plate", "plan_export"]

#: Name of the CellProfiler LoadData file written beside the TIFFs.
LOAD_FILE = "load_data.csv"


@dataclass(frozen=True)
class ExportPlan:
    """What an export writes, decided before anything is (:func:`plan_export`).

    ``layout`` is the naming used (the source's layout, or ``imagexpress``); ``names`` maps
    each field to one relative file name per channel (channel order); ``sites`` each field to
    its site number in those names; ``plate_name`` is the plate's name (``Metadata_Plate``);
    ``inputs`` are the plates followed and the source folder, never to be written.
    """

    layout: str
    plate_name: str
    names: dict
    sites: dict
    inputs: tuple


@dataclass(frozen=True)
class ExportTask:
    """One field to write: its plate, key and one file name per channel (channel order)."""

    plate: str
    key: tuple  # (row, column, field)
    out: str  # folder the names are relative to
    names: tuple  # one relative file name per channel
    pixel_size: float | None = None  # micrometres, written as OME-XML PhysicalSizeX/Y


def _export_field(task: ExportTask) -> int:
    """Write one field's channels as TIFFs; returns the number of files written."""
    import tifffile

    from phirm_scale.plate import open_field_view

    data = open_field_view(task.plate, task.key).read_field(task.key)
    meta: dict[str, Any] = {}
    if task.pixel_size is not None:  # the pixel size travels (convert reads it back)
        px = float(task.pixel_size)
        meta = {
            "ome": True,
            "metadata": {
                "axes": "YX",
                "PhysicalSizeX": px,
                "PhysicalSizeY": px,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeYUnit": "µm",
            },
        }
    for c, name in enumerate(task.names):
        f = Path(task.out) / name
        f.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(f, np.ascontiguousarray(data[c]), photometric="minisblack", **meta)
    return len(task.names)


# ----------------------------------------------------------------------------- naming
def _provenance(plate: Plate) -> tuple[dict[str, Any] | None, Plate | None, list[Plate]]:
    """Follow the plate's provenance to a converted plate.

    Returns its ``convert`` record and the converted plate (or None, None) and every plate
    passed on the way (the inputs the export must never write).
    """
    from phirm_scale.plate import ATTRS_KEY, open_plate

    chain = [plate]
    p = plate
    for _ in range(8):  # a restored plate of a restored plate ...
        mine = p.attrs.get(ATTRS_KEY, {}) or {}
        if isinstance(mine.get("convert"), Mapping):
            return dict(mine["convert"]), p, chain
        src = (mine.get("inpaint") or {}).get("source") if isinstance(mine, Mapping) else None
        if not src or not Path(src).exists():
            break
        try:
            p = open_plate(src)
        except PlateError:
            break
        chain.append(p)
    return None, None, chain


def _well(key: FieldKey) -> str:
    col = int(key.column) if key.column.isdigit() else key.column
    return f"{key.row}{col:02d}" if isinstance(col, int) else f"{key.row}{col}"


def _safe_relative(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name


def plan_export(plate: Plate) -> ExportPlan:
    """Name every file of an export of ``plate`` (nothing is written).

    PlateError when two files would get one name.
    """
    record, converted, chain = _provenance(plate)
    inputs = [p.path for p in chain]
    layout = "imagexpress"
    channel_ids: dict[str, str] = {}
    plate_name = file_plate = plate.name
    if record is not None and converted is not None:
        if record.get("source"):
            inputs.append(Path(str(record["source"])))
        layout = str(record.get("layout") or "imagexpress")
        channel_ids = {str(k): str(v) for k, v in (record.get("channels") or {}).items()}
        plate_name = converted.name
        # the plate part of the source's file names, where convert records it apart
        file_plate = str(record.get("plate_in_names") or plate_name)
    # names are made in the source's layout when it is a named one (a regex cannot be
    # written backwards; a synthetic plate has none): ImageXpress otherwise
    made = layout if layout in ("imagexpress", "cellomics") else "imagexpress"
    names: dict[FieldKey, tuple[str, ...]] = {}
    sites: dict[FieldKey, int] = {}
    converted_fields = set(converted.fields) if converted is not None else set()
    n_recorded = n_made = 0
    for k in plate.fields:
        recorded: dict[str, str] = {}
        site: int | None = None
        if converted is not None and k in converted_fields:
            fa = converted.field_attrs(k).get("phirm_scale", {}) or {}
            src = fa.get("source")
            if isinstance(src, list) and len(src) == len(converted.channel_names):
                recorded = {
                    ch: str(n)
                    for ch, n in zip(converted.channel_names, src, strict=True)
                    if _safe_relative(str(n))
                }
            if isinstance(fa.get("site"), int):
                site = int(fa["site"])
        if site is None:  # ImageXpress sites count from 1, Cellomics fields from 0
            site = k.field if made == "cellomics" else k.field + 1
        sites[k] = site
        row: list[str] = []
        for i, ch in enumerate(plate.channel_names):
            if ch in recorded:
                row.append(recorded[ch])
                n_recorded += 1
            elif made == "cellomics":
                cid = channel_ids.get(ch, str(i))
                row.append(f"{file_plate}_{_well(k)}f{site:02d}d{cid}.tif")
                n_made += 1
            else:
                row.append(
                    f"{file_plate}_{_well(k)}_s{site}_w{channel_ids.get(ch, str(i + 1))}.tif"
                )
                n_made += 1
        names[k] = tuple(row)
    seen: dict[str, tuple[FieldKey, str]] = {}
    for k, files in names.items():
        for ch, n in zip(plate.channel_names, files, strict=True):
            other = seen.setdefault(n.lower(), (k, ch))
            if other != (k, ch):
                raise PlateError(
                    f"{plate.path}: field {k} channel {ch} and field {other[0]} channel "
                    f"{other[1]} would both be exported as {n}"
                )
    return ExportPlan(
        layout=layout if n_recorded and not n_made else made,
        plate_name=plate_name,
        names=names,
        sites=sites,
        inputs=tuple(inputs),
    )


def _column_name(channel: str, used: set[str]) -> str:
    """Make a channel's CellProfiler image name: letters, digits and underscores, unique."""
    base = re.sub(r"\W", "_", channel, flags=re.ASCII).strip("_") or "channel"
    if base[0].isdigit():
        base = "C" + base
    name, i = base, 2
    while name.lower() in used:
        name, i = f"{base}_{i}", i + 1
    used.add(name.lower())
    return name


def _write_load_data(
    path: Path, final: Path, channels: Sequence[str], plan: ExportPlan
) -> list[str]:
    """Write the LoadData CSV: paths name the final folder (not ``.partial``)."""
    used: set[str] = set()
    cols = [_column_name(c, used) for c in channels]
    header = [x for c in cols for x in (f"FileName_{c}", f"PathName_{c}")]
    header += ["Metadata_Plate", "Metadata_Well", "Metadata_Row", "Metadata_Column"]
    header += ["Metadata_Site"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for k, row in plan.names.items():
            cells: list[Any] = []
            for n in row:
                rel = PurePosixPath(n)
                cells += [rel.name, str(final.joinpath(*rel.parent.parts))]
            col = int(k.column) if k.column.isdigit() else k.column
            cells += [plan.plate_name, _well(k), k.row, col, plan.sites[k]]
            w.writerow(cells)
    return cols


# ------------------------------------------------------------------------------ the stage
def export_plate(
    plate: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    cluster: str | Client = "threads",
    progress: bool = True,
) -> dict[str, Any]:
    """Write every field of ``plate`` as TIFFs into the folder ``out`` (see the module).

    Parameters
    ----------
    plate : str or Path
        An OME-Zarr HCS plate (restored, converted, synthetic: any).
    out : str or Path
        Output folder: absent, empty, or (with ``overwrite``) an earlier export.
    overwrite : bool
        Replace an earlier export at ``out``.
    cluster : str or distributed.Client
        Where the fields are written (``--cluster``).
    progress : bool
        Progress display on stderr.

    Returns
    -------
    dict
        ``out``, ``load_data`` (the CSV), ``layout``, ``fields``, ``files``, ``channels``
        (the CellProfiler image names, channel order).
    """
    from phirm_scale.outputs import atomic_store, guard_output, mark_folder
    from phirm_scale.plate import display_metadata, open_plate
    from phirm_scale.stages._runner import run_tasks

    p = open_plate(plate)
    missing = p.missing_fields()
    if missing:
        raise PlateError(
            f"{p.path}: {len(missing)} field(s) not completely written (first {missing[0]}); "
            "finish the command that writes them before exporting"
        )
    plan = plan_export(p)
    disp = display_metadata(p)
    pixel_size = disp.get("pixel_size") if disp.get("unit") == "micrometer" else None
    out = Path(out)
    final = out.expanduser().absolute()
    with guard_output(out, command="export", inputs=plan.inputs, overwrite=overwrite, remove=False):
        with atomic_store(out) as tmp:
            tmp.mkdir(parents=True)
            tasks = [
                ExportTask(str(p.path), tuple(k), str(tmp), plan.names[k], pixel_size)
                for k in p.fields
            ]
            counts = run_tasks(
                _export_field, tasks, cluster=cluster, progress=progress, description="export"
            )
            cols = _write_load_data(tmp / LOAD_FILE, final, p.channel_names, plan)
            mark_folder(tmp, "export")
    return {
        "out": str(out),
        "load_data": str(out / LOAD_FILE),
        "layout": plan.layout,
        "fields": len(tasks),
        "files": int(sum(counts)),
        "channels": cols,
    }
