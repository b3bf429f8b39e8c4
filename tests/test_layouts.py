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


# ----------------------------------------------------------------- vendor layouts (issue 22, 7)
# Operetta / Opera Phenix (Harmony), Yokogawa CellVoyager CV7000/CV8000, --pattern with row
# and col numbers, a matched name with a bad well named as such, one plate-naming rule.

_HARMONY = """<?xml version="1.0" encoding="utf-8"?>
<EvaluationInputData xmlns="http://www.perkinelmer.com/PEHH/HarmonyV6" Version="2">
  <Maps><Map>
    <Entry ChannelID="1"><ChannelName>HOECHST 33342</ChannelName>
      <ImageResolutionX Unit="m">6.5E-07</ImageResolutionX></Entry>
    <Entry ChannelID="2"><ChannelName>Alexa 488</ChannelName>
      <ImageResolutionX Unit="m">6.5E-07</ImageResolutionX></Entry>
  </Map></Maps>
  <Images><Image Version="1"><URL>r01c01f01p01-ch1sk1fk1fl1.tiff</URL>
    <ChannelID>1</ChannelID><ChannelName>HOECHST 33342</ChannelName></Image></Images>
</EvaluationInputData>
"""


def _write_tiffs(folder: Path, names, seed=0):
    """One small distinct uint16 image per name; returns {name: array}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for n in names:
        a = rng.integers(0, 4000, (12, 10), dtype=np.uint16)
        tifffile.imwrite(folder / n, a)
        out[n] = a
    return out


@pytest.mark.parametrize(
    "name, expected",
    [
        ("r01c01f01p01-ch1sk1fk1fl1.tiff", ("A", 1, 1, "1", 1, 1)),
        ("r02c03f04p02-ch2sk3fk1fl1.tiff", ("B", 3, 4, "2", 3, 2)),
        ("r16c24f12p01-ch4sk1fk1fl1.tif", ("P", 24, 12, "4", 1, 1)),
        ("r32c48f01p01-ch1sk1fk1fl1.TIFF", ("AF", 48, 1, "1", 1, 1)),  # 1536-well row 32
    ],
)
def test_operetta_names(name, expected):
    rec = get_layout("operetta").parse(Path(name))
    assert (rec.row, rec.column, rec.site, rec.channel, rec.timepoint, rec.zstep) == expected
    assert rec.plate is None
    for other in ("imagexpress", "cellomics", "cellvoyager"):
        assert get_layout(other).parse(Path(name)) is None


@pytest.mark.parametrize(
    "name, expected",
    [
        ("AssayPlate_B03_T0001F001L01A01Z01C01.tif", ("AssayPlate", "B", 3, 1, "01", 1, 1)),
        (
            "AssayPlate_Greiner_#655090_P24_T0002F012L01A02Z03C04.tif",
            ("AssayPlate_Greiner_#655090", "P", 24, 12, "04", 2, 3),
        ),
    ],
)
def test_cellvoyager_names(name, expected):
    rec = get_layout("cellvoyager").parse(Path(name))
    got = (rec.plate, rec.row, rec.column, rec.site, rec.channel, rec.timepoint, rec.zstep)
    assert got == expected
    for other in ("imagexpress", "cellomics", "operetta"):
        assert get_layout(other).parse(Path(name)) is None


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 32), st.integers(1, 48), st.integers(1, 99), st.integers(1, 9))
def test_operetta_round_trip(row, col, field, chan):
    rec = get_layout("operetta").parse(
        Path(f"r{row:02d}c{col:02d}f{field:02d}p01-ch{chan}sk1fk1fl1.tiff")
    )
    # rows counted independently: A..Z then AA..
    letters = chr(64 + row) if row <= 26 else "A" + chr(64 + row - 26)
    assert (rec.row, rec.column, rec.site, rec.channel) == (letters, col, field, str(chan))


def test_cv1000_well_numbers_are_not_guessed(tmp_path):
    _touch_tiffs(tmp_path / "cv1000", ["W0001F0001T0001Z001C1.tif"])
    with pytest.raises(
        PlateError, match=r"W0001F0001T0001Z001C1\.tif: file name matches no layout"
    ):
        scan_folder(tmp_path / "cv1000")


def test_convert_operetta_with_harmony_index(tmp_path):
    from phirm_scale.stages.convert import convert, plan_conversion

    src = tmp_path / "export"
    names = [
        f"r{r:02d}c{c:02d}f{f:02d}p{p:02d}-ch{ch}sk1fk1fl1.tiff"
        for r, c in ((1, 1), (2, 3))
        for f in (1, 2)
        for p in (1, 2)
        for ch in (1, 2)
    ]
    data = _write_tiffs(src / "Images", names)
    (src / "Images" / "Index.idx.xml").write_text(_HARMONY)
    # two planes: one must be chosen, as with ZStep_N folders
    with pytest.raises(PlateError, match="2 ZSteps.*--zstep"):
        plan_conversion(src)
    plate = convert(src, tmp_path / "o.ome.zarr", zstep=2, cluster="threads", progress=False)
    assert plate.channel_names == ["HOECHST 33342", "Alexa 488"]
    assert plate.wells == [("A", "01"), ("B", "03")]
    assert plate.name == "export"
    np.testing.assert_array_equal(
        plate.read_field(("B", "03", 1), "Alexa 488"), data["r02c03f02p02-ch2sk1fk1fl1.tiff"]
    )
    import zarr

    ome = dict(zarr.open_group(str(plate.path / "A/01/0"), mode="r").attrs)["ome"]
    assert ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][-2:] == [
        0.65,
        0.65,
    ]


def test_operetta_index_xml_name_and_no_index(tmp_path):
    from phirm_scale.stages.convert import plan_conversion

    names = [f"r03c05f01p01-ch{ch}sk1fk1fl1.tiff" for ch in (1, 2)]
    _write_tiffs(tmp_path / "bare", names)
    plan = plan_conversion(tmp_path / "bare")
    assert plan.layout == "operetta" and plan.channel_names == ["ch1", "ch2"]
    assert plan.pixel_size is None  # nothing says it: none invented
    _write_tiffs(tmp_path / "old", names)
    (tmp_path / "old" / "Index.xml").write_text(_HARMONY.replace("HarmonyV6", "HarmonyV5"))
    plan = plan_conversion(tmp_path / "old")
    assert plan.channel_names == ["HOECHST 33342", "Alexa 488"] and plan.pixel_size == 0.65
    (tmp_path / "bad").mkdir()
    _write_tiffs(tmp_path / "bad", names)
    (tmp_path / "bad" / "Index.idx.xml").write_text("<EvaluationInputData><Maps>")
    with pytest.raises(PlateError, match=r"Index\.idx\.xml: unreadable Harmony index"):
        plan_conversion(tmp_path / "bad")


def test_convert_cellvoyager(tmp_path):
    from phirm_scale.stages.convert import convert

    src = tmp_path / "CV8000-run7"
    names = [
        f"AssayPlate_{w}_T0001F{f:03d}L01A01Z01C{c:02d}.tif"
        for w in ("B03", "C04")
        for f in (1, 2)
        for c in (1, 2, 3)
    ]
    data = _write_tiffs(src, names)
    plate = convert(src, tmp_path / "cv.ome.zarr", cluster="threads", progress=False)
    assert plate.channel_names == ["C01", "C02", "C03"]
    assert plate.wells == [("B", "03"), ("C", "04")]
    assert plate.name == "CV8000-run7"  # the folder's, as run names it
    assert plate.attrs["phirm_scale"]["convert"]["plate_in_names"] == "AssayPlate"
    np.testing.assert_array_equal(
        plate.read_field(("C", "04", 1), "C03"), data["AssayPlate_C04_T0001F002L01A01Z01C03.tif"]
    )


def test_pattern_with_row_and_col_numbers(tmp_path):
    _touch_tiffs(tmp_path, [f"img_R{r}_C{c}_F1_ch0.tif" for r, c in ((3, 12), (1, 1), (27, 2))])
    lay, recs = scan_folder(
        tmp_path, pattern=r"^img_R(?P<row>\d+)_C(?P<col>\d+)_F(?P<field>\d+)_ch(?P<channel>\d)"
    )
    assert sorted((r.row, r.column) for r in recs) == [("A", 1), ("AA", 2), ("C", 12)]
    # letters for the row work too
    lay = get_layout("regex", r"^(?P<row>[A-Z]+)-(?P<col>\d+)-(?P<field>\d)-(?P<channel>\w+)\.tif$")
    rec = lay.parse(Path("D-7-2-dapi.tif"))
    assert (rec.row, rec.column, rec.site, rec.channel) == ("D", 7, 2, "dapi")
    with pytest.raises(PlateError, match=r"well \(or row and col\)"):
        get_layout("regex", r"(?P<row>\d+)_(?P<field>\d)_(?P<channel>\d)")


@pytest.mark.parametrize(
    "name, pattern, says",
    [
        ("X99Z_s1_dapi.tif", r"^(?P<well>[^_]+)_s(?P<field>\d+)_(?P<channel>\w+)\.tif$", "'X99Z'"),
        ("A00_s1_dapi.tif", r"^(?P<well>[^_]+)_s(?P<field>\d+)_(?P<channel>\w+)\.tif$", "'A00'"),
        ("R0_C3_s1_d.tif", r"^R(?P<row>\d+)_C(?P<col>\d+)_s(?P<field>\d+)_(?P<channel>\w)", "'0'"),
        ("R2_Cx_s1_d.tif", r"^R(?P<row>\d+)_C(?P<col>\w+)_s(?P<field>\d+)_(?P<channel>\w)", "'x'"),
        ("A01_sQ_d.tif", r"^(?P<well>\w\d\d)_s(?P<field>\w+)_(?P<channel>\w)", "field 'Q'"),
    ],
)
def test_matched_name_with_bad_well_says_so(tmp_path, name, pattern, says):
    _touch_tiffs(tmp_path, [name])
    with pytest.raises(PlateError) as err:
        scan_folder(tmp_path, pattern=pattern)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / name)) and says in msg
    assert "matches the regex layout, but" in msg and "does not match" not in msg


def test_one_plate_naming_rule_for_convert_and_run(bbbc039_dir):
    from phirm_scale.run import find_plates
    from phirm_scale.stages.convert import plan_conversion

    plan = plan_conversion(bbbc039_dir)
    ((run_name, _, kind),) = find_plates([bbbc039_dir])
    assert kind == "tiff" and plan.name == run_name == "bbbc039-rows-A-D"
    assert plan.record()["plate_in_names"] == "IXMtest"  # what the file names say, kept
