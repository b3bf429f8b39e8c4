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
