"""Masks without an artefact channel: the components PhIRM calls artefacts, dilated."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import hand_dilate, iou
from hypothesis import given, settings
from hypothesis import strategies as st

from phirm_scale.errors import InputError, PlateError
from phirm_scale.masks import saturation_mask


def hand_field():
    """An 8-bit field (min 0, max 255, so 8-bit normalisation is the identity) with:
    a saturated blob (mean 255), a nucleus just below the rule (max 255, mean 209.99), a
    component exactly at the rule (max 255, mean 210.0), a bright nucleus whose max stays
    below saturation (max 254, mean 250) and a dim nucleus."""
    img = np.zeros((120, 120), np.uint8)
    img[10:30, 10:30] = 255  # blob: artefact
    below = np.full(100, 209, np.uint8)  # 10x10 with sum 20999 -> mean 209.99
    below[:54] = 210
    below[0] = 255  # 255 + 53*210 + 46*209 = 20999
    assert below.astype(int).sum() == 20999
    img[50:60, 10:20] = below.reshape(10, 10)
    at = np.full(100, 210, np.uint8)  # 255 + 98*210 + 165 = 21000
    at[0], at[1] = 255, 165
    assert at.astype(int).sum() == 21000
    img[50:60, 50:60] = at.reshape(10, 10)
    img[90:100, 10:20] = 250
    img[90, 10] = 254  # max 254: a bright nucleus
    img[90:100, 50:60] = 120  # a dim nucleus
    return img


def test_hand_field_components():
    img = hand_field()
    m = saturation_mask(img, dilation=0)
    expected = np.zeros(img.shape, bool)
    expected[10:30, 10:30] = True  # the saturated blob
    expected[50:60, 50:60] = True  # mean exactly 210: at the rule, an artefact
    np.testing.assert_array_equal(m.astype(bool), expected)
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}


def test_the_function_default_is_the_stage_default_4_px():
    """``saturation_mask(img)`` grows by 4 px, as ``masks --method saturation`` and ``run``
    do (docs/qc-without-ground-truth.md section 8a; the function's default was 1)."""
    from phirm_scale.stages.masks import DEFAULT_DILATIONS

    img = hand_field()
    core = np.zeros(img.shape, bool)
    core[10:30, 10:30] = True
    core[50:60, 50:60] = True
    np.testing.assert_array_equal(saturation_mask(img).astype(bool), hand_dilate(core, 4))
    assert DEFAULT_DILATIONS["saturation"] == 4


@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_hand_field_dilation(r):
    img = hand_field()
    m = saturation_mask(img, dilation=r)
    core = np.zeros(img.shape, bool)
    core[10:30, 10:30] = True
    core[50:60, 50:60] = True
    np.testing.assert_array_equal(m.astype(bool), hand_dilate(core, r))
    # a square of side s grown by a disk of radius r gains 4*s*r plus the four quarter
    # disks at its corners: for r = 1 that is one cross (4 px), so (s+2)**2 - 4 in all
    if r == 1:
        assert m[:40, :40].sum() == 22 * 22 - 4


def test_thresholds_are_phirms_parameters():
    from phirm_scale.metric import PhirmParams

    img = hand_field()
    # artefact_mean 209.9: the 'just below' nucleus (209.99) becomes an artefact too
    m = saturation_mask(img, dilation=0, params=PhirmParams(artefact_mean=209.9))
    assert m[50:60, 10:20].all()
    # saturation 254: the 'bright nucleus' (max 254, mean 250) is an artefact
    m = saturation_mask(img, dilation=0, params=PhirmParams(saturation=254))
    assert m[90:100, 10:20].all() and not m[10:30, 10:30].any()  # max 255 != 254


def test_no_artefact_gives_empty_mask():
    img = hand_field()
    img[img == 255] = 240  # nothing reaches saturation any more...
    img[0, 0] = 255  # ...but for one speck below min_area
    assert saturation_mask(img).sum() == 0
    assert saturation_mask(np.zeros((50, 50), np.uint16)).sum() == 0  # constant field


def test_normalisation_16bit_and_range():
    img = hand_field().astype(np.uint16) * 257  # 0..65535, same picture
    np.testing.assert_array_equal(
        saturation_mask(img, dilation=0), saturation_mask(hand_field(), dilation=0)
    )
    # a brighter outlier elsewhere pushes the blob below 8-bit saturation
    img2 = img.copy()
    img2[110:119, 110:119] = 65535
    img2[10:30, 10:30] = 60000
    m = saturation_mask(img2, dilation=0)
    assert not m[10:30, 10:30].any() and m[110:119, 110:119].all()


def test_bad_input():
    with pytest.raises(InputError, match="2-D"):
        saturation_mask(np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="dilation"):
        saturation_mask(hand_field(), dilation=-1)
    with pytest.raises(InputError, match="NaN"):
        saturation_mask(np.full((8, 8), np.nan))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 4))
