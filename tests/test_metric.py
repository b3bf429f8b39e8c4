"""PhIRM: every branch of Algorithm 1 on hand-built images, the scores, both modes, and the
published code's numbers on real fields."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from skimage.filters import threshold_otsu

from phirm_scale.errors import InputError
from phirm_scale.metric import (
    Components,
    PhirmParams,
    components,
    otsu_threshold_u8,
    phirm_from_components,
    psnr,
    score,
    ssim,
    to_uint8,
)
from phirm_scale.reference_impl import paper_components, published_components

PAPER = PhirmParams()
REF = PhirmParams.reference()


def canvas(shape=(128, 128)):
    return np.zeros(shape, np.uint8)


# ---------------------------------------------------------------- parameters
def test_defaults_act_at_the_papers_boundaries():
    """Algorithm 1's rules with the default parameters, on pixels placed either side of the
    boundaries not pinned by the branch tests below (area 50, clump 2200, saturation 255,
    8-connectivity) or the score tests (the penalty weights)."""
    # artefact: max 255 and mean >= 210; a mean of exactly 210.00 is one, 209.99 is not
    img = canvas()
    at = np.full(100, 210, np.uint8)
    at[:2] = (255, 165)  # 255 + 165 + 98 * 210 = 21000 -> mean 210.00
    below = at.copy()
    below[1] = 164  # 20999 -> mean 209.99
    img[10:20, 10:20] = at.reshape(10, 10)
    img[40:50, 40:50] = below.reshape(10, 10)
    assert components(img) == Components(1, 100, 1, 100)
    # foreground: above 1.0 x Otsu (skimage's Otsu here, not ours); the code's 1.1 x
    from phirm_scale.metric import label_components

    rng = np.random.default_rng(3)
    img = rng.integers(0, 40, (128, 128)).astype(np.uint8)
    img[10:40, 10:40] += 150
    img[60:75, 60:90] += 90
    t = threshold_otsu(img)
    seg = label_components(img)
    assert seg.threshold == t
    assert np.array_equal(seg.labels > 0, img > t)
    assert label_components(img, REF).threshold == pytest.approx(1.1 * t)


def test_reference_params_are_the_published_code():
    r = PhirmParams.reference()
    assert (r.otsu_factor, r.min_area, r.clump_count, r.mode) == (1.1, 51, 1, "reference")
    assert PhirmParams.for_mode("reference") == r
    with pytest.raises(InputError, match="mode"):
        PhirmParams.for_mode("fast")
    with pytest.raises(InputError, match="connectivity"):
        PhirmParams(connectivity=6)


# ---------------------------------------------------------------- components: branches
def test_component_below_and_at_min_area():
    img = canvas()
    img[10:17, 10:17] = 150  # 49 px: dropped in both modes
    img[40:45, 40:50] = 150  # 50 px: kept by the paper (>= 50), not by the code (> 50)
    img[80:85, 80:91] = 150  # 55 px: kept by both
    assert components(img) == Components(2, 105, 0, 0)
    assert components(img, REF) == Components(1, 55, 0, 0)


def test_artefact_is_saturated_and_bright():
    img = canvas()
    img[10:30, 10:30] = 255  # max 255, mean 255 -> artefact
    img[60:70, 60:70] = 150  # nucleus
    assert components(img) == Components(1, 100, 1, 400)
    assert components(img, REF) == Components(1, 100, 1, 400)


def test_saturated_nucleus_with_low_mean_is_a_nucleus():
    img = canvas()
    img[10:30, 10:30] = 120
    img[15, 15] = 255  # max 255 but mean ~ 120.3 < 210
    c = components(img)
    assert c == Components(1, 400, 0, 0)
    assert components(img, REF) == Components(1, 400, 0, 0)


def test_bright_but_unsaturated_blob_is_a_nucleus():
    img = canvas()
    img[10:30, 10:30] = 254  # mean 254 >= 210 but max < 255
    assert components(img) == Components(1, 400, 0, 0)


def test_clump_counts_two_in_paper_mode_and_one_in_reference_mode():
    img = canvas((200, 200))
    img[10:60, 10:54] = 150  # 50 x 44 = 2200 px: a clump
    img[100:103, 0:197] = 150  # 3 x 197 = 591 px
    img[150:160, 0:199] = 150  # 1990 px < 2200: single
    assert components(img) == Components(4, 2200 + 591 + 1990, 0, 0)
    assert components(img, REF) == Components(3, 2200 + 591 + 1990, 0, 0)
    img2 = canvas((200, 200))
    img2[10:60, 10:53] = 150  # 2150 px: not a clump
    assert components(img2).nuclei_count == 1


def test_diagonal_touching_blobs_are_one_component_with_8_connectivity():
    img = canvas()
    img[10:20, 10:20] = 150
    img[20:30, 20:30] = 150  # touches the first only at a corner
    assert components(img) == Components(1, 200, 0, 0)
    assert components(img, PhirmParams(connectivity=4)) == Components(2, 200, 0, 0)


def test_empty_and_constant_images_have_no_components():
    zero = Components(0, 0, 0, 0)
    assert components(canvas()) == zero
    assert components(np.full((64, 64), 100, np.uint8)) == zero
    assert components(np.full((64, 64), 255, np.uint8), REF) == zero


def test_reference_mode_uses_the_bounding_box():
    # A hollow saturated square: its own pixels average 200 (< 210, a nucleus for the paper),
    # but its bounding box holds dark background which the published code sets to 255.
    img = canvas()
    img[20:60, 20:60] = 200
    img[22:58, 22:58] = 0
    img[20, 20] = 255
    own_area = 40 * 40 - 36 * 36
    assert components(img) == Components(1, own_area, 0, 0)
    assert components(img, REF) == Components(0, 0, 1, own_area)
    assert published_components(img) == Components(0, 0, 1, own_area)


def test_otsu_factor_moves_the_threshold():
    img = np.full((128, 128), 10, np.uint8)
    img[10:30, 10:30] = 100
    img[50:70, 50:70] = 200
    t = otsu_threshold_u8(img)
    assert t >= 10
    assert t == threshold_otsu(img)
    assert components(img).nuclei_count == 2
    # with a factor that pushes the threshold above 100 only the bright blob remains
    factor = 101 / t
    assert components(img, PhirmParams(otsu_factor=factor)) == Components(1, 400, 0, 0)


def test_input_is_never_modified():
    img = canvas()
    img[20:60, 20:60] = 200
    img[22:58, 22:58] = 0
    img[20, 20] = 255
    before = img.copy()
    components(img, REF)
    components(img)
    np.testing.assert_array_equal(img, before)


# ---------------------------------------------------------------- scores
def blocks(n, size=(10, 10), value=150, shape=(128, 128)):
    img = np.zeros(shape, np.uint8)
    for i in range(n):
        r, c = divmod(i, 5)
        img[5 + 20 * r : 5 + 20 * r + size[0], 5 + 20 * c : 5 + 20 * c + size[1]] = value
    return img


def test_identical_images_score_one():
    s = score(blocks(3), blocks(3))
    assert (s.ncd, s.nad, s.aad, s.phirm) == (0.0, 0.0, 0.0, 1.0)
    assert s.psnr == math.inf and s.ssim == pytest.approx(1.0)
    assert s.as_dict()["psnr"] is None


def test_lost_nuclei():
    s = score(blocks(3), blocks(1))
    assert s.ncd == pytest.approx(1.1**2 * 2)  # a = 2
    assert s.nad == pytest.approx(0.0002 * 200)
    assert s.aad == 0
    assert s.phirm == pytest.approx((10 - 2.42 - 0.04) / 10)


def test_invented_nuclei():
    s = score(blocks(1), blocks(3))
    assert s.ncd == pytest.approx(4.0)  # 2 ** |-2|
    assert s.phirm == pytest.approx((10 - 4 - 0.04) / 10)


def test_area_change_only():
    s = score(blocks(2), blocks(2, size=(10, 12)))
    assert s.ncd == 0
    assert s.nad == pytest.approx(0.0002 * 40)
    assert s.phirm == pytest.approx(1 - 0.0008)


def test_artefact_added_and_removed():
    clean = blocks(2)
    dirty = clean.copy()
    dirty[80:110, 80:110] = 255
    assert components(dirty) == Components(2, 200, 1, 900)
    added = score(clean, dirty)
    assert (added.ncd, added.nad) == (0.0, 0.0)
    assert added.aad == pytest.approx(0.9)
    assert added.phirm == pytest.approx(0.91)
    removed = score(dirty, clean)
    assert removed.aad == pytest.approx(0.9)
    assert removed.phirm == pytest.approx(0.91)


def test_score_clamps_at_zero():
    s = score(blocks(20), canvas())
    assert s.ncd == pytest.approx(1.1**20 * 20)
    assert s.phirm == 0.0
    huge = score(canvas(), blocks(20))  # 2**20 invented penalty
    assert huge.phirm == 0.0


def test_phirm_from_components_vectorised_equals_scalar():
    rng = np.random.default_rng(1)
    rc, xc = rng.integers(0, 30, 50), rng.integers(0, 30, 50)
    ra, xa = rng.integers(0, 5000, 50), rng.integers(0, 5000, 50)
    rt, xt = rng.integers(0, 900, 50), rng.integers(0, 900, 50)
    ncd, nad, aad, ph = phirm_from_components(rc, ra, rt, xc, xa, xt)
    for i in range(50):
        a = rc[i] - xc[i]
        e_ncd = 0.0 if a == 0 else (1.1**a * a if a > 0 else 2.0 ** abs(a))
        e_nad = 0.0002 * abs(ra[i] - xa[i])
        e_aad = 0.001 * abs(rt[i] - xt[i])
        assert ncd[i] == pytest.approx(e_ncd)
        assert ph[i] == pytest.approx(max(0.0, 10 - e_ncd - e_nad - e_aad) / 10)


# ---------------------------------------------------------------- normalisation
def test_to_uint8_rounds_and_clips():
    x = np.array([[0, 1, 2, 3, 1000]], np.uint16)
    np.testing.assert_array_equal(to_uint8(x, 0, 2), [[0, 128, 255, 255, 255]])
    np.testing.assert_array_equal(to_uint8(np.array([[10.0, 20.0, 30.0]])), [[0, 128, 255]])
    # explicit range from a reference: values outside clip
    np.testing.assert_array_equal(to_uint8(np.array([[5, 50]], np.int32), 10, 40), [[0, 255]])


def test_to_uint8_lut_path_equals_float_path():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4096, (64, 64)).astype(np.uint16)
    lo, hi = 37.0, 3000.0
    expect = np.clip(np.rint((x.astype(np.float64) - lo) / (hi - lo) * 255), 0, 255)
    np.testing.assert_array_equal(to_uint8(x, lo, hi), expect.astype(np.uint8))
    np.testing.assert_array_equal(to_uint8(x.astype(np.int64), lo, hi), expect.astype(np.uint8))


def test_to_uint8_constant_image_is_zero_and_nan_is_refused():
    np.testing.assert_array_equal(to_uint8(np.full((4, 4), 7, np.uint16)), np.zeros((4, 4)))
    with pytest.raises(InputError, match="NaN"):
        to_uint8(np.array([[1.0, np.nan]]))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 4, 3), np.uint8), "2-D"),
        (np.zeros(5, np.uint8), "2-D"),
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.array([[-1.0, 1.0]]), r"\[0, 255\]"),
        (np.array([[300.0, 1.0]]), r"\[0, 255\]"),
        (np.array([[300, 1]], np.uint16), "0..255"),
    ],
)
def test_bad_images_are_refused(bad, match):
    with pytest.raises(InputError, match=match):
        components(bad)


def test_mismatched_shapes_name_the_reconstruction():
    with pytest.raises(InputError, match="recon.tif: shape"):
        score(canvas((10, 10)), canvas((10, 12)), names=("ref.tif", "recon.tif"))


def test_float_images_in_range_are_rounded():
    img = blocks(2).astype(np.float32)
    assert components(img) == components(blocks(2))


# ---------------------------------------------------------------- psnr / ssim
def test_psnr_and_ssim_match_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-10, 11, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b, data_range=255))


# ---------------------------------------------------------------- real data
def _real_u8(files):
    return [(f.name, to_uint8(tifffile.imread(f))) for f in files]


def _with_artefacts(img, seed):
    import cv2

    rng = np.random.default_rng(seed)
    out = img.copy()
    h, w = img.shape
    for _ in range(3):
        pts = np.stack([rng.integers(0, w, 3), rng.integers(0, h, 3)], 1).astype(np.int32)
        cv2.polylines(out, [pts], False, 255, thickness=int(rng.integers(3, 12)))
    y, x = rng.integers(0, h - 40), rng.integers(0, w - 40)
    cv2.circle(out, (int(x), int(y)), int(rng.integers(8, 20)), 255, -1)
    return out


def test_reference_mode_equals_published_code_on_real_fields(bbbc039_files):
    for i, (name, img) in enumerate(_real_u8(bbbc039_files)):
        for variant in (img, _with_artefacts(img, i)):
            assert components(variant, REF, name=name) == published_components(variant), name


def test_paper_mode_equals_loop_implementation_on_real_fields(bbbc039_files):
    n_art = 0
    for i, (name, img) in enumerate(_real_u8(bbbc039_files)):
        for variant in (img, _with_artefacts(img, i)):
            c = components(variant)
            assert c == paper_components(variant), name
            n_art += c.artefact_count
    assert n_art > 0  # the composited artefacts are found as artefacts somewhere


def test_real_fields_otsu_equals_skimage(bbbc039_files):
    for name, img in _real_u8(bbbc039_files):
        assert otsu_threshold_u8(img) == threshold_otsu(img), name


# ---------------------------------------------------------------- properties
images = hnp.arrays(
    np.uint8,
    st.tuples(st.integers(8, 48), st.integers(8, 48)),
    elements=st.sampled_from([0, 0, 0, 20, 90, 150, 220, 255]),
)


@settings(max_examples=60, deadline=None)
@given(images, st.sampled_from(["paper", "reference"]))
def test_components_invariant_to_transpose_and_flips(img, mode):
    p = PhirmParams.for_mode(mode, min_area=5, clump_area=60)
    c = components(img, p)
    for t in (img.T, img[::-1], img[:, ::-1], img[::-1, ::-1]):
        assert components(np.ascontiguousarray(t), p) == c


@settings(max_examples=60, deadline=None)
@given(images, st.sampled_from(["paper", "reference"]))
def test_score_of_an_image_with_itself_is_one(img, mode):
    assert score(img, img, PhirmParams.for_mode(mode), image_metrics=False).phirm == 1.0


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_otsu_equals_skimage(img):
    assert otsu_threshold_u8(img) == threshold_otsu(img)


@settings(max_examples=40, deadline=None)
@given(images)
def test_vectorised_equals_loops_on_random_images(img):
    assert components(img, REF) == published_components(img)
    assert components(img) == paper_components(img)


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_lower_saturation_means_max_equal_to_it(mode):
    # with saturation=200 a component is saturated only when its max IS 200: a blob reaching
    # 250 has max 250 and stays a nucleus even though it also holds pixels of 200
    p = PhirmParams.for_mode(mode, saturation=200, artefact_mean=190)
    img = canvas()
    img[10:30, 10:30] = 200  # max 200, mean 200: artefact
    img[60:80, 60:80] = 200
    img[70, 70] = 250  # max 250 != 200: nucleus
    assert components(img, p) == Components(1, 400, 1, 400)


def test_label_components_exposes_the_segmentation():
    from phirm_scale.metric import label_components

    img = blocks(3)
    img[80:110, 80:110] = 255
    seg = label_components(img)
    assert seg.threshold == otsu_threshold_u8(img)
    assert len(seg.ids) == 4 and seg.artefact.sum() == 1
    assert sorted(seg.area.tolist()) == [100, 100, 100, 900]
    assert np.array_equal(seg.labels > 0, img > seg.threshold)
