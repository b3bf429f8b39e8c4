"""Convert a folder of microscope TIFFs into an OME-Zarr HCS plate, one Dask task per field.

Steps:

1. :func:`plan_conversion` lists and parses every TIFF (:mod:`phirm_scale.layouts`), groups
   them into fields, and validates everything before a byte is written: readable TIFF
   headers with data inside the file, one shape and dtype for the whole plate, no duplicate
   (well, field, channel), no field missing a channel, one plate, one time point / z step.
2. :func:`convert` writes groups, well and field metadata and empty arrays, then one task per
   field reads its TIFFs and writes its chunks (one writer per chunk) and marks the field
   complete; the root ``ome.plate`` metadata is written last. A killed run leaves no plate
   metadata; run again on the same source, it converts only the fields not marked complete
   and ends identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from phirm_scale.errors import OutputError, PhirmError, PlateError
from phirm_scale.imageio import quiet_tifffile
from phirm_scale.layouts import ImageRecord, read_harmony_index, scan_folder
from phirm_scale.plate import ATTRS_KEY, FieldKey, row_index, row_name
from phirm_scale.stages._runner import run_tasks
from phirm_scale.validation import check_image

if TYPE_CHECKING:
    from phirm_scale.plate import Plate

__all__ = [
    "ConversionPlan",
    "ConvertTask",
    "plan_conversion",
    "convert",
    "conversion_complete",
    "read_tiff",
    "tiff_pixel_size",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- planning


@dataclass
class ConversionPlan:
    """Everything :func:`convert` needs, validated."""

    source: Path
    layout: str
    pattern: str | None
    name: str
    rows: list[str]
    columns: list[str]
    channel_ids: list[str]
    channel_names: list[str]
    shape: tuple[int, int]
    dtype: np.dtype
    fields: dict[FieldKey, list[Path]] = dc_field(default_factory=dict)
    sites: dict[FieldKey, int] = dc_field(default_factory=dict)
    fingerprint: str = ""
    timepoint: int = 1
    zstep: int = 1
    pixel_size: float | None = None  # micrometres, from the first TIFF's metadata
    plate_in_names: str | None = None  # the plate name the file names carry, if any

    @property
    def wells(self) -> list[tuple[str, str]]:
        """The (row, column) of every well with a field, in plate order."""
        return sorted(
            {(k.row, k.column) for k in self.fields}, key=lambda w: (row_index(w[0]), w[1])
        )

    @property
    def n_files(self) -> int:
        """Count the TIFF files of all fields."""
        return sum(len(v) for v in self.fields.values())

    def summary(self) -> str:
        """Describe what was found in a few lines (printed before writing)."""
        per_well = Counter((k.row, k.column) for k in self.fields)
        counts = Counter(per_well.values())
        fpw = ", ".join(f"{n} well(s) x {f}" for f, n in sorted(counts.items()))
        chans = ", ".join(
            f"{i}->{n}" for i, n in zip(self.channel_ids, self.channel_names, strict=True)
        )
        used_rows = sorted({r for r, _ in per_well}, key=row_index)
        used_cols = sorted({c for _, c in per_well})
        said = (
            f" (file names say {self.plate_in_names!r})"
            if self.plate_in_names and self.plate_in_names != self.name
            else ""
        )
        return (
            f"layout {self.layout}: plate {self.name!r}{said}, {len(per_well)} wells "
            f"(rows {used_rows[0]}-{used_rows[-1]}, columns {used_cols[0]}-"
            f"{used_cols[-1]}), {len(self.fields)} fields ({fpw} fields), "
            f"channels [{chans}], {self.shape[0]}x{self.shape[1]} {self.dtype}, "
            f"{self.n_files} files"
        )

    def record(self) -> dict[str, Any]:
        """Return the provenance stored in the plate (``phirm_scale.convert``), run independent."""
        return {
            "source": str(self.source),
            "layout": self.layout,
            "pattern": self.pattern,
            "plate_in_names": self.plate_in_names,
            "channels": dict(zip(self.channel_names, self.channel_ids, strict=True)),
            "timepoint": self.timepoint,
            "zstep": self.zstep,
            "n_files": self.n_files,
            "fingerprint": self.fingerprint,
        }


def _tiff_header(path: Path) -> tuple[tuple[int, int], np.dtype[Any]]:
    """Shape and dtype of a TIFF's image, checking its data lies inside the file."""
    import tifffile

    try:
        size = path.stat().st_size
        with quiet_tifffile(), tifffile.TiffFile(path) as tf:
            if not tf.pages:
                raise ValueError("no image")
            series = tf.series[0]
            shape = tuple(int(s) for s in series.shape)
            dtype = np.dtype(series.dtype)
            for page in tf.pages:
                offs = getattr(page, "dataoffsets", ()) or ()
                counts = getattr(page, "databytecounts", ()) or ()
                # strict=False: a damaged page may list fewer counts than offsets; the pairs
                # it has are checked, as before
                for o, c in zip(offs, counts, strict=False):
                    if o + c > size:
                        raise ValueError(
                            f"truncated: image data ends at byte {o + c}, file has {size}"
                        )
    except PlateError:
        raise
    except Exception as exc:
        raise PlateError(f"{path}: unreadable TIFF ({_one_line(exc)})") from exc
    squeezed = tuple(s for s in shape if s != 1)
    if len(squeezed) != 2:
        raise PlateError(f"{path}: expected one 2-D image, got shape {shape}")
    return (squeezed[0], squeezed[1]), dtype


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())[:300]


