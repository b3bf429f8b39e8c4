"""Source-folder layouts: which TIFF holds which (well, field, channel).

Five layouts are understood:

``imagexpress``
    ImageXpress / MetaXpress: ``{plate}_{well}_s{site}_w{channel}{GUID?}.tif``, the site and
    channel parts optional (one site / one channel acquisitions), in ``TimePoint_N`` /
    ``ZStep_N`` sub-folders or not; ``_thumb`` files are skipped.
``cellomics``
    Cellomics / CellInsight: ``{plate}_{well}f{field}d{channel}.tif``.
``operetta``
    PerkinElmer / Revvity Operetta and Opera Phenix (Harmony export):
    ``r{row}c{col}f{field}p{plane}-ch{channel}sk{timepoint}fk{n}fl{n}.tiff``, row and column
    as numbers (``r02c03`` is well B03), the plane the z step, ``sk`` the time point. An
    ``Index.idx.xml`` or ``Index.xml`` beside the images (or in the source folder) names the
    channels (``ChannelName`` per ``ChannelID``) and gives the pixel size
    (``ImageResolutionX``); without one the channels are ``ch1``, ``ch2``, ...
``cellvoyager``
    Yokogawa CellVoyager CV7000 / CV8000:
    ``{plate}_{well}_T{timepoint}F{field}L{timeline}A{action}Z{zstep}C{channel}.tif``, e.g.
    ``AssayPlate_B03_T0001F001L01A01Z01C01.tif``; the channel is the ``C`` number
    (channels ``C01``, ``C02``, ...). The CV1000's ``W0001F0001T0001Z001C1.tif`` is not
    accepted: its well number is a position in the acquisition protocol, not a plate
    coordinate (give ``--pattern`` with ``row`` and ``col`` groups when the names say more).
``regex``
    a user regular expression (matched against the file name) with named groups ``field``,
    ``channel`` and either ``well`` (``A01``) or ``row`` and ``col`` (``row`` a number from
    1 or letters, ``col`` a number from 1); optionally ``plate``, ``timepoint``, ``zstep``.
    A name the expression matches whose well, row, column or field text is no such thing
    is an error naming the file and the text.

``auto`` picks the single named layout matching every TIFF of the folder.

A record keeps the site / field number found in the name (``site``); the plate numbers the
fields of each well 0, 1, ... in site order (the site is kept in the field's attributes), so
that every well's first field is ``0`` as viewers (ome-zarr-py's plate reader) expect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from phirm_scale.errors import PlateError

__all__ = [
    "ImageRecord",
    "IndexInfo",
    "read_harmony_index",
    "Layout",
    "LAYOUTS",
    "get_layout",
    "list_tiffs",
    "parse_well",
    "scan_folder",
    "detect_layout",
]

_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_TIF = r"\.(?i:tiff?)$"
_WELL_RE = re.compile(r"^([A-Za-z]{1,2})0*(\d{1,3})$")


@dataclass(frozen=True)
class ImageRecord:
    """One source TIFF and where it goes."""

    path: Path
    plate: str | None
    row: str
    column: int
    site: int
    channel: str
    timepoint: int = 1
    zstep: int = 1


def parse_well(well: str) -> tuple[str, int]:
    """``'A02'`` -> ``('A', 2)``; ``'AF48'`` -> ``('AF', 48)``. ValueError if not a well."""
    m = _WELL_RE.match(well)
    if not m:
        raise ValueError(f"not a well name: {well!r}")
    col = int(m.group(2))
    if col < 1:
        raise ValueError(f"not a well name: {well!r} (columns start at 1)")
    return m.group(1).upper(), col


class _BadNameError(ValueError):
    """A name the layout's expression matches, with a part that is not what it should be."""


def _row_from_text(text: str) -> str:
    """``'2'`` / ``'02'`` -> ``'B'``; ``'b'`` -> ``'B'``; ValueError otherwise."""
    from phirm_scale.plate import row_name

    t = text.strip()
    if t.isdigit():
        n = int(t)
        if n < 1:
            raise ValueError(f"row {text!r} (rows are numbered from 1)")
        return row_name(n - 1)
    if re.fullmatch(r"[A-Za-z]{1,2}", t):
        return t.upper()
    raise ValueError(f"row {text!r} is neither a number nor letters")


