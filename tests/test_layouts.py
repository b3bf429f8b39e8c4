"""File-name layouts: ImageXpress, Cellomics, user regex, auto detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import GUID
from hypothesis import given, settings
from hypothesis import strategies as st

from phirm_scale.errors import PlateError
from phirm_scale.layouts import detect_layout, get_layout, parse_well, scan_folder


@pytest.mark.parametrize(
    "name, expected",
    [
        (f"IXMtest_A02_s1_w1{GUID}.tif", ("IXMtest", "A", 2, 1, "1")),
        ("P1_B03_s2_w2.tif", ("P1", "B", 3, 2, "2")),
        ("P1_B03_w1.TIF", ("P1", "B", 3, 1, "1")),  # single site
        ("P1_B03.tif", ("P1", "B", 3, 1, "1")),  # single site, single channel
        ("my_plate_2024_P24_s12_w3.tiff", ("my_plate_2024", "P", 24, 12, "3")),
        (f"X_AF48_s3_w4{GUID.lower()}.tif", ("X", "AF", 48, 3, "4")),  # 1536-well row
    ],
)
def test_imagexpress_names(name, expected):
    rec = get_layout("imagexpress").parse(Path(name))
    assert (rec.plate, rec.row, rec.column, rec.site, rec.channel) == expected


@pytest.mark.parametrize(
    "name", ["P1_B03_s1_w1_thumb.tif", "notes.txt", "P1_B03f00d0.tif", "P1_ZZZ3_s1_w1.tif"]
)
def test_imagexpress_rejects(name):
    assert get_layout("imagexpress").parse(Path(name)) is None


@pytest.mark.parametrize(
    "name, expected",
    [
        ("MFGTMP_150819110001_A01f00d0.TIF", ("MFGTMP_150819110001", "A", 1, 0, "0")),
        ("plate_P24f12d3.tif", ("plate", "P", 24, 12, "3")),
    ],
)
def test_cellomics_names(name, expected):
    rec = get_layout("cellomics").parse(Path(name))
    assert (rec.plate, rec.row, rec.column, rec.site, rec.channel) == expected
    assert get_layout("imagexpress").parse(Path(name)) is None


def test_regex_layout():
    lay = get_layout("regex", r"^(?P<well>[A-P]\d\d)-site(?P<field>\d+)-(?P<channel>[a-z]+)\.tif$")
    rec = lay.parse(Path("C07-site4-dapi.tif"))
    assert (rec.plate, rec.row, rec.column, rec.site, rec.channel) == (None, "C", 7, 4, "dapi")
    assert lay.parse(Path("C07-site4-dapi.png")) is None
    with pytest.raises(PlateError, match="missing named group"):
        get_layout("regex", r"(?P<well>\w+)_(?P<channel>\d)")
    with pytest.raises(PlateError, match="invalid regular expression"):
        get_layout("regex", r"(?P<well>")
    with pytest.raises(PlateError, match="needs --pattern"):
        get_layout("regex")
    with pytest.raises(PlateError, match="unknown layout"):
        get_layout("opera")


def test_parse_well():
    assert parse_well("A02") == ("A", 2)
    assert parse_well("p24") == ("P", 24)
    assert parse_well("AF048") == ("AF", 48)
    for bad in ("02", "A", "A0", "ABC1"):
        with pytest.raises(ValueError):
            parse_well(bad)


def _touch_tiffs(folder: Path, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / n, np.zeros((4, 5), np.uint16))


def test_auto_detection(tmp_path):
    _touch_tiffs(
        tmp_path / "ixm",
        [f"P_A01_s{s}_w{c}{GUID}.tif" for s in (1, 2) for c in (1, 2)] + ["P_A01_s1_w1_thumb.tif"],
    )
    lay, recs = scan_folder(tmp_path / "ixm")
    assert lay.name == "imagexpress" and len(recs) == 4  # thumbnail skipped
    _touch_tiffs(tmp_path / "cel", [f"P_B02f0{f}d{c}.tif" for f in (0, 1) for c in (0, 1)])
    lay, recs = scan_folder(tmp_path / "cel")
    assert lay.name == "cellomics" and {r.site for r in recs} == {0, 1}
    _touch_tiffs(tmp_path / "odd", ["B02-1-dapi.tif", "B02-2-dapi.tif"])
    with pytest.raises(PlateError, match=r"B02-1-dapi\.tif: file name matches no layout"):
        scan_folder(tmp_path / "odd")
    lay, recs = scan_folder(
        tmp_path / "odd", pattern=r"(?P<well>\w\d\d)-(?P<field>\d)-(?P<channel>\w+)"
    )
    assert lay.name == "regex" and sorted(r.site for r in recs) == [1, 2]


def test_mixed_layouts_name_the_odd_file(tmp_path):
    _touch_tiffs(tmp_path, ["P_A01_s1_w1.tif", "P_A01_s2_w1.tif", "P_A01f00d0.tif"])
    with pytest.raises(
        PlateError,
        match=r"P_A01f00d0\.tif: file name does not match the "
        r"imagexpress layout",
    ):
        detect_layout(sorted(tmp_path.iterdir()), tmp_path)


def test_timepoint_folders(tmp_path):
    _touch_tiffs(
        tmp_path, ["TimePoint_1/ZStep_2/P_A01_s1_w1.tif", "TimePoint_2/ZStep_2/P_A01_s1_w1.tif"]
    )
    _, recs = scan_folder(tmp_path, "imagexpress")
    assert sorted((r.timepoint, r.zstep) for r in recs) == [(1, 2), (2, 2)]


def test_empty_folder(tmp_path):
    with pytest.raises(PlateError, match="no TIFF files"):
        scan_folder(tmp_path)
    with pytest.raises(PlateError, match="source folder not found"):
        scan_folder(tmp_path / "missing")


_rows = st.sampled_from(["A", "H", "P", "Z", "AA", "AF"])


@settings(max_examples=60, deadline=None)
@given(
    _rows,
    st.integers(1, 48),
    st.integers(1, 99),
    st.integers(1, 9),
    st.booleans(),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,12}", fullmatch=True),
)
def test_imagexpress_round_trip(row, col, site, chan, guid, plate):
    name = f"{plate}_{row}{col:02d}_s{site}_w{chan}{GUID if guid else ''}.tif"
    rec = get_layout("imagexpress").parse(Path(name))
    assert (rec.plate, rec.row, rec.column, rec.site, rec.channel) == (
        plate,
        row,
        col,
        site,
        str(chan),
    )


@settings(max_examples=60, deadline=None)
@given(
    _rows,
    st.integers(1, 48),
    st.integers(0, 99),
    st.integers(0, 9),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True),
)
def test_cellomics_round_trip(row, col, field, chan, plate):
    name = f"{plate}_{row}{col:02d}f{field:02d}d{chan}.TIF"
    rec = get_layout("cellomics").parse(Path(name))
    assert (rec.plate, rec.row, rec.column, rec.site, rec.channel) == (
        plate,
        row,
        col,
        field,
        str(chan),
    )
