"""convert: TIFF folders -> NGFF 0.5 HCS plates (real data, layouts, resume, bad input, CLI)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from conftest import BBBC039, GUID, skip_without_bbbc039, store_files, write_ixm

from phirm_scale.errors import PlateError
from phirm_scale.plate import FieldKey, field_done, open_plate, read_root_attrs
from phirm_scale.stages.convert import conversion_complete, convert, plan_conversion


@pytest.fixture(scope="module")
def cluster_address():
    """A real distributed LocalCluster (worker processes), shared by this module's tests."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


IXM_FIELDS = [
    ("A01", 1),
    ("A01", 3),
    ("A02", 2),
    ("B03", 1),
    ("B03", 2),
    ("C01", 1),
    ("C02", 4),
    ("C03", 1),
]


def identity(path: Path) -> tuple[int, int, int]:
    """(inode, size, status-change time): changes when a file is written in place or replaced
    by a rename, even where the modification time was set back."""
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_ctime_ns


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_bbbc039_pixels_wells_sites(tmp_path, cluster_address):
    skip_without_bbbc039()
    import dask.array as da
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v05.hcs import HCS

    out = tmp_path / "bbbc039.ome.zarr"
    plate = convert(
        BBBC039,
        out,
        channel_names=["DAPI"],
        cluster=cluster_address,
        progress=False,
        n_levels=2,
    )
    # expected from the file names, parsed independently of the layouts module
    expected: dict[tuple[str, int], dict[int, Path]] = {}
    for f in BBBC039.glob("*.tif"):
        m = re.match(r"IXMtest_([A-D])(\d\d)_s(\d)_w1", f.name)
        expected.setdefault((m.group(1), int(m.group(2))), {})[int(m.group(3))] = f
    assert len(expected) == 40 and sum(len(v) for v in expected.values()) == 49
    assert plate.wells == sorted((r, f"{c:02d}") for r, c in expected)
    assert plate.rows == ["A", "B", "C", "D"]
    assert plate.columns == [f"{i:02d}" for i in range(1, 25)]
    # named after the folder, as run names it; the file names' plate name kept as provenance
    assert plate.name == BBBC039.name and plate.channel_names == ["DAPI"]
    assert plate.attrs["phirm_scale"]["convert"]["plate_in_names"] == "IXMtest"
    assert plate.field_shape == (520, 696) and plate.dtype == np.uint16
    for (r, c), sites in expected.items():
        keys = plate.well_fields(r, f"{c:02d}")
        assert [k.field for k in keys] == list(range(len(sites)))
        for key, site in zip(keys, sorted(sites), strict=True):
            assert plate.field_attrs(key)["phirm_scale"]["site"] == site
            np.testing.assert_array_equal(
                plate.read_field(key, "DAPI"), tifffile.imread(sites[site])
            )
    # ome-zarr's own reader: plate -> wells -> field images
    node = list(Reader(parse_url(str(out)))())[0]
    spec = node.specs[0]
    assert type(spec).__name__ == "Plate"
    assert spec.well_paths == [f"{r}/{c}" for r, c in plate.wells]
    well = list(Reader(parse_url(str(out / "B/21")))())[0]
    assert "Well" in [type(s).__name__ for s in well.specs]
    assert well.specs[-1].well_data["images"] == [{"path": "0"}, {"path": "1"}, {"path": "2"}]
    img = list(Reader(parse_url(str(out / "B/21/2")))())[0]
    np.testing.assert_array_equal(
        np.asarray(img.data[0])[0, 0, 0], tifffile.imread(expected[("B", 21)][7])
    )
    assert img.data[1].shape == (1, 1, 1, 260, 348)
    HCS.from_zarr(zarr.open_group(str(out), mode="r"))
    arr = da.from_zarr(str(out / "D/20/1/0"))
    np.testing.assert_array_equal(arr[0, 0, 0].compute(), tifffile.imread(expected[("D", 20)][9]))