class Layout:
    """A file-name layout: a regex with named groups.

    Groups ``field``, ``channel`` and ``well`` or ``row`` + ``col`` (+ ``plate``,
    ``timepoint``, ``zstep``).
    """

    def __init__(
        self,
        name: str,
        pattern: str,
        *,
        default_field: int | None = None,
        default_channel: str | None = None,
        channel_prefix: str = "",
        flags: int = 0,
    ):
        self.name = name
        #: what the default channel names put before the channel id (``w`` + ``1``)
        self.channel_prefix = channel_prefix
        try:
            self.regex = re.compile(pattern, flags)
        except re.error as exc:
            raise PlateError(f"--pattern {pattern!r}: invalid regular expression ({exc})") from exc
        groups = set(self.regex.groupindex)
        need = set()
        if "well" not in groups and not {"row", "col"} <= groups:
            need.add("well (or row and col)")
        if default_field is None:
            need.add("field")
        if default_channel is None:
            need.add("channel")
        missing = need - groups
        if missing:
            raise PlateError(
                f"--pattern {pattern!r}: missing named group(s) "
                f"{', '.join(sorted(missing))} (needs well or row and col, field, channel)"
            )
        self.default_field = default_field
        self.default_channel = default_channel

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, {self.regex.pattern!r})"

    def parse(self, path: Path, root: Path | None = None) -> ImageRecord | None:
        """Parse one file's name into its record, or None when it does not match this layout.

        A name the expression matches with a well, row, column, field, time point or z step
        that is no such thing is None too; :meth:`check` says why.
        """
        try:
            return self.check(path, root)
        except _BadNameError:
            return None

    def check(self, path: Path, root: Path | None = None) -> ImageRecord | None:
        """Parse like :meth:`parse`; a matched name with a bad part raises.

        The error (``_BadNameError``, a ValueError) says which part and its text.
        """
        m = self.regex.search(path.name)
        if not m:
            return None
        g = m.groupdict()
        try:
            if g.get("well") is not None:
                row, col = parse_well(g["well"])
            else:
                row = _row_from_text(g.get("row") or "")
                col_s = g.get("col") or ""
                if not col_s.strip().isdigit() or int(col_s) < 1:
                    raise ValueError(f"column {col_s!r} is not a number from 1")
                col = int(col_s)
        except ValueError as exc:
            raise _BadNameError(f"{exc} (from the expression's well/row/col groups)") from None
        field_s = g.get("field")
        if field_s is None:
            field = self.default_field
        else:
            if not field_s.strip().isdigit():
                raise _BadNameError(f"field {field_s!r} is not a number")
            field = int(field_s)
        if field is None or field < 0:
            raise _BadNameError("no field number")
        channel = g.get("channel") or self.default_channel
        if channel is None:
            raise _BadNameError("no channel")
        tp = zs = 1
        rel = path.relative_to(root).parts[:-1] if root is not None else path.parts[:-1]
        for part in rel:
            mt = re.fullmatch(r"TimePoint_(\d+)", part, re.I)
            mz = re.fullmatch(r"ZStep_(\d+)", part, re.I)
            if mt:
                tp = int(mt.group(1))
            if mz:
                zs = int(mz.group(1))
        for group, label in (("timepoint", "time point"), ("zstep", "z step")):
            text = g.get(group)
            if text is not None:
                if not text.strip().isdigit():
                    raise _BadNameError(f"{label} {text!r} is not a number")
                if group == "timepoint":
                    tp = int(text)
                else:
                    zs = int(text)
        return ImageRecord(
            path=path,
            plate=g.get("plate"),
            row=row,
            column=col,
            site=field,
            channel=str(channel),
            timepoint=tp,
            zstep=zs,
        )


def _imagexpress() -> Layout:
    return Layout(
        "imagexpress",
        rf"^(?P<plate>.+?)_(?P<well>[A-Z]{{1,2}}\d{{1,3}})(?:_s(?P<field>\d+))?"
        rf"(?:_w(?P<channel>\d+?))?(?:{_GUID})?{_TIF}",
        default_field=1,
        default_channel="1",
        channel_prefix="w",
    )


def _cellomics() -> Layout:
    return Layout(
        "cellomics",
        rf"^(?P<plate>.+)_(?P<well>[A-Z]{{1,2}}\d{{2,3}})f(?P<field>\d+)d(?P<channel>\d+){_TIF}",
        channel_prefix="d",
    )


def _operetta() -> Layout:
    # Harmony: r01c01f01p01-ch1sk1fk1fl1.tiff (row, column, field, plane, channel, time point)
    return Layout(
        "operetta",
        rf"^r(?P<row>\d{{1,3}})c(?P<col>\d{{1,3}})f(?P<field>\d{{1,4}})p(?P<zstep>\d{{1,4}})"
        rf"-ch(?P<channel>\d{{1,3}})sk(?P<timepoint>\d{{1,5}})fk\d+fl\d+{_TIF}",
        channel_prefix="ch",
    )


def _cellvoyager() -> Layout:
    # CV7000 / CV8000: {plate}_{well}_T0001F001L01A01Z01C01.tif
    return Layout(
        "cellvoyager",
        rf"^(?P<plate>.+)_(?P<well>[A-Z]{{1,2}}\d{{2,3}})_T(?P<timepoint>\d{{4}})"
        rf"F(?P<field>\d{{3}})L\d{{2}}A\d{{2}}Z(?P<zstep>\d{{2}})C(?P<channel>\d{{2}}){_TIF}",
        channel_prefix="C",
    )


#: Named layouts (factories).
LAYOUTS = {
    "imagexpress": _imagexpress,
    "cellomics": _cellomics,
    "operetta": _operetta,
    "cellvoyager": _cellvoyager,
}
_NAMES = ", ".join(LAYOUTS)