def test_mask_is_dilated_artefact_components(seed, r):
    """Invariant: the mask is exactly the dilation of the components that
    metric.components counts as artefact area (its area at dilation 0 is theirs)."""
    from phirm_scale import metric

    rng = np.random.default_rng(seed)
    img = (rng.random((64, 64)) * 60).astype(np.uint8)
    for _ in range(rng.integers(1, 5)):
        y, x = rng.integers(0, 54, 2)
        img[y : y + rng.integers(7, 11), x : x + rng.integers(7, 11)] = rng.integers(150, 256)
    img[0, 0] = 0
    m0 = saturation_mask(img, dilation=0)
    assert int(m0.sum()) == metric.components(metric.to_uint8(img)).artefact_area
    np.testing.assert_array_equal(
        saturation_mask(img, dilation=r).astype(bool), hand_dilate(m0.astype(bool), r)
    )


def test_clean_real_fields_give_empty_masks(bbbc039_files):
    import tifffile

    areas = [int(saturation_mask(tifffile.imread(f)).sum()) for f in bbbc039_files]
    assert len(areas) == len(bbbc039_files) >= 40
    assert max(areas) == 0  # no BBBC039 field has a component with 8-bit mean >= 210


def test_composited_artefacts_on_real_fields(bbbc039_files):
    from phirm_scale.plate import FieldKey
    from phirm_scale.synthetic import make_field

    for i, f in enumerate(bbbc039_files[:6]):
        data, true = make_field(
            FieldKey("B", "02", i), size=(520, 696), seed=7, artefacts=0.02, source=f
        )
        assert true.sum() > 0.015 * true.size
        m0 = saturation_mask(data[0], dilation=0)
        # composited artefacts have hard edges: PhIRM's components are the true mask
        assert iou(m0, true) >= 0.99
        m2 = saturation_mask(data[0], dilation=2)
        t = true.astype(bool)
        assert m2.astype(bool)[t].mean() >= 0.999  # covers the truth...
        assert not (m2.astype(bool) & ~hand_dilate(t, 2)).any()  # ...within 2 px of it


def test_stage_and_cli_saturation(tmp_path, bbbc039_dir):
    from typer.testing import CliRunner

    from phirm_scale.cli import app
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.masks import make_artefact_masks

    out = tmp_path / "comp.ome.zarr"
    r = CliRunner().invoke(
        app,
        [
            "make-plate",
            str(out),
            "--rows",
            "1",
            "--columns",
            "2",
            "--size",
            "256",
            "--from-fields",
            str(bbbc039_dir),
            "--artefacts",
            "0.03",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        app,
        [
            "masks",
            str(out),
            "--channel",
            "DAPI",
            "--method",
            "saturation",
            "--dilation",
            "1",
            "--cluster",
            "threads",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "labels/artefacts written for 2 fields (2 with artefacts; method saturation)" in r.output
    p = open_plate(out)
    for k in p.fields:
        m = p.read_label(k, "artefacts")
        np.testing.assert_array_equal(m, saturation_mask(p.read_field(k, "DAPI"), dilation=1))
        assert iou(m, hand_dilate(p.read_label(k, "artefacts_true").astype(bool), 1)) >= 0.99
        rec = p.label_attrs(k, "artefacts")["mask"]
        assert rec["method"] == "saturation" and rec["dilation"] == 1
        assert rec["channel"] == "DAPI"
        assert rec["phirm_params"]["saturation"] == 255
        assert rec["phirm_params"]["artefact_mean"] == 210
    assert p.attrs["phirm_scale"]["labels_artefacts"]["method"] == "saturation"
    # same settings: resumed, nothing to do
    assert (
        make_artefact_masks(
            out, channel="DAPI", method="saturation", dilation=1, cluster="threads", progress=False
        )
        == {}
    )
    # other settings on the same label: refused, nothing written
    before = p.read_label(p.fields[0], "artefacts")
    with pytest.raises(
        PlateError, match="already has labels/artefacts made with method saturation on channel DAPI"
    ):
        make_artefact_masks(out, channel="CFP", method="otsu", cluster="threads", progress=False)
    np.testing.assert_array_equal(open_plate(out).read_label(p.fields[0], "artefacts"), before)
    # ...and replaced with --overwrite, the record following the data
    r = CliRunner().invoke(
        app,
        [
            "masks",
            str(out),
            "--channel",
            "CFP",
            "--cluster",
            "threads",
            "--no-progress",
            "--overwrite",
        ],
    )
    assert r.exit_code == 0, r.output
    q = open_plate(out)
    assert q.label_attrs(q.fields[0], "artefacts")["mask"]["method"] == "otsu"
    assert q.attrs["phirm_scale"]["labels_artefacts"]["otsu_factor"] == 0.7
    r = CliRunner().invoke(
        app,
        [
            "masks",
            str(out),
            "--method",
            "saturation",
            "--channel",
            "DAPI",
            "--dilation",
            "-1",
            "--cluster",
            "threads",
            "--no-progress",
            "--name",
            "x",
        ],
    )
    # main() prints a PhirmError as one 'error:' line with exit status 2
    assert isinstance(r.exception, PlateError), r.output
    assert "dilation must be an integer >= 0, got -1" in str(r.exception)
    assert not open_plate(out).has_label(q.fields[0], "x")