# --------------------------------------------------------------------------- layouts


def test_imagexpress_two_channels_and_missing_fields(tmp_path):
    data = write_ixm(tmp_path / "src", IXM_FIELDS)
    plate = convert(
        tmp_path / "src",
        tmp_path / "o.ome.zarr",
        channel_names=["DAPI", "CFP"],
        cluster="threads",
        progress=False,
    )
    assert plate.rows == ["A", "B", "C"] and plate.columns == ["01", "02", "03"]
    assert plate.wells == [
        ("A", "01"),
        ("A", "02"),
        ("B", "03"),
        ("C", "01"),
        ("C", "02"),
        ("C", "03"),
    ]
    assert plate.well_fields("A", "01") == [FieldKey("A", "01", 0), FieldKey("A", "01", 1)]
    got = plate.read_field(FieldKey("A", "01", 1))
    np.testing.assert_array_equal(got[0], data[("A01", 3, 1)])
    np.testing.assert_array_equal(got[1], data[("A01", 3, 2)])
    np.testing.assert_array_equal(
        plate.read_field(FieldKey("C", "02", 0), "CFP"), data[("C02", 4, 2)]
    )
    assert plate.metadata["plate"]["field_count"] == 2


def test_cellomics_and_regex(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "cel"
    src.mkdir()
    data = {}
    for well in ("B02", "B04"):
        for f in (0, 1):
            for d in (0, 1, 2):
                a = rng.integers(0, 255, (16, 20), dtype=np.uint8)
                tifffile.imwrite(src / f"MFGTMP_1508_{well}f{f:02d}d{d}.TIF", a)
                data[(well, f, d)] = a
    plate = convert(src, tmp_path / "cel.ome.zarr", cluster="threads", progress=False)
    assert plate.name == "cel" and plate.channel_names == ["d0", "d1", "d2"]
    assert plate.dtype == np.uint8 and plate.wells == [("B", "02"), ("B", "04")]
    np.testing.assert_array_equal(
        plate.read_field(FieldKey("B", "04", 1), "d2"), data[("B04", 1, 2)]
    )
    # the same files through a user regex, named channels
    plate2 = convert(
        src,
        tmp_path / "rx.ome.zarr",
        layout="regex",
        pattern=r"_(?P<well>[A-P]\d\d)f(?P<field>\d+)d(?P<channel>\d)\.TIF$",
        plate_name="screen1",
        channel_names=["DAPI", "GFP", "CFP"],
        cluster="threads",
        progress=False,
    )
    assert plate2.name == "screen1" and plate2.channel_names == ["DAPI", "GFP", "CFP"]
    for k in plate.fields:
        np.testing.assert_array_equal(plate2.read_field(k), plate.read_field(k))


def test_auto_summary_before_writing(tmp_path, caplog):
    write_ixm(tmp_path / "src", IXM_FIELDS[:3], shape=(8, 9))
    with caplog.at_level(logging.INFO, logger="phirm_scale"):
        convert(tmp_path / "src", tmp_path / "o.ome.zarr", cluster="threads", progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "phirm_scale.stages.convert"]
    assert lines[0].startswith("layout imagexpress: plate 'src' (file names say 'P1'), 2 wells")
    assert "3 fields" in lines[0] and "8x9 uint16" in lines[0] and "6 files" in lines[0]


# --------------------------------------------------------------------------- resume


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, caplog):
    write_ixm(tmp_path / "src", IXM_FIELDS)
    full = tmp_path / "full.ome.zarr"
    part = tmp_path / "part.ome.zarr"
    kw = dict(
        channel_names=["DAPI", "CFP"],
        cluster="threads",
        progress=False,
        n_levels=2,
    )
    convert(tmp_path / "src", full, **kw)
    assert not conversion_complete(part)  # nothing there yet
    assert convert(tmp_path / "src", part, max_fields=3, **kw) is None  # "killed" after 3
    assert "ome" not in read_root_attrs(part)  # not yet a plate
    assert not conversion_complete(part) and conversion_complete(full)
    with pytest.raises(PlateError, match="not an OME-Zarr HCS plate"):
        open_plate(part)
    plan = plan_conversion(tmp_path / "src")
    done = [k for k in plan.fields if field_done(part, k)]
    assert len(done) == 3
    # the finished fields' files, as the file system sees them: a rewrite (in place or written
    # beside and renamed over) changes the inode or the status-change time, which, unlike the
    # modification time, no program can set back
    done_files = [
        p
        for k in done
        for p in sorted((part / k.path).rglob("*"))
        if "c" in p.parts and p.is_file()
    ]
    assert done_files
    done_before = {p: identity(p) for p in done_files}
    # a field killed half-way: garbage chunk, no complete marker -> rewritten on resume
    half = next(k for k in plan.fields if k not in done)
    chunk = part / half.path / "0" / "c" / "0" / "1" / "0" / "0" / "0"
    chunk.parent.mkdir(parents=True, exist_ok=True)
    chunk.write_bytes(b"\x00garbage")
    assert convert(tmp_path / "src", part, max_fields=2, **kw) is None
    assert not conversion_complete(part)
    plate = convert(tmp_path / "src", part, **kw)
    assert plate is not None and plate.missing_fields() == []
    assert conversion_complete(part)
    a, b = store_files(full), store_files(part)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []  # arrays and metadata byte-identical
    # resuming rewrote no pixel chunk of the fields finished before the interruption (their
    # metadata is completed when the plate is)
    assert {p: identity(p) for p in done_files} == done_before
    # a rerun of a finished conversion writes nothing at all (no file, no directory entry)
    before = {p: identity(full / p) for p in a}
    n_entries = sum(1 for _ in full.rglob("*"))
    with caplog.at_level(logging.INFO, logger="phirm_scale.stages.convert"):
        convert(tmp_path / "src", full, **kw)
    said = [r.getMessage() for r in caplog.records if r.name == "phirm_scale.stages.convert"]
    assert f"{full}: already converted from this source; nothing to do" in said, said
    assert {p: identity(full / p) for p in a} == before
    assert sum(1 for _ in full.rglob("*")) == n_entries
    assert store_files(full) == a


