"""Tile store (paper 3.5): tiling, per-tile min-max, split by well, artefact tiles."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from phirm_scale.errors import InputError, OutputError
from phirm_scale.metric import to_uint8
from phirm_scale.synthetic import make_plate
from phirm_scale.tiles import (
    cut_tiles,
    open_tiles,
    parse_tiles_path,
    split_wells,
    tile_starts,
    write_tiles,
)


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    # 3 x 4 wells, 2 fields each, fields 100 x 150 (not multiples of the tile size 48)
    p = tmp_path_factory.mktemp("tiles") / "p.ome.zarr"
    return make_plate(p, rows=3, columns=4, fields=2, size=(100, 150), seed=1, artefacts=0.03)


@pytest.fixture(scope="module")
def store(plate, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "T.zarr"
    w = write_tiles(
        plate,
        out,
        channel="DAPI_clean",
        size=48,
        split=(0.5, 0.25, 0.25),
        seed=3,
        label="artefacts_true",
    )
    return plate, out, w


@pytest.mark.parametrize(
    ("length", "size", "stride", "expected"),
    [
        (520, 256, None, [0, 256, 264]),
        (512, 256, None, [0, 256]),
        (256, 256, None, [0]),
        (300, 256, 128, [0, 44]),
        (10, 4, 3, [0, 3, 6]),
    ],
)
def test_tile_starts(length, size, stride, expected):
    assert tile_starts(length, size, stride) == expected


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 400), size=st.integers(1, 64), stride=st.integers(1, 80))
def test_tile_starts_cover_every_pixel(length, size, stride):
    if size > length:
        with pytest.raises(InputError, match="larger than the field"):
            tile_starts(length, size, stride)
        return
    starts = tile_starts(length, size, stride)
    covered = np.zeros(length, bool)
    for s in starts:
        assert 0 <= s and s + size <= length
        covered[s : s + size] = True
    if stride <= size:
        assert covered.all()  # gaps only when asked for (stride > size)
    assert starts[-1] + size == length  # the last tile is aligned to the far border
    assert starts == sorted(set(starts))


def test_cut_tiles_normalises_each_tile():
    rng = np.random.default_rng(0)
    img = rng.integers(100, 4000, size=(70, 90)).astype(np.uint16)
    img[:32, :32] = 7  # a constant tile -> zeros
    tiles, pos = cut_tiles(img, size=32)
    assert tiles.dtype == np.uint8 and tiles.shape == (9, 32, 32)
    assert pos.tolist()[:3] == [[0, 0], [0, 32], [0, 58]]
    assert not tiles[0].any()
    for t, (y, x) in zip(tiles, pos, strict=True):
        np.testing.assert_array_equal(t, to_uint8(img[y : y + 32, x : x + 32]))
        if t.any():
            assert t.min() == 0 and t.max() == 255


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 60),
    seed=st.integers(0, 1000),
    fr=st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (1.0, 0.0, 0.0), (0.34, 0.33, 0.33)]),
)
def test_split_wells_partitions(n, seed, fr):
    wells = [f"W{i:03d}" for i in range(n)]
    s = split_wells(wells, fr, seed=seed)
    got = s["train"] + s["val"] + s["test"]
    assert sorted(got) == wells  # each well exactly once
    for name, f in zip(("train", "val", "test"), fr, strict=True):
        if f == 0:
            assert s[name] == []
        elif n >= sum(v > 0 for v in fr):
            assert len(s[name]) >= 1
        assert abs(len(s[name]) - f * n) <= 1.5
    assert split_wells(wells, fr, seed=seed) == s


def test_split_wells_rejects_bad_fractions():
    with pytest.raises(InputError, match="fractions"):
        split_wells(["A01"], (0.5, 0.6, 0.1))


def test_no_well_leaks_across_splits(store):
    plate, out, w = store
    sets = {}
    for split in ("train", "val", "test"):
        ts = open_tiles(out, split)
        assert len(ts) == w.counts[split]
        sets[split] = set(ts.wells)
        assert sets[split] == set(w.split_wells[split])
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"])
    assert not (sets["val"] & sets["test"])
    all_wells = {f"{r}{c}" for r, c in plate.wells}
    assert sets["train"] | sets["val"] | sets["test"] == all_wells
    assert len(sets["train"]) == 6 and len(sets["val"]) == 3 and len(sets["test"]) == 3


def test_tile_pixels_equal_plate_pixels(store):
    plate, out, _ = store
    ci = plate.channel_index("DAPI_clean")
    per_field = len(tile_starts(100, 48)) * len(tile_starts(150, 48))
    assert per_field == 3 * 4
    for split in ("train", "test"):
        ts = open_tiles(f"{out}:{split}")
        imgs, arts, pos = ts.images[:], ts.artefacts[:], ts.positions[:]
        for i, fkey in enumerate(ts.fields):
            row, col, f = fkey.split("/")
            key = next(k for k in plate.fields if (k.row, k.column, k.field) == (row, col, int(f)))
            y, x = pos[i]
            field = plate.read_field(key, channel=ci)
            np.testing.assert_array_equal(imgs[i], to_uint8(field[y : y + 48, x : x + 48]))
            lab = plate.read_label(key, "artefacts_true")
            np.testing.assert_array_equal(
                arts[i], (lab[y : y + 48, x : x + 48] != 0).astype(np.uint8)
            )
        # positions: every tile of each field, edge tiles aligned to the border
        assert {tuple(p) for p in pos} == {(y, x) for y in (0, 48, 52) for x in (0, 48, 96, 102)}
    assert ts.artefacts[:].max() == 1  # some artefact pixels exist in the synthetic plate


def test_store_attrs_and_zarr_layout(store):
    plate, out, _ = store
    g = zarr.open_group(str(out), mode="r")
    assert g.metadata.zarr_format == 3
    a = dict(g.attrs)
    assert a["tile_size"] == 48 and a["stride"] == 48 and a["channel"] == "DAPI_clean"
    assert a["source"] == str(plate.path) and a["label"] == "artefacts_true"
    assert g["train/images"].dtype == np.uint8 and g["train/images"].shape[1:] == (48, 48)
    assert len(a["wells"]["test"]) == g["test/images"].shape[0]


def test_parse_split_suffix():
    assert parse_tiles_path("T.zarr:test") == (parse_tiles_path("T.zarr")[0], "test")
    assert parse_tiles_path("/a/b/T.zarr")[1] is None
    with pytest.raises(InputError, match="unknown split"):
        parse_tiles_path("T.zarr:tset")


def test_open_tiles_errors(store, tmp_path):
    _, out, _ = store
    with pytest.raises(InputError, match="contradicts"):
        open_tiles(f"{out}:test", split="train")
    with pytest.raises(InputError, match="no such tile store"):
        open_tiles(tmp_path / "missing.zarr")
    assert open_tiles(out).split == "train"


def test_write_tiles_validates_before_writing(plate, tmp_path):
    from phirm_scale.errors import PhirmError

    with pytest.raises(PhirmError):
        write_tiles(plate, tmp_path / "a.zarr", channel="GFP")
    with pytest.raises(InputError, match="no label 'artefacts'"):
        write_tiles(plate, tmp_path / "b.zarr", channel="DAPI", size=48, label="artefacts")
    with pytest.raises(InputError, match="larger than the field"):
        write_tiles(plate, tmp_path / "c.zarr", channel="DAPI", size=256)
    assert not any(tmp_path.iterdir())  # nothing half-written
    write_tiles(plate, tmp_path / "d.zarr", channel="DAPI", size=48)
    with pytest.raises(OutputError, match="output exists"):
        write_tiles(plate, tmp_path / "d.zarr", channel="DAPI", size=48)
    ts = open_tiles(tmp_path / "d.zarr:val")
    assert ts.artefacts is None and len(ts) > 0


def test_cli_tiles(plate, tmp_path):
    from typer.testing import CliRunner

    from phirm_scale.cli import app

    out = tmp_path / "cli.zarr"
    r = CliRunner().invoke(
        app,
        [
            "tiles",
            str(plate.path),
            "-o",
            str(out),
            "--channel",
            "DAPI",
            "--size",
            "64",
            "--stride",
            "32",
            "--label",
            "artefacts_true",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "test:" in r.output
    ts = open_tiles(f"{out}:test")
    assert ts.attrs["stride"] == 32
    # 100 x 150 with size 64 stride 32: y 0,32,36; x 0,32,64,86
    assert len(ts) == len(set(ts.fields)) * 3 * 4