def read_tiff(
    path: str | Path, shape: tuple[int, int] | None = None, dtype: npt.DTypeLike | None = None
) -> np.ndarray:
    """Read a single 2-D TIFF image; PlateError naming the file when it is unusable."""
    import tifffile

    path = Path(path)
    try:
        with quiet_tifffile():
            a = tifffile.imread(path)
    except Exception as exc:
        raise PlateError(f"{path}: unreadable TIFF ({_one_line(exc)})") from exc
    a = check_image(np.squeeze(a), str(path), allow_empty=True, kinds=None, error=PlateError)
    if shape is not None and a.shape != tuple(shape):
        raise PlateError(f"{path}: image is {a.shape}, plate fields are {tuple(shape)}")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise PlateError(f"{path}: image is {a.dtype}, plate is {np.dtype(dtype)}")
    return a


def _fingerprint(source: Path, files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f.relative_to(source)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def source_plate_name(source: str | Path) -> str:
    """Name a plate after its source: the folder's name, less ``.ome.zarr`` / ``.zarr``.

    The one rule ``convert`` and ``run`` share (``run`` names each plate's outputs after it).
    """
    name = Path(source).name
    for suffix in (".ome.zarr", ".zarr"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _channel_sort_key(c: str) -> tuple[int, int, str]:
    return (0, int(c), c) if c.isdigit() else (1, 0, c)


def plan_conversion(
    source: str | Path,
    *,
    layout: str = "auto",
    pattern: str | None = None,
    plate_name: str | None = None,
    channel_names: Sequence[str] | None = None,
    timepoint: int | None = None,
    zstep: int | None = None,
    threads: int = 8,
) -> ConversionPlan:
    """Scan and validate a source folder; nothing is written.

    Parameters
    ----------
    source : str or Path
        Folder of TIFFs.
    layout : {'auto', 'imagexpress', 'cellomics', 'operetta', 'cellvoyager', 'regex'}
        See :mod:`phirm_scale.layouts`.
    pattern : str, optional
        Regular expression with named groups ``field``, ``channel`` and ``well`` or ``row``
        + ``col`` (``plate``, ``timepoint``, ``zstep``).
    plate_name : str, optional
        Plate name; default the source folder's name (:func:`source_plate_name`, as ``run``
        names it); a plate name in the file names is recorded as ``plate_in_names``.
    channel_names : sequence of str, optional
        Names of the channels, in channel order; default those of a Harmony index
        (Operetta / Opera Phenix), else w1, w2, ... / d0, d1, ... / ch1, ... / C01, ...
    timepoint, zstep : int, optional
        Which time point / z step to take when the folder holds several (``TimePoint_N`` /
        ``ZStep_N`` folders, or the name's own: Operetta ``sk`` / ``p``, CellVoyager ``T`` /
        ``Z``).
    threads : int
        Threads reading TIFF headers.

    Raises
    ------
    PlateError
        One line naming the offending file: unreadable or truncated TIFF, mixed shapes or
        dtypes, duplicate (well, field, channel), a field missing a channel, names matching
        no layout, several plates.
    """
    source = Path(source).resolve()
    lay, records = scan_folder(source, layout, pattern)

    # time points / z steps
    for attr, chosen, label in (("timepoint", timepoint, "TimePoint"), ("zstep", zstep, "ZStep")):
        values = sorted({getattr(r, attr) for r in records})
        if chosen is not None:
            records = [r for r in records if getattr(r, attr) == chosen]
            if not records:
                raise PlateError(
                    f"{source}: no file in {label}_{chosen} (found {', '.join(map(str, values))})"
                )
        elif len(values) > 1:
            raise PlateError(
                f"{source}: files of {len(values)} {label}s ({label}_{values[0]}.."
                f"{label}_{values[-1]}); choose one with --{attr}"
            )
    tp = records[0].timepoint
    zs = records[0].zstep

    # one plate
    plates = sorted({r.plate for r in records if r.plate is not None})
    if len(plates) > 1:
        other = next(r for r in records if r.plate == plates[1])
        raise PlateError(
            f"{other.path}: belongs to plate {plates[1]!r}, other files to "
            f"{plates[0]!r}; convert one plate per folder (or use --pattern)"
        )
    # one naming rule for convert and run: the plate is named after its source folder (run
    # names its per-plate outputs so), or --plate-name; a plate name in the file names
    # (ImageXpress' "IXMtest") is kept in the provenance as ``plate_in_names``
    name = plate_name or source_plate_name(source)

    index = read_harmony_index(source, records[0].path) if lay.name == "operetta" else None

    # duplicates
    seen: dict[tuple, ImageRecord] = {}
    for r in records:
        k = (r.row, r.column, r.site, r.channel)
        if k in seen:
            raise PlateError(
                f"{r.path}: duplicate of {seen[k].path.name} (well "
                f"{r.row}{r.column:02d}, site {r.site}, channel {r.channel})"
            )
        seen[k] = r

    # channels
    chan_ids = sorted({r.channel for r in records}, key=_channel_sort_key)
    by_field: dict[tuple, dict[str, ImageRecord]] = {}
    for r in records:
        by_field.setdefault((r.row, r.column, r.site), {})[r.channel] = r
    for (row, col, fld), chans in sorted(by_field.items()):
        missing = [c for c in chan_ids if c not in chans]
        if missing:
            some = next(iter(chans.values()))
            raise PlateError(
                f"{some.path}: well {row}{col:02d} site {fld} has no file for "
                f"channel(s) {', '.join(missing)} (channels found: "
                f"{', '.join(chan_ids)})"
            )
    if channel_names is not None:
        channel_names = [str(c).strip() for c in channel_names]
        if len(channel_names) != len(chan_ids):
            raise PlateError(
                f"{source}: {len(channel_names)} channel names "
                f"({','.join(channel_names)}) for {len(chan_ids)} channels "
                f"({', '.join(chan_ids)})"
            )
        if len(set(channel_names)) != len(channel_names) or not all(channel_names):
            raise PlateError(
                f"{source}: channel names must be unique and non-empty: {','.join(channel_names)}"
            )
    else:
        # Harmony's index names Operetta / Opera Phenix channels; otherwise w1, d0, ch1, C01
        named = index.channels if index is not None else {}
        channel_names = [named.get(c) or f"{lay.channel_prefix}{c}" for c in chan_ids]
        if len(set(channel_names)) != len(channel_names):  # an index naming two alike
            channel_names = [f"{lay.channel_prefix}{c}" for c in chan_ids]

    # headers: readable, shapes and dtypes consistent
    paths = [r.path for r in records]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
        headers = list(ex.map(_tiff_header, paths))
    kinds = Counter(headers)
    (shape, dtype), _ = kinds.most_common(1)[0]
    for p, (s, d) in zip(paths, headers, strict=True):
        if (s, d) != (shape, dtype):
            ref = paths[headers.index((shape, dtype))]
            raise PlateError(
                f"{p}: image is {s[0]}x{s[1]} {d}, other files are "
                f"{shape[0]}x{shape[1]} {dtype} (e.g. {ref.name}); one plate "
                "needs one shape and dtype"
            )

    # grid
    max_row = max(row_index(r.row) for r in records)
    max_col = max(r.column for r in records)
    width = max(2, len(str(max_col)))
    rows = [row_name(i) for i in range(max_row + 1)]
    columns = [str(c).zfill(width) for c in range(1, max_col + 1)]
    fields: dict[FieldKey, list[Path]] = {}
    sites: dict[FieldKey, int] = {}
    per_well: dict[tuple[str, int], int] = {}
    for (row, col, site), chans in sorted(
        by_field.items(), key=lambda kv: (row_index(kv[0][0]), *kv[0][1:])
    ):
        idx = per_well.get((row, col), 0)  # fields 0, 1, ... of a well in site order
        per_well[(row, col)] = idx + 1
        key = FieldKey(row, str(col).zfill(width), idx)
        fields[key] = [chans[c].path for c in chan_ids]
        sites[key] = site
    return ConversionPlan(
        source=source,
        layout=lay.name,
        pattern=pattern if lay.name == "regex" else None,
        name=name,
        rows=rows,
        columns=columns,
        channel_ids=chan_ids,
        channel_names=list(channel_names),
        shape=shape,
        dtype=np.dtype(dtype),
        fields=fields,
        sites=sites,
        fingerprint=_fingerprint(source, paths),
        timepoint=tp,
        zstep=zs,
        pixel_size=tiff_pixel_size(paths[0]) or (index.pixel_size if index else None),
        plate_in_names=plates[0] if plates else None,
    )


# --------------------------------------------------------------------------- running

# The runner lives in phirm_scale.stages._runner (shared by every per-field stage);
# it is re-exported here for callers of the convert API.


@dataclass(frozen=True)
class ConvertTask:
    """Arguments of one convert task: the TIFFs of one field and where they go."""

    out: str
    key: tuple  # (row, column, field)
    files: tuple  # one path per channel, channel order
    shape: tuple
    dtype: str
    channel_names: tuple
    n_levels: int
    rel_names: tuple  # files relative to the source folder (recorded in the field)
    site: int


def _convert_field(task: ConvertTask) -> tuple[Any, ...]:
    """Run one task: read a field's TIFFs, write its levels and mark the field complete.

    Only the field's own group is created.
    """
    from phirm_scale.plate import _write_field_data

    data = np.stack([read_tiff(f, task.shape, task.dtype) for f in task.files])
    _write_field_data(
        task.out,
        FieldKey(*task.key),
        data,
        channel_names=list(task.channel_names),
        dtype=task.dtype,
        shape=task.shape,
        n_levels=task.n_levels,
        field_attrs={
            "source": list(task.rel_names),
            "site": task.site,
        },  # + the data's intensity range (plate.RANGE_KEY), for the viewer windows
        create=True,
    )
    return tuple(task.key)


def _write_display_metadata(out: Path, keys: Sequence[FieldKey], plan: ConversionPlan) -> None:
    """Write the omero windows and pixel size of every field.

    The windows are the median over the plate's fields of each field's 0.1 / 99.9
    percentiles per channel (:func:`phirm_scale.plate.data_windows`: robust to a few bright
    artefact fields); the pixel size comes from the TIFF metadata when it has one.
    """
    from phirm_scale.plate import write_viewer_metadata

    write_viewer_metadata(out, keys, pixel_size=plan.pixel_size)


def check_pixel_size(pixel_size: float | None) -> None:
    """Refuse a ``--pixel-size`` that is not a finite number > 0 (PlateError, one line)."""
    import math

    if pixel_size is not None and not (math.isfinite(pixel_size) and pixel_size > 0):
        raise PlateError(f"--pixel-size must be a number of micrometres > 0, got {pixel_size}")


def tiff_pixel_size(path: str | Path) -> float | None:
    """Read the pixel size in micrometres from a TIFF's metadata, or None.

    Sources: MetaMorph calibration, OME-XML ``PhysicalSizeX``.
    """
    import re as _re

    import tifffile

    try:
        with quiet_tifffile(), tifffile.TiffFile(path) as tf:
            page = tf.pages.first
            uic = page.tags.get("UIC1tag")
            if uic is not None and isinstance(uic.value, dict):
                v = uic.value
                if (
                    v.get("SpatialCalibration")
                    and v.get("XCalibration")
                    and str(v.get("CalibrationUnits", "um")).lower() in ("um", "µm", "micron")
                ):
                    return float(v["XCalibration"])
            if tf.ome_metadata:
                m = _re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tf.ome_metadata)
                if m:
                    return float(m.group(1))
    except Exception:  # noqa: BLE001 - metadata is optional
        return None
    return None


# --------------------------------------------------------------------------- convert


def convert(
    source: str | Path,
    out: str | Path,
    *,
    layout: str = "auto",
    pattern: str | None = None,
    plate_name: str | None = None,
    channel_names: Sequence[str] | None = None,
    cluster: Any = "local",
    overwrite: bool = False,
    n_levels: int = 1,
    timepoint: int | None = None,
    zstep: int | None = None,
    progress: bool = True,
    max_fields: int | None = None,
    pixel_size: float | None = None,
) -> Plate | None:
    """Convert a TIFF folder into an NGFF 0.5 HCS plate; returns the opened plate.

    Parameters
    ----------
    source : str or Path
        Folder of TIFFs (see :func:`plan_conversion` for ``layout``, ``pattern``,
        ``plate_name``, ``channel_names``, ``timepoint``, ``zstep``).
    out : str or Path
        Output ``*.ome.zarr``. An existing output is refused unless ``overwrite`` or it is an
        unfinished (or finished) conversion of the same, unchanged source, which is resumed.
    cluster : str or distributed.Client
        ``--cluster`` spec (``'local'`` default, ``'threads'``, an address, a YAML file),
        opened and closed here, or an open client (left open).
    n_levels : int
        Multiscale levels (level 0 plus ``n_levels - 1`` downsampled by 2 each).
    progress : bool
        Show a progress bar (stderr, :func:`phirm_scale.progress.progress_bar`). What was
        found, and what a rerun skips, are logged (``phirm_scale.stages.convert``, info).
    max_fields : int, optional
        Convert at most this many missing fields, then stop without writing the plate
        metadata (like a killed run; a later call resumes). For tests and staged runs.
    pixel_size : float, optional
        Pixel size in micrometres (viewer metadata), instead of the one the TIFF metadata
        or a Harmony index give; without either, none is written.

    Returns
    -------
    phirm_scale.plate.Plate or None
        None when ``max_fields`` stopped the conversion before the end.
    """
    from phirm_scale.outputs import check_not_input, existing_output, output_lock, remove_output
    from phirm_scale.plate import read_root_attrs

    if n_levels < 1:
        raise PlateError(f"--levels must be >= 1, got {n_levels}")
    check_pixel_size(pixel_size)
    out = Path(out)
    check_not_input(out, [source])
    existing_output(out, command="convert", overwrite=overwrite)  # refused before planning
    with output_lock(out, command="convert"):
        ours = existing_output(out, command="convert", overwrite=overwrite)
        plan = plan_conversion(
            source,
            layout=layout,
            pattern=pattern,
            plate_name=plate_name,
            channel_names=channel_names,
            timepoint=timepoint,
            zstep=zstep,
        )
        log.info("%s", plan.summary())
        if pixel_size is not None:
            plan.pixel_size = float(pixel_size)
        record = plan.record()
        record["levels"] = int(n_levels)
        if pixel_size is not None:  # recorded only when given: older records stay equal
            record["pixel_size"] = float(pixel_size)
        if ours and overwrite:  # only once the new source checked out
            remove_output(out, command="convert")
        resume = ours and not overwrite
        if resume:
            prev = (read_root_attrs(out) or {}).get(ATTRS_KEY, {}).get("convert")
            if prev != record:
                raise OutputError(
                    f"{out}: output exists, converted from another source or "
                    f"options ({(prev or {}).get('source')}); use --overwrite to "
                    "replace it"
                )
        return _run_convert(plan, out, record, resume, n_levels, max_fields, cluster, progress)


def conversion_complete(out: str | Path) -> bool:
    """Whether ``out`` is a finished conversion: plate metadata written, every field complete.

    :func:`convert` into such an output, from the same source with the same options, writes
    nothing (it logs ``...; nothing to do``, info); ``convert --json`` reports ``up_to_date``.

    Parameters
    ----------
    out : str or Path
        A path that may hold a plate written by :func:`convert`.

    Returns
    -------
    bool
        False for a missing, unfinished or foreign store.
    """
    from phirm_scale.outputs import store_command
    from phirm_scale.plate import field_done, open_plate, read_root_attrs

    out = Path(out)
    if store_command(out) != "convert" or "ome" not in (read_root_attrs(out) or {}):
        return False
    try:
        keys = open_plate(out).fields
    except PhirmError:
        return False
    return all(field_done(out, k) for k in keys)


def _run_convert(
    plan: ConversionPlan,
    out: Path,
    record: dict[str, Any],
    resume: bool,
    n_levels: int,
    max_fields: int | None,
    cluster: Any,
    progress: bool,
) -> Plate | None:
    from phirm_scale.outputs import marker_attrs
    from phirm_scale.plate import (
        _create_layout,
        _write_plate_metadata,
        field_done,
        open_plate,
    )

    fkeys = list(plan.fields)
    if resume and conversion_complete(out):  # ours, same source and options: every field
        log.info("%s: already converted from this source; nothing to do", out)
        return open_plate(out)
    _create_layout(
        out,
        rows=plan.rows,
        columns=plan.columns,
        fields=fkeys,
        channel_names=plan.channel_names,
        shape=plan.shape,
        dtype=plan.dtype,
        name=plan.name,
        n_levels=n_levels,
        attrs={ATTRS_KEY: {**marker_attrs("convert"), "convert": record}},
        plate_metadata=False,
        skip_existing=resume,
        create_fields=False,
    )
    todo = [k for k in fkeys if not (resume and field_done(out, k))]
    if resume:
        log.info("%s: resuming, %d of %d fields left", out, len(todo), len(fkeys))
    stop_early = max_fields is not None and max_fields < len(todo)
    if max_fields is not None:
        todo = todo[: max(0, int(max_fields))]
    tasks = [
        ConvertTask(
            str(out),
            tuple(k),
            tuple(str(p) for p in plan.fields[k]),
            tuple(plan.shape),
            plan.dtype.str,
            tuple(plan.channel_names),
            int(n_levels),
            tuple(str(p.relative_to(plan.source)) for p in plan.fields[k]),
            int(plan.sites[k]),
        )
        for k in todo
    ]
    run_tasks(_convert_field, tasks, cluster=cluster, progress=progress, description="convert")
    if stop_early:
        return None
    undone = [k for k in fkeys if not field_done(out, k)]
    if undone:  # pragma: no cover - tasks raise before this
        raise PlateError(f"{out}: field {undone[0]} was not written; run again to resume")
    _write_display_metadata(out, fkeys, plan)
    field_count = max(Counter((k.row, k.column) for k in fkeys).values())
    _write_plate_metadata(
        out,
        rows=plan.rows,
        columns=plan.columns,
        wells=plan.wells,
        name=plan.name,
        field_count=field_count,
    )
    return open_plate(out)