def test_conversion_complete_only_for_a_finished_convert_output(tmp_path):
    from phirm_scale.synthetic import make_plate

    other = make_plate(tmp_path / "synthetic.ome.zarr", rows=1, columns=1, fields=1, size=32)
    assert other.missing_fields() == []  # a finished plate, but not a conversion
    assert not conversion_complete(other.path)
    (tmp_path / "folder").mkdir()
    assert not conversion_complete(tmp_path / "folder")
    assert not conversion_complete(tmp_path / "missing.ome.zarr")


def test_resume_on_distributed_cluster(tmp_path, cluster_address):
    write_ixm(tmp_path / "src", IXM_FIELDS, channels=(1,))
    ref = tmp_path / "ref.ome.zarr"
    out = tmp_path / "o.ome.zarr"
    convert(tmp_path / "src", ref, cluster="threads", progress=False)
    convert(
        tmp_path / "src",
        out,
        cluster=cluster_address,
        progress=False,
        max_fields=4,
    )
    convert(tmp_path / "src", out, cluster=cluster_address, progress=False)
    assert store_files(ref) == store_files(out)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(tmp_path):
    """A real kill: SIGKILL the CLI once some fields are written, rerun, compare."""
    import signal
    import time

    from phirm_scale.plate import field_done

    fields = [(f"{r}{c:02d}", 1) for r in "ABCD" for c in range(1, 13)]  # 48 fields
    write_ixm(tmp_path / "src", fields, shape=(256, 256))
    ref = tmp_path / "ref.ome.zarr"
    out = tmp_path / "o.ome.zarr"
    convert(tmp_path / "src", ref, cluster="threads", progress=False)
    exe = Path(sys.executable).with_name("phirm-scale")
    cmd = [
        str(exe),
        "convert",
        str(tmp_path / "src"),
        str(out),
        "--cluster",
        "threads",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plan = plan_conversion(tmp_path / "src")
    first = list(plan.fields)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(field_done(out, k) for k in first[::4]):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if "ome" in (read_root_attrs(out) or {}):
        pytest.skip("the conversion finished before it could be killed")
    done = [k for k in first if field_done(out, k)]
    assert len(done) < len(first)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stderr
    assert store_files(ref) == store_files(out)


def test_existing_output(tmp_path):
    write_ixm(tmp_path / "src", IXM_FIELDS[:2])
    write_ixm(tmp_path / "other", IXM_FIELDS[2:4], seed=1)
    out = tmp_path / "o.ome.zarr"
    kw = dict(cluster="threads", progress=False)
    convert(tmp_path / "src", out, **kw)
    with pytest.raises(
        PlateError,
        match=r"o\.ome\.zarr: output exists, converted from another "
        r"source.*--overwrite",
    ):
        convert(tmp_path / "other", out, **kw)
    plate = convert(tmp_path / "other", out, overwrite=True, **kw)
    assert plate.wells == [("A", "02"), ("B", "03")]
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "thesis.txt").write_text("precious")
    with pytest.raises(
        PlateError, match="is a folder not made by `phirm-scale convert`; refusing to write into it"
    ):
        convert(tmp_path / "src", tmp_path / "folder", **kw)
    with pytest.raises(
        PlateError, match="not made by `phirm-scale convert`; refusing to replace it"
    ):
        convert(tmp_path / "src", tmp_path / "folder", overwrite=True, **kw)
    assert (tmp_path / "folder" / "thesis.txt").read_text() == "precious"