@dataclass(frozen=True)
class IndexInfo:
    """What a Harmony ``Index.idx.xml`` / ``Index.xml`` says.

    Channel names by channel id (``'1'``), pixel size in micrometres, the file it came from.
    """

    path: Path
    channels: dict[str, str]
    pixel_size: float | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_harmony_index(source: str | Path, first_image: Path | None = None) -> IndexInfo | None:
    """Find and read the Harmony index of an Operetta / Opera Phenix export, or None.

    Looked for beside ``first_image``, then in ``source`` itself: ``Index.idx.xml``, then
    ``Index.xml``. Namespaces (HarmonyV5, V6, ...) are ignored. An unreadable index is a
    PlateError naming it.
    """
    import xml.etree.ElementTree as ET

    folders = [first_image.parent] if first_image is not None else []
    folders.append(Path(source))
    found = next(
        (d / n for d in folders for n in ("Index.idx.xml", "Index.xml") if (d / n).is_file()),
        None,
    )
    if found is None:
        return None
    try:
        tree = ET.parse(found)
    except (ET.ParseError, OSError) as exc:
        raise PlateError(f"{found}: unreadable Harmony index ({exc})") from exc
    channels: dict[str, str] = {}
    pixel: float | None = None
    for el in tree.iter():
        kids = {_local(c.tag): c for c in el}
        cid = el.get("ChannelID") or (kids["ChannelID"].text if "ChannelID" in kids else None)
        if cid is None:
            continue
        name = kids.get("ChannelName")
        if name is not None and name.text and name.text.strip():
            channels.setdefault(cid.strip(), name.text.strip())
        res = kids.get("ImageResolutionX")
        if pixel is None and res is not None and res.text:
            unit = (res.get("Unit") or "m").strip().lower()
            scale = {"m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0}.get(unit)
            try:
                value = float(res.text)
            except ValueError:
                value = 0.0
            if scale is not None and value > 0:
                pixel = round(value * scale, 6)
    return IndexInfo(found, channels, pixel)


def get_layout(name: str = "auto", pattern: str | None = None) -> Layout | None:
    """Return the layout called ``name`` (one of :data:`LAYOUTS` or 'regex'), None for 'auto'.

    A ``pattern`` implies the regex layout.
    """
    name = (name or "auto").lower()
    if pattern is not None:
        if name not in ("auto", "regex"):
            raise PlateError(f"--pattern given with --layout {name}; use --layout regex or auto")
        return Layout("regex", pattern)
    if name == "auto":
        return None
    if name == "regex":
        raise PlateError(
            "--layout regex needs --pattern with groups well (or row and col), field, channel"
        )
    if name not in LAYOUTS:
        raise PlateError(f"unknown layout {name!r} (choose auto, {_NAMES}, regex)")
    return LAYOUTS[name]()


def list_tiffs(source: Path) -> list[Path]:
    """All TIFFs under ``source`` (recursively, sorted), thumbnails excluded."""
    source = Path(source)
    if not source.is_dir():
        raise PlateError(f"{source}: source folder not found")
    files = sorted(
        p
        for p in source.rglob("*")
        if p.suffix.lower() in (".tif", ".tiff")
        and p.is_file()
        and "_thumb" not in p.name.lower()
        and not p.name.startswith(".")
    )
    if not files:
        raise PlateError(f"{source}: no TIFF files found")
    return files


def detect_layout(files: Iterable[Path], root: Path) -> Layout:
    """Find the one named layout matching every file; PlateError naming a file otherwise."""
    files = list(files)
    best: tuple[int, Layout, Path | None] | None = None
    for factory in LAYOUTS.values():
        lay = factory()
        bad = next((f for f in files if lay.parse(f, root) is None), None)
        if bad is None:
            return lay
        n_ok = sum(lay.parse(f, root) is not None for f in files)
        if best is None or n_ok > best[0]:
            best = (n_ok, lay, bad)
    assert best is not None
    n_ok, lay, bad = best
    if n_ok == 0:
        raise PlateError(
            f"{bad}: file name matches no layout ({_NAMES}); "
            "give --pattern with groups well (or row and col), field, channel"
        )
    raise PlateError(
        f"{bad}: file name does not match the {lay.name} layout of the other {n_ok} files"
    )


def scan_folder(
    source: str | Path, layout: str = "auto", pattern: str | None = None
) -> tuple[Layout, list[ImageRecord]]:
    """Parse every TIFF of ``source``: returns the layout used and one record per file.

    Every TIFF must match the layout (PlateError naming the first that does not).
    """
    source = Path(source)
    files = list_tiffs(source)
    lay = get_layout(layout, pattern)
    if lay is None:
        lay = detect_layout(files, source)
    records = []
    for f in files:
        try:
            rec = lay.check(f, source)
        except _BadNameError as exc:
            raise PlateError(f"{f}: file name matches the {lay.name} layout, but {exc}") from None
        if rec is None:
            raise PlateError(
                f"{f}: file name does not match the {lay.name} layout ({lay.regex.pattern})"
            )
        records.append(rec)
    return lay, records
