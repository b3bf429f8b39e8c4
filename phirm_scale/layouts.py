"""Source-folder layouts: which TIFF holds which (well, field, channel).

Three layouts are understood:

``imagexpress``
    ImageXpress / MetaXpress: ``{plate}_{well}_s{site}_w{channel}{GUID?}.tif``, the site and
    channel parts optional (one site / one channel acquisitions), in ``TimePoint_N`` /
    ``ZStep_N`` sub-folders or not; ``_thumb`` files are skipped.
``cellomics``
    Cellomics / CellInsight: ``{plate}_{well}f{field}d{channel}.tif``.
``regex``
    a user regular expression (matched against the file name) with named groups ``well``,
    ``field`` and ``channel`` and optionally ``plate``.

``auto`` picks the single layout matching every TIFF of the folder.

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


class Layout:
    """A file-name layout: a regex with groups ``well``, ``field``, ``channel`` (+ ``plate``)."""

    def __init__(
        self,
        name: str,
        pattern: str,
        *,
        default_field: int | None = None,
        default_channel: str | None = None,
        flags: int = 0,
    ):
        self.name = name
        try:
            self.regex = re.compile(pattern, flags)
        except re.error as exc:
            raise PlateError(f"--pattern {pattern!r}: invalid regular expression ({exc})") from exc
        groups = set(self.regex.groupindex)
        need = {"well"}
        if default_field is None:
            need.add("field")
        if default_channel is None:
            need.add("channel")
        missing = need - groups
        if missing:
            raise PlateError(
                f"--pattern {pattern!r}: missing named group(s) "
                f"{', '.join(sorted(missing))} (needs well, field, channel)"
            )
        self.default_field = default_field
        self.default_channel = default_channel

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, {self.regex.pattern!r})"

    def parse(self, path: Path, root: Path | None = None) -> ImageRecord | None:
        """Parse one file's name into its record, or None when it does not match this layout."""
        m = self.regex.search(path.name)
        if not m:
            return None
        g = m.groupdict()
        try:
            row, col = parse_well(g["well"])
        except ValueError:
            return None
        field_s = g.get("field")
        if field_s is None:
            field = self.default_field
        else:
            try:
                field = int(field_s)
            except ValueError:
                return None
        if field is None or field < 0:
            return None
        channel = g.get("channel") or self.default_channel
        if channel is None:
            return None
        tp = zs = 1
        rel = path.relative_to(root).parts[:-1] if root is not None else path.parts[:-1]
        for part in rel:
            mt = re.fullmatch(r"TimePoint_(\d+)", part, re.I)
            mz = re.fullmatch(r"ZStep_(\d+)", part, re.I)
            if mt:
                tp = int(mt.group(1))
            if mz:
                zs = int(mz.group(1))
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
    )


def _cellomics() -> Layout:
    return Layout(
        "cellomics",
        rf"^(?P<plate>.+)_(?P<well>[A-Z]{{1,2}}\d{{2,3}})f(?P<field>\d+)d(?P<channel>\d+){_TIF}",
    )


#: Named layouts (factories).
LAYOUTS = {"imagexpress": _imagexpress, "cellomics": _cellomics}


def get_layout(name: str = "auto", pattern: str | None = None) -> Layout | None:
    """Return the layout called ``name`` ('imagexpress', 'cellomics', 'regex'), None for 'auto'.

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
        raise PlateError("--layout regex needs --pattern with groups well, field, channel")
    if name not in LAYOUTS:
        raise PlateError(f"unknown layout {name!r} (choose auto, imagexpress, cellomics, regex)")
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
            f"{bad}: file name matches no layout (imagexpress, cellomics); "
            "give --pattern with groups well, field, channel"
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
        rec = lay.parse(f, source)
        if rec is None:
            raise PlateError(
                f"{f}: file name does not match the {lay.name} layout ({lay.regex.pattern})"
            )
        records.append(rec)
    return lay, records