# --------------------------------------------------------------------------- bad input


def _corrupt(src: Path) -> str:
    f = sorted(src.glob("*.tif"))[2]
    f.write_bytes(os.urandom(2000))
    return f.name


def _truncated(src: Path) -> str:
    f = sorted(src.glob("*.tif"))[3]
    b = f.read_bytes()
    f.write_bytes(b[: len(b) * 2 // 3])
    return f.name


def _mixed_shape(src: Path) -> str:
    f = sorted(src.glob("*.tif"))[1]
    tifffile.imwrite(f, np.zeros((24, 30), np.uint16))
    return f.name


def _mixed_dtype(src: Path) -> str:
    f = sorted(src.glob("*.tif"))[4]
    tifffile.imwrite(f, np.zeros((24, 31), np.uint8))
    return f.name


def _duplicate(src: Path) -> str:
    f = sorted(src.glob("*.tif"))[0]
    dup = f.with_name(f.name.replace(GUID, ""))  # same well/site/channel without the GUID
    dup.write_bytes(f.read_bytes())
    return "P1_A01_s1_w1"


def _missing_channel(src: Path) -> str:
    f = next(src.glob("P1_B03_s2_w2*.tif"))
    f.unlink()
    return "P1_B03_s2_w1"


def _no_layout(src: Path) -> str:
    tifffile.imwrite(src / "overview.tif", np.zeros((24, 31), np.uint16))
    return "overview.tif"


@pytest.mark.parametrize(
    "damage, what",
    [
        (_corrupt, "unreadable TIFF"),
        (_truncated, "(unreadable TIFF|truncated)"),
        (_mixed_shape, "image is 24x30 uint16, other files are 24x31 uint16"),
        (_mixed_dtype, "image is 24x31 uint8, other files are 24x31 uint16"),
        (_duplicate, "duplicate of"),
        (_missing_channel, "has no file for channel"),
        (_no_layout, "does not match the imagexpress layout"),
    ],
)
def test_bad_input_one_line_error_nothing_written(tmp_path, damage, what):
    write_ixm(tmp_path / "src", IXM_FIELDS)
    name = damage(tmp_path / "src")
    out = tmp_path / "o.ome.zarr"
    with pytest.raises(PlateError) as info:
        convert(tmp_path / "src", out, cluster="threads", progress=False)
    msg = str(info.value)
    assert "\n" not in msg and name in msg and re.search(what, msg), msg
    assert not out.exists()


def test_corrupt_pixel_data_found_while_writing_leaves_no_plate_metadata(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for well in ("A01", "A02", "A03"):
        tifffile.imwrite(
            src / f"P_{well}_s1_w1.tif",
            rng.integers(0, 60000, (32, 32), dtype=np.uint16),
            compression="zlib",
        )
    bad = src / "P_A02_s1_w1.tif"
    with tifffile.TiffFile(bad) as tf:
        off, cnt = tf.pages[0].dataoffsets[0], tf.pages[0].databytecounts[0]
    raw = bytearray(bad.read_bytes())
    raw[off : off + cnt] = b"\xff" * cnt  # header intact, compressed stream garbage
    bad.write_bytes(bytes(raw))
    out = tmp_path / "o.ome.zarr"
    with pytest.raises(PlateError, match=r"P_A02_s1_w1\.tif: unreadable TIFF") as info:
        convert(src, out, cluster="threads", progress=False)
    assert "\n" not in str(info.value)
    assert "ome" not in (read_root_attrs(out) or {})
    with pytest.raises(PlateError):
        open_plate(out)


def test_several_timepoints_need_a_choice(tmp_path):
    for t in (1, 2):
        write_ixm(tmp_path / "src" / f"TimePoint_{t}", IXM_FIELDS[:2], seed=t)
    with pytest.raises(PlateError, match="2 TimePoints.*--timepoint"):
        plan_conversion(tmp_path / "src")
    plate = convert(
        tmp_path / "src",
        tmp_path / "o.ome.zarr",
        timepoint=2,
        cluster="threads",
        progress=False,
    )
    ref = tifffile.imread(next((tmp_path / "src" / "TimePoint_2").glob("P1_A01_s3_w2*.tif")))
    np.testing.assert_array_equal(plate.read_field(FieldKey("A", "01", 1), 1), ref)


def test_channel_names_count(tmp_path):
    write_ixm(tmp_path / "src", IXM_FIELDS[:2])
    with pytest.raises(PlateError, match="3 channel names .* for 2 channels"):
        plan_conversion(tmp_path / "src", channel_names=["a", "b", "c"])


# --------------------------------------------------------------------------- CLI


def test_cli_convert(tmp_path):
    from typer.testing import CliRunner

    from phirm_scale.cli import app

    write_ixm(tmp_path / "src", IXM_FIELDS[:3])
    out = tmp_path / "cli.ome.zarr"
    res = CliRunner().invoke(
        app,
        [
            "convert",
            str(tmp_path / "src"),
            str(out),
            "--cluster",
            "threads",
            "--no-progress",
            "--channel-names",
            "DAPI,CFP",
            "--levels",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "3 fields" in res.output
    plate = open_plate(out)
    assert plate.channel_names == ["DAPI", "CFP"] and plate.n_levels == 2


@pytest.mark.slow
def test_cli_bad_input_exit_2(tmp_path):
    write_ixm(tmp_path / "src", IXM_FIELDS[:2])
    _corrupt(tmp_path / "src")
    exe = Path(sys.executable).with_name("phirm-scale")
    proc = subprocess.run(
        [
            str(exe),
            "convert",
            str(tmp_path / "src"),
            str(tmp_path / "o.zarr"),
            "--cluster",
            "threads",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unreadable TIFF" in lines[0]
    assert not (tmp_path / "o.zarr").exists()
