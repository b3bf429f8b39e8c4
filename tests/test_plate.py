"""Plate API: NGFF 0.5 HCS layout, round trips, labels, derived plates, validation."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st

from phirm_scale.errors import PlateError
from phirm_scale.plate import (
    FieldKey,
    create_plate,
    create_plate_like,
    downsample2,
    open_plate,
    row_index,
    row_name,
)

FIELDS = [FieldKey("A", "01", 0), FieldKey("A", "01", 1), FieldKey("B", "03", 0)]


@pytest.fixture()
def plate(tmp_path):
    p = create_plate(
        tmp_path / "p.ome.zarr",
        rows=["A", "B"],
        columns=["01", "02", "03"],
        fields=FIELDS,
        channel_names=["DAPI", "CFP"],
        shape=(30, 41),
        dtype=np.uint16,
        n_levels=2,
        attrs={"phirm_scale": {"origin": "test"}},
    )
    rng = np.random.default_rng(0)
    data = {k: rng.integers(0, 65536, (2, 30, 41), dtype=np.uint16) for k in FIELDS}
    for k, a in data.items():
        p.write_field(k, a)
    return p, data


def test_layout_and_metadata(plate):
    p, _ = plate
    q = open_plate(p.path)
    assert q.rows == ["A", "B"] and q.columns == ["01", "02", "03"]
    assert q.fields == FIELDS
    assert q.wells == [("A", "01"), ("B", "03")]
    assert q.channel_names == ["DAPI", "CFP"]
    assert q.field_shape == (30, 41) and q.dtype == np.uint16
    assert q.n_levels == 2
    assert q.attrs == {"phirm_scale": {"origin": "test", "command": "create-plate"}}
    root = json.loads((p.path / "zarr.json").read_text())
    plate_md = root["attributes"]["ome"]["plate"]
    assert root["attributes"]["ome"]["version"] == "0.5"
    assert plate_md["field_count"] == 2
    assert [w["path"] for w in plate_md["wells"]] == ["A/01", "B/03"]
    arr = zarr.open_array(str(p.path / "A/01/1/0"), mode="r")
    assert arr.shape == (1, 2, 1, 30, 41)
    assert arr.chunks == (1, 1, 1, 30, 41)  # one chunk = one field per channel
    codecs = json.loads((p.path / "A/01/1/0/zarr.json").read_text())["codecs"]
    blosc = [c for c in codecs if c["name"] == "blosc"][0]["configuration"]
    assert blosc["cname"] == "lz4" and blosc["shuffle"] == "shuffle"


def test_round_trip_and_dask(plate):
    p, data = plate
    q = open_plate(p.path)
    for k, a in data.items():
        np.testing.assert_array_equal(q.read_field(k), a)
        np.testing.assert_array_equal(q.read_field(k, "CFP"), a[1])
        np.testing.assert_array_equal(q.read_field(k, 0), a[0])
        d = q.dask_field(k, "CFP")
        assert d.shape == (30, 41) and d.numblocks == (1, 1)
        np.testing.assert_array_equal(d.compute(scheduler="sync"), a[1])
    assert q.missing_fields() == []


def test_level1_is_block_mean(plate):
    p, data = plate
    a = data[FIELDS[0]][0].astype(np.float64)
    lvl = open_plate(p.path).read_field(FIELDS[0], "DAPI", level=1)
    assert lvl.shape == (15, 21)
    # independent: mean of each 2x2 block; the odd last column is its own edge copy
    y0, x0 = 4, 6
    expected = np.rint(a[2 * y0 : 2 * y0 + 2, 2 * x0 : 2 * x0 + 2].mean())
    assert lvl[y0, x0] == expected
    assert lvl[3, 20] == np.rint(a[6:8, 40].mean())


def test_downsample_constant_and_dtype():
    a = np.full((5, 7), 1234, np.uint16)
    d = downsample2(a)
    assert d.shape == (3, 4) and d.dtype == np.uint16 and (d == 1234).all()


def test_channel_errors_and_read_only(plate):
    p, data = plate
    q = open_plate(p.path)
    with pytest.raises(PlateError, match="no channel 'GFP'"):
        q.channel_index("GFP")
    with pytest.raises(PlateError, match="no channel 5"):
        q.channel_index(5)
    with pytest.raises(PlateError, match="read-only"):
        q.write_field(FIELDS[0], data[FIELDS[0]])
    with pytest.raises(PlateError, match="no field"):
        q.read_field(("C", "01", 0))
    with pytest.raises(PlateError, match="shape"):
        open_plate(p.path, mode="r+").write_field(FIELDS[0], np.zeros((2, 3, 3), np.uint16))


def test_labels(plate):
    p, data = plate
    q = open_plate(p.path)  # labels may be added to a read-only plate
    lab = np.zeros((30, 41), np.uint8)
    lab[3:9, 10:20] = 1
    assert not q.has_label(FIELDS[1], "artefacts")
    q.write_label(FIELDS[1], "artefacts", lab)
    q.write_label(FIELDS[1], "cells", lab.astype(np.uint16) * 7)
    assert q.has_label(FIELDS[1], "artefacts") and not q.has_label(FIELDS[0], "artefacts")
    np.testing.assert_array_equal(q.read_label(FIELDS[1], "artefacts"), lab)
    assert q.read_label(FIELDS[1], "cells").dtype == np.uint16
    assert q.label_names(FIELDS[1]) == ["artefacts", "cells"]
    # image data untouched
    np.testing.assert_array_equal(q.read_field(FIELDS[1]), data[FIELDS[1]])
    with pytest.raises(PlateError, match="no label"):
        q.read_label(FIELDS[0], "artefacts")
    with pytest.raises(PlateError, match="uint8/16/32"):
        q.write_label(FIELDS[0], "x", lab.astype(np.float32))


def test_valid_ngff_and_ome_zarr_reader(plate):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v05.hcs import HCS

    p, data = plate
    p.write_label(FIELDS[0], "artefacts", np.ones((30, 41), np.uint8))
    hcs = HCS.from_zarr(zarr.open_group(str(p.path), mode="r"))
    assert hcs.n_wells == 2
    node = list(Reader(parse_url(str(p.path)))())[0]
    assert [type(s).__name__ for s in node.specs] == ["Plate"]
    spec = node.specs[0]
    assert spec.row_names == ["A", "B"] and spec.col_names == ["01", "02", "03"]
    assert spec.well_paths == ["A/01", "B/03"]
    # the stitched plate image: well A/01 field 0 in the top-left tile
    grid = np.asarray(node.data[0])
    np.testing.assert_array_equal(grid[0, :, 0, :30, :41], data[FIELDS[0]])
    well = list(Reader(parse_url(str(p.path / "A/01")))())[0]
    assert "Well" in [type(s).__name__ for s in well.specs]
    img = list(Reader(parse_url(str(p.path / "A/01/1")))())[0]
    assert img.metadata["channel_names"] == ["DAPI", "CFP"]
    np.testing.assert_array_equal(np.asarray(img.data[0])[0, :, 0], data[FIELDS[1]])


def test_create_plate_like(plate, tmp_path):
    p, data = plate
    out = create_plate_like(
        p,
        tmp_path / "out.ome.zarr",
        channel_names=["DAPI"],
        attrs={"phirm_scale": {"model": "telea"}},
    )
    assert out.fields == p.fields and out.field_shape == p.field_shape
    assert out.rows == p.rows and out.columns == p.columns and out.dtype == p.dtype
    assert out.channel_names == ["DAPI"] and out.attrs["phirm_scale"]["model"] == "telea"
    assert out.missing_fields() == FIELDS
    with pytest.raises(PlateError, match=r"field A01/0: image data incomplete"):
        out.read_field(FIELDS[0])  # never written: an error, not zeros
    out.write_field(FIELDS[0], data[FIELDS[0]][:1])
    assert out.missing_fields() == FIELDS[1:]
    np.testing.assert_array_equal(
        open_plate(out.path).read_field(FIELDS[0], "DAPI"), data[FIELDS[0]][0]
    )
    with pytest.raises(PlateError, match="exists"):
        create_plate_like(p, tmp_path / "out.ome.zarr")
    again = create_plate_like(p, tmp_path / "out.ome.zarr", overwrite=True)
    assert again.channel_names == ["DAPI", "CFP"]


def test_not_a_plate(tmp_path):
    with pytest.raises(PlateError, match="no such plate"):
        open_plate(tmp_path / "nope.ome.zarr")
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(PlateError, match="not an OME-Zarr HCS plate"):
        open_plate(tmp_path / "g.zarr")
    (tmp_path / "notzarr").mkdir()
    (tmp_path / "notzarr" / "keep.txt").write_text("x")
    with pytest.raises(PlateError, match="not a Zarr store"):
        create_plate(
            tmp_path / "notzarr",
            rows=["A"],
            columns=["01"],
            fields=[("A", "01", 0)],
            channel_names=["a"],
            shape=(4, 4),
            dtype="uint8",
            overwrite=True,
        )


def test_pickle(plate):
    p, _ = plate
    q = pickle.loads(pickle.dumps(open_plate(p.path)))
    assert q.fields == FIELDS and not q.writable


@given(st.integers(0, 2000))
def test_row_name_inverse(i):
    assert row_index(row_name(i)) == i


def test_row_names():
    assert [row_name(i) for i in (0, 15, 25, 26, 31)] == ["A", "P", "Z", "AA", "AF"]


def test_field_view(plate):
    from phirm_scale.plate import open_field_view

    p, data = plate
    v = open_field_view(p.path, FIELDS[2])
    assert v.fields == [FIELDS[2]] and v.channel_names == ["DAPI", "CFP"]
    np.testing.assert_array_equal(v.read_field(FIELDS[2]), data[FIELDS[2]])
    with pytest.raises(PlateError, match="no field"):
        open_field_view(p.path, ("B", "02", 0))


@pytest.mark.slow
def test_zero_fields_and_labels_keep_their_chunks_while_other_threads_use_zarr_config(tmp_path):
    # Another thread entering and leaving zarr.config.set (what a concurrent writer using that
    # global context did) must not make this thread skip the chunks of an all-zero field or
    # label: a completed field missing a chunk file reads as damaged ("masks --cluster
    # threads" then "inpaint" failed so in CI once).
    import sys
    import threading

    keys = [FieldKey("A", "01", 0)]
    p = create_plate(
        tmp_path / "z.ome.zarr",
        rows=["A"],
        columns=["01"],
        fields=keys,
        channel_names=["DAPI"],
        shape=(512, 512),
        dtype=np.uint16,
        n_levels=3,
    )
    stop = threading.Event()

    def toggler():
        while not stop.is_set():
            with zarr.config.set({"array.write_empty_chunks": True}):
                pass

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    t = threading.Thread(target=toggler, daemon=True)
    t.start()
    try:
        zero = np.zeros((512, 512), np.uint8)
        for i in range(30):
            p.write_label(keys[0], f"z{i}", zero)
            p.write_field(keys[0], np.zeros((1, 512, 512), np.uint16))
            for lev in ("0", "1", "2"):
                label = p.path / keys[0].path / "labels" / f"z{i}" / lev / "c"
                image = p.path / keys[0].path / lev / "c"
                assert len([f for f in label.rglob("*") if f.is_file()]) == 1, (i, lev)
                assert len([f for f in image.rglob("*") if f.is_file()]) == 1, (i, lev)
            np.testing.assert_array_equal(p.read_label(keys[0], f"z{i}"), zero)
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old_interval)
    assert zarr.config.get("array.write_empty_chunks") is False  # the global left as found


def test_every_name_of_the_former_plate_module_is_importable_from_phirm_scale_plate():
    """plate.py became a package (issue 21): what it defined is still ``phirm_scale.plate.X``,
    the same object as in the module that now holds it, and __all__ is unchanged."""
    import importlib

    import phirm_scale.plate as plate

    where = {
        "keys": "FieldKey FieldKeyLike row_name row_index",
        "ngff": "NGFF_VERSION _AXES _DIMS _ALL_CHUNKS _LABEL_TITLES _COLORS _LABEL_COLORS "
        "_OTHER_LABEL_COLORS RANGE_KEY _zarr _compressor _level_shape downsample2 _multiscales "
        "_omero label_color _field_attrs",
        "markers": "_group_marker field_done read_field_marker read_root_attrs",
        "fields": "_read_one _missing_chunk _checked_array _create_field_group _write_field_data",
        "store": "Plate open_field_view open_plate display_metadata",
        "create": "remove_store _check_layout _prepare_output _create_layout "
        "_write_plate_metadata create_plate create_plate_like",
        "viewer": "intensity_range data_windows write_viewer_metadata set_display_metadata "
        "_scale_multiscales",
    }
    for module, names in where.items():
        m = importlib.import_module(f"phirm_scale.plate.{module}")
        for name in names.split():
            assert getattr(plate, name) is getattr(m, name), name
    from phirm_scale.errors import OutputError
    from phirm_scale.outputs import ATTRS_KEY

    assert plate.ATTRS_KEY is ATTRS_KEY and plate.PlateError is PlateError
    assert plate.OutputError is OutputError
    assert plate.NGFF_VERSION == "0.5" and plate.RANGE_KEY == "intensity_p0.1_p99.9"
    assert sorted(plate.__all__) == sorted(
        "FieldKey FieldKeyLike Plate open_plate create_plate create_plate_like row_name "
        "row_index NGFF_VERSION ATTRS_KEY open_field_view field_done read_field_marker "
        "read_root_attrs remove_store downsample2 intensity_range set_display_metadata "
        "display_metadata".split()
    )


def test_importing_the_plate_package_leaves_zarr_and_dask_unimported():
    """``import phirm_scale.plate`` stays light: zarr and dask load on first use."""
    import subprocess
    import sys

    code = "import sys, phirm_scale.plate; print([m for m in ('zarr', 'dask') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
