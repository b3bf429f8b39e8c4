"""Viewer-ready plates: omero contrast windows from the data, pixel size from the TIFF
metadata, label names that say what they are, the mask copied into the inpainted plate;
all read back with ome-zarr's Reader (what napari-ome-zarr uses)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from phirm_scale.plate import open_plate


def _nodes(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    return list(Reader(parse_url(str(path)))())


@pytest.fixture(scope="module")
def converted(tmp_path_factory, bbbc039_files):
    from phirm_scale.stages.convert import convert

    root = tmp_path_factory.mktemp("viewer")
    src = root / "tiffs"
    src.mkdir()
    files = sorted(bbbc039_files)[:6]
    for f in files:
        (src / f.name).symlink_to(f)
    plate = convert(
        src,
        root / "p.ome.zarr",
        channel_names=["DAPI"],
        cluster="threads",
        progress=False,
    )
    return root, files, plate


def test_contrast_limits_from_the_data(converted):
    root, files, plate = converted
    # independent: full-resolution percentiles of every TIFF, median over the fields
    per_field = np.array([np.percentile(tifffile.imread(f), [0.1, 99.9]) for f in files])
    want = np.median(per_field, axis=0)
    img = _nodes(plate.path / plate.fields[0].path)[0]
    ((lo, hi),) = img.metadata["contrast_limits"]
    span = want[1] - want[0]
    assert abs(lo - want[0]) < 0.02 * span and abs(hi - want[1]) < 0.02 * span
    assert hi < 0.1 * 65535  # not the dtype range: the nuclei are visible
    # every field carries the same plate-wide window
    for k in plate.fields:
        assert _nodes(plate.path / k.path)[0].metadata["contrast_limits"] == [[lo, hi]]


def test_pixel_size_from_tiff_metadata(converted):
    root, files, plate = converted
    with tifffile.TiffFile(files[0]) as tf:
        want = float(tf.pages[0].tags["UIC1tag"].value["XCalibration"])
    import zarr

    ome = dict(zarr.open_group(str(plate.path / plate.fields[0].path), mode="r").attrs)["ome"]
    ms = ome["multiscales"][0]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][-2:] == [want, want]
    assert [a.get("unit") for a in ms["axes"] if a["name"] in "yx"] == ["micrometer"] * 2


def test_inpainted_plate_carries_mask_and_windows(converted):
    from phirm_scale.stages.inpaint import inpaint_plate

    root, files, plate = converted
    k = plate.fields[0]
    # a hand-made hole label on every field (a square), then inpaint
    for key in plate.fields:
        m = np.zeros(plate.field_shape, np.uint8)
        m[100:140, 200:260] = 1
        plate.write_label(key, "artefacts", m)
    out = root / "p_inpainted.ome.zarr"
    inpaint_plate(plate.path, out, channel="DAPI", cluster="threads", progress=False)
    nodes = _nodes(out / k.path)
    names = [n.metadata.get("name") for n in nodes]
    assert "artefact mask (holes inpainted)" in names
    restored = open_plate(out)
    lab = restored.read_label(k, "artefacts")
    assert int(lab.sum()) == 40 * 60 and lab[100:140, 200:260].all()
    assert (
        nodes[0].metadata["contrast_limits"]
        == _nodes(plate.path / k.path)[0].metadata["contrast_limits"]
    )


# ----------------------------------------------------------------- composite + inpainted plates
# What make-plate and inpaint write (issue 22, item 4): the nuclei visible (windows from the
# data, not 0-65535), only the restored channel shown in the inpainted plate, the two labels
# in two colours and lying on the image (same pixel size), rdefs complete; read back by
# ome-zarr-py (napari's reader) and ngff-zarr. iohub: see test_rdefs_as_iohub_reads_them.


@pytest.fixture(scope="module")
def composite(tmp_path_factory):
    from conftest import composite_plate, restore_plate

    root = tmp_path_factory.mktemp("viewer_composite")
    src = composite_plate(root / "c.ome.zarr")
    out = restore_plate(src, root / "c_inpainted.ome.zarr")
    return src, out


def _omero(path, key):
    import zarr

    return dict(zarr.open_group(str(path / key.path), mode="r").attrs)["ome"]["omero"]


def test_composite_plate_nuclei_visible(composite):
    src, _ = composite
    plate = open_plate(src)
    c_dapi, c_clean = plate.channel_index("DAPI"), plate.channel_index("DAPI_clean")
    # independent: the ground truth's own full-resolution percentiles, median over the fields
    per_field = np.array(
        [np.percentile(plate.read_field(k)[c_clean], [0.1, 99.9]) for k in plate.fields]
    )
    want = np.median(per_field, axis=0)
    span = want[1] - want[0]
    for k in plate.fields:
        meta = _nodes(src / k.path)[0].metadata
        limits = meta["contrast_limits"]
        for c in (c_dapi, c_clean):  # the damaged DAPI spans the nuclei, not the artefacts
            lo, hi = limits[c]
            assert abs(lo - want[0]) < 0.05 * span and abs(hi - want[1]) < 0.05 * span
            assert hi < 0.1 * 65535
        # the damage shown, CFP and the ground truth a click away
        assert meta["visible"] == [True, False, False]
        assert meta["channel_names"] == ["DAPI", "CFP", "DAPI_clean"]


def test_inpainted_plate_shows_only_the_restored_channel(composite):
    src, out = composite
    restored = open_plate(out)
    c = restored.channel_index("DAPI")
    for k in restored.fields:
        meta = _nodes(out / k.path)[0].metadata
        want = [name == "DAPI" for name in restored.channel_names]
        assert meta["visible"] == want
        lo, hi = meta["contrast_limits"][c]
        img = restored.read_field(k)[c]
        # the restored image has no artefacts: the plate's window holds most of each
        # field's pixels, and nearly none lie above it (nuclei not clipped to white)
        assert np.mean((img >= lo) & (img <= hi)) > 0.9 and np.mean(img > hi) < 0.01
        assert hi < 0.1 * 65535


def _label_node(field_path, name):
    # opened at the label, the reader also yields its image and that image's labels
    nodes = _nodes(field_path / "labels" / name)
    (node,) = [n for n in nodes if str(n.zarr.path).rstrip("/").endswith(f"labels/{name}")]
    return node


def test_labels_distinct_colours_on_the_image(composite):
    src, out = composite
    k = open_plate(src).fields[0]
    colours = {}
    for store, name in ((src, "artefacts_true"), (src, "artefacts"), (out, "artefacts")):
        node = _label_node(store / k.path, name)
        colours[(store.name, name)] = tuple(node.metadata["color"][1])
        # the label lies on its image: the same y/x scale (pixel size) as the image
        img = _nodes(store / k.path)[0]
        assert (
            node.metadata["coordinateTransformations"][0][0]["scale"][-2:]
            == img.metadata["coordinateTransformations"][0][0]["scale"][-2:]
        )
    assert colours[(src.name, "artefacts")] != colours[(src.name, "artefacts_true")]
    assert colours[(src.name, "artefacts")] == colours[(out.name, "artefacts")]


def test_composite_pixel_size_from_the_source_tiffs(composite, bbbc039_files):
    src, out = composite
    with tifffile.TiffFile(sorted(bbbc039_files)[0]) as tf:
        want = float(tf.pages[0].tags["UIC1tag"].value["XCalibration"])
    for store in (src, out):
        img = _nodes(store / open_plate(store).fields[0].path)[0]
        assert img.metadata["coordinateTransformations"][0][0]["scale"][-2:] == [want, want]


def test_ngff_zarr_reads_plates(composite, tmp_path):
    ngff_zarr = pytest.importorskip("ngff_zarr")
    from phirm_scale.synthetic import make_plate

    synth = make_plate(tmp_path / "s.ome.zarr", rows=1, columns=2, size=64).path
    for store in (*composite, synth):
        plate = open_plate(store)
        hcs = ngff_zarr.from_hcs_zarr(str(store))
        assert len(hcs.wells) == len(plate.wells)
        for k in plate.fields:
            im = hcs.get_well(k.row, k.column).get_image(k.field)
            chans = im.metadata.omero.channels
            assert [ch.label for ch in chans] == plate.channel_names
            limits = _nodes(store / k.path)[0].metadata["contrast_limits"]
            for ch, (lo, hi) in zip(chans, limits, strict=True):
                assert (ch.window.start, ch.window.end) == (lo, hi)
                assert ch.window.end < ch.window.max  # not the dtype range
            units = im.images[0].axes_units or {}
            if store == synth:  # synthetic nuclei have no pixel size: none is invented
                assert im.images[0].scale["x"] == 1.0 and not units.get("x")
            else:
                assert im.images[0].scale["x"] == pytest.approx(0.645, abs=0.05)
                assert units["y"] == units["x"] == "micrometer"


def test_rdefs_as_iohub_reads_them(composite):
    # iohub (0.3, Python >= 3.12) reads no position of a plate whose omero.rdefs lacks
    # defaultT / defaultZ; on Python 3.11 only iohub 0.2 installs, which reads NGFF 0.4 on
    # zarr 2 and not these plates, so the fields iohub's model requires are checked here
    for store in composite:
        for k in open_plate(store).fields:
            omero = _omero(store, k)
            assert omero["rdefs"] == {"model": "color", "defaultT": 0, "defaultZ": 0}
            for ch in omero["channels"]:
                assert set(ch["window"]) == {"min", "max", "start", "end"}
                assert isinstance(ch["active"], bool) and ch["label"] and len(ch["color"]) == 6


def test_label_written_after_convert_lies_on_the_image(converted):
    root, files, plate = converted
    k = plate.fields[1]
    plate.write_label(k, "nuclei", np.ones(plate.field_shape, np.uint8))
    lab = _label_node(plate.path / k.path, "nuclei")
    img = _nodes(plate.path / k.path)[0]
    assert (
        lab.metadata["coordinateTransformations"][0][0]["scale"]
        == img.metadata["coordinateTransformations"][0][0]["scale"]
    )
    assert img.metadata["coordinateTransformations"][0][0]["scale"][-1] != 1.0


def test_saturated_pixels_left_out_of_the_window():
    from phirm_scale.plate import intensity_range

    rng = np.random.default_rng(0)
    field = rng.integers(100, 2000, size=(1, 64, 64)).astype(np.uint16)
    field[0, :8] = 65535  # one eighth saturated
    ((lo, hi),) = intensity_range(field, step=1)
    assert 100 <= lo < 110 and 1990 < hi < 2000
    flat = np.zeros((2, 16, 16), np.uint16)
    flat[1] = 65535
    assert intensity_range(flat, step=1) == [[0.0, 0.0], [65535.0, 65535.0]]


def test_flat_channel_gets_a_nonempty_window(tmp_path):
    from phirm_scale.plate import create_plate, data_windows

    p = create_plate(
        tmp_path / "flat.ome.zarr",
        rows=["A"],
        columns=["01"],
        fields=[("A", "01", 0)],
        channel_names=["a", "b"],
        shape=(16, 16),
        dtype=np.uint16,
    )
    data = np.zeros((2, 16, 16), np.uint16)
    data[1] = 65535
    p.write_field(p.fields[0], data)
    assert data_windows(p.path, p.fields) == [[0.0, 1.0], [65534.0, 65535.0]]


def _scale(path, key):
    return _nodes(path / key.path)[0].metadata["coordinateTransformations"][0][0]["scale"]


def test_pixel_size_option(tmp_path, bbbc039_files):
    from conftest import run_cli, symlink_fields

    src = symlink_fields(sorted(bbbc039_files)[:2], tmp_path / "two")
    out = tmp_path / "p.ome.zarr"
    args = ("convert", src, out, "--cluster", "threads", "--no-progress")
    run_cli(*args, "--pixel-size", "0.5", check=True)  # the user's, over the TIFFs' 0.645
    plate = open_plate(out)
    assert _scale(out, plate.fields[0])[-2:] == [0.5, 0.5]
    for bad in ("0", "-1", "nan"):
        r = run_cli(*args[:2], tmp_path / f"bad{bad}.ome.zarr", *args[3:], "--pixel-size", bad)
        assert r.returncode == 2 and "--pixel-size must be" in r.stderr
        assert not (tmp_path / f"bad{bad}.ome.zarr").exists()
    synth = tmp_path / "s.ome.zarr"
    run_cli(
        "make-plate",
        synth,
        "--rows",
        "1",
        "--columns",
        "1",
        "--size",
        "32",
        "--pixel-size",
        "0.325",
        "--no-progress",
        check=True,
    )
    assert _scale(synth, open_plate(synth).fields[0])[-2:] == [0.325, 0.325]
