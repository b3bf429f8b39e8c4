"""Reference-free field checks against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phirm_scale import fieldqc
from phirm_scale.errors import InputError


def test_focus_score_by_hand():
    img = np.array([[0, 255], [255, 255]], np.uint8)  # scaled: 0, 1, 1, 1
    # mean 3/4; variance ((3/4)**2 + 3 * (1/4)**2) / 4 = 3/16; score (3/16) / (3/4) = 1/4
    assert fieldqc.focus_score(img) == pytest.approx(0.25, abs=1e-15)
    img16 = np.array([[0, 65535], [65535, 65535]], np.uint16)
    assert fieldqc.focus_score(img16) == pytest.approx(0.25, abs=1e-15)
    # floats are taken as already scaled: 2, 4 -> mean 3, variance 1, score 1/3
    assert fieldqc.focus_score(np.array([[2.0, 4.0]])) == pytest.approx(1 / 3)
    assert fieldqc.focus_score(np.zeros((4, 4), np.uint16)) == 0.0


def test_saturation_percentages_by_hand():
    img = np.full((10, 10), 300, np.uint16)
    img[0, :3] = 65535  # 3 of 100 at the dtype maximum
    assert fieldqc.percent_saturated(img) == pytest.approx(3.0)
    assert fieldqc.percent_maximal(img) == pytest.approx(3.0)
    img[0, :3] = 4000
    img[5, :2] = 4000  # a 12-bit camera: 5 px at its own maximum, none at 65535
    assert fieldqc.percent_saturated(img) == 0.0
    assert fieldqc.percent_maximal(img) == pytest.approx(5.0)
    assert fieldqc.percent_saturated(img, saturation=4000) == pytest.approx(5.0)


def _ring_power_by_hand(img):
    """The radial power spectrum written out: a matrix DFT (no FFT), rings by loops."""
    h, w = img.shape
    x = img.astype(np.float64)
    x = x - x.mean()
    mad = np.median(np.abs(x))
    x = x / mad
    wy = np.exp(-2j * np.pi * np.outer(np.arange(h), np.arange(h)) / h)
    wx = np.exp(-2j * np.pi * np.outer(np.arange(w), np.arange(w)) / w)
    power = np.abs(wy @ x @ wx) ** 2
    rings = {}
    for i in range(h):
        for j in range(w):
            ry, rx = min(i, h - 1 - i), min(j, w - 1 - j)
            r = int(math.floor(math.sqrt(ry * ry + rx * rx))) + 1
            rings[r] = rings.get(r, 0.0) + power[i, j]
    top = min(h, w) // 8
    return {r: rings[r] for r in range(2, top)}


def test_power_spectrum_by_hand():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 4096, (40, 48)).astype(np.uint16)
    img[10:20, 5:30] += 3000
    radii, power = fieldqc.radial_power_spectrum(img)
    hand = _ring_power_by_hand(img)
    assert radii.tolist() == sorted(hand) == [2, 3, 4]
    np.testing.assert_allclose(power, [hand[r] for r in radii], rtol=1e-9)
    # least squares slope of 3 points, from its textbook formula
    x = [math.log(r) for r in (2, 3, 4)]
    y = [math.log(hand[r]) for r in (2, 3, 4)]
    xm, ym = sum(x) / 3, sum(y) / 3
    slope = sum((a - xm) * (b - ym) for a, b in zip(x, y, strict=True)) / sum(
        (a - xm) ** 2 for a in x
    )
    assert fieldqc.power_log_log_slope(img) == pytest.approx(slope, rel=1e-9)


def test_power_slope_two_rings_and_degenerate():
    rng = np.random.default_rng(9)
    img = rng.random((32, 32))
    hand = _ring_power_by_hand(img)  # rings 2 and 3 only
    expected = (math.log(hand[3]) - math.log(hand[2])) / (math.log(3) - math.log(2))
    assert fieldqc.power_log_log_slope(img) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(fieldqc.power_log_log_slope(np.ones((64, 64))))
    assert math.isnan(fieldqc.power_log_log_slope(rng.random((20, 20))))  # < 2 rings


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.5, 20), st.floats(-100, 100))
def test_slope_is_intensity_invariant(seed, gain, offset):
    rng = np.random.default_rng(seed)
    img = rng.random((48, 40)) + np.linspace(0, 1, 40)[None, :]
    assert fieldqc.power_log_log_slope(img * gain + offset) == pytest.approx(
        fieldqc.power_log_log_slope(img), rel=1e-7, abs=1e-9
    )


def test_blur_steepens_slope_and_lowers_focus(bbbc039_files):
    import cv2
    import tifffile

    img = tifffile.imread(bbbc039_files[0])
    blurred = cv2.GaussianBlur(img, (0, 0), 4)
    assert fieldqc.power_log_log_slope(blurred) < fieldqc.power_log_log_slope(img) - 0.3
    assert fieldqc.focus_score(blurred) < fieldqc.focus_score(img)


def _scene():
    """Source (uint16) with a 20x20 saturated artefact and three nuclei; lo 100, hi 65535."""
    src = np.full((100, 100), 100, np.uint16)
    src[10:30, 10:30] = 65535
    src[50:60, 10:20] = 40000  # nucleus a
    src[50:60, 40:50] = 40000  # nucleus b
    src[50:60, 70:80] = 40000  # nucleus c
    return src


def test_residual_artefact_area_by_hand():
    src = _scene()
    rec = src.copy()
    rec[10:30, 10:30] = 100  # artefact removed ...
    rec[10:20, 10:20] = 65535  # ... but for a 10x10 corner: 100 px left
    assert fieldqc.residual_artefact_area(rec, lo=100, hi=65535) == 100
    rec[10:20, 10:20] = 100
    assert fieldqc.residual_artefact_area(rec, lo=100, hi=65535) == 0
    # a corner of 7x7 = 49 px is below PhIRM's 50 px minimum: not counted
    rec[10:17, 10:17] = 65535
    assert fieldqc.residual_artefact_area(rec, lo=100, hi=65535) == 0


def test_nuclei_in_holes_by_hand():
    src = _scene()
    holes = np.zeros(src.shape, np.uint8)
    holes[50:60, 10:20] = 1  # nucleus a: 100 % inside
    holes[50:56, 40:50] = 1  # nucleus b: 60 % inside
    holes[50:54, 70:80] = 1  # nucleus c: 40 % inside
    n_in, total = fieldqc.nuclei_in_holes(src, holes, lo=100, hi=65535)
    assert (n_in, total) == (2, 3)
    assert fieldqc.nuclei_in_holes(src, holes, lo=100, hi=65535, min_fraction=0.3) == (3, 3)
    # a clump (>= 2200 px) inside the holes counts 2, as PhIRM counts it
    big = np.full((120, 120), 100, np.uint16)
    big[10:60, 10:60] = 20000  # 2500 px
    big[100:110, 100:110] = 20000
    big[0, 0] = 65535
    m = np.zeros(big.shape, np.uint8)
    m[5:65, 5:65] = 1
    assert fieldqc.nuclei_in_holes(big, m) == (2, 3)


def test_field_checks_keys_and_values():
    src = _scene()
    ramp = np.linspace(20000, 40000, 10).astype(np.uint16)[None, :]  # textured nuclei:
    for x in (10, 40, 70):  # 8-bit mean 191 < 210
        src[50:60, x : x + 10] = ramp
    rec = src.copy()
    rec[10:30, 10:30] = 100
    holes = np.zeros(src.shape, np.uint8)
    holes[8:32, 8:32] = 1
    out = fieldqc.field_checks(src, rec, holes)
    assert list(out) == list(fieldqc.CHECK_VARIABLES)
    assert out["residual_artefact_area"] == 0
    assert out["nuclei_in_holes"] == 0 and out["restored_nuclei_count"] == 3
    assert out["masked_fraction_field"] == pytest.approx(24 * 24 / 1e4)
    assert out["percent_saturated"] == pytest.approx(4.0)  # 400 of 10,000 px
    assert out["percent_maximal"] == pytest.approx(4.0)
    # artefact brightness smeared into the hole (below saturation, above every nucleus)
    # is what PhIRM sees as artefact on the restored field alone
    rec[12:22, 12:22] = 50000
    assert fieldqc.field_checks(src, rec, holes)["residual_artefact_area"] == 100
    assert fieldqc.residual_artefact_area(rec, lo=100, hi=65535) == 0  # the source's range
    # the known-pixel range: min and max farther than 4 px from the holes, by hand
    far = np.ones(src.shape, bool)
    far[8 - 4 : 32 + 4, 8 - 4 : 32 + 4] = False  # the square hole grown by 4 px (a disk
    # rounds its corners; they are background, so min and max are the same either way)
    assert fieldqc.known_range(src, holes) == (float(src[far].min()), float(src[far].max()))
    rim = src.copy()
    rim[33, 20] = 65535  # a missed saturated rim pixel: ignored
    assert fieldqc.known_range(rim, holes)[1] == float(src[far].max())


# ------------------------------------------------------------- nuclei expected under holes
def _disk(src, y, x, r, hi=30000, rim=10000):
    """A textured nucleus: ``hi`` at (y, x) falling to ``rim`` at radius ``r`` (its 8-bit
    mean stays below PhIRM's artefact mean 210, as real nuclei do)."""
    yy, xx = np.mgrid[: src.shape[0], : src.shape[1]]
    d2 = (yy - y) ** 2 + (xx - x) ** 2
    inside = d2 <= r * r
    src[inside] = (hi - (hi - rim) * d2[inside] / (r * r)).astype(src.dtype)


def _nuclei_grid(shape=(200, 240), step=40, r=7, lo=500):
    """Background ``lo`` with a nucleus every ``step`` px (centres at step/2 + k*step)."""
    src = np.full(shape, lo, np.uint16)
    centres = [
        (y, x) for y in range(step // 2, shape[0], step) for x in range(step // 2, shape[1], step)
    ]
    for y, x in centres:
        _disk(src, y, x, r)
    return src, centres


def test_field_checks_segment_the_source_once_for_both_hidden_measures(monkeypatch):
    """field_checks gives the two hidden-nuclei measures of the standalone functions (same
    numbers) from one segmentation of the source, not one each."""
    src, _ = _nuclei_grid()
    holes = np.zeros(src.shape, np.uint8)
    holes[30:70, 10:90] = 1  # over 2 x 2 nuclei and their rims
    holes[130:150, 150:230] = 1
    rec = src.copy()
    rec[holes != 0] = 500
    alone = {
        "expected_hidden_nuclei": fieldqc.expected_hidden_nuclei(src, holes, radius=32),
        "expected_hidden_nuclear_area": fieldqc.expected_hidden_nuclear_area(src, holes, ring=5),
    }
    assert alone["expected_hidden_nuclei"] > 0 and alone["expected_hidden_nuclear_area"] > 0
    calls, ranges = [], []
    real, real_range = fieldqc._known_nuclei, fieldqc.known_range
    monkeypatch.setattr(fieldqc, "_known_nuclei", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(
        fieldqc, "known_range", lambda *a, **k: ranges.append(1) or real_range(*a, **k)
    )
    out = fieldqc.field_checks(src, rec, holes, hidden_radius=32, hidden_ring=5)
    assert {k: out[k] for k in alone} == alone
    assert len(calls) == 1
    assert len(ranges) == 1  # the known range is taken once, shared by every measure
    for bad in ({"hidden_radius": 0}, {"hidden_ring": 0}):
        with pytest.raises(InputError, match="must be >= 1"):
            fieldqc.field_checks(src, rec, holes, **bad)


def test_expected_hidden_nuclei_by_hand():
    src, centres = _nuclei_grid()
    n = len(centres)  # 5 x 6 = 30 nuclei of 113 px, far above PhIRM's 50 px
    big = 10_000  # the density square covers the whole field from every hole pixel
    # a 10x10 hole on background (between nuclei): density = 30 nuclei / known px
    holes = np.zeros(src.shape, bool)
    holes[35:45, 35:45] = True
    known = src.size - 100
    assert fieldqc.expected_hidden_nuclei(src, holes, radius=big) == pytest.approx(100 * n / known)
    # a 20x20 hole over nucleus (60, 60): that nucleus is hidden, 29 are seen
    holes = np.zeros(src.shape, bool)
    holes[50:70, 50:70] = True
    assert fieldqc.expected_hidden_nuclei(src, holes, radius=big) == pytest.approx(
        400 * (n - 1) / (src.size - 400)
    )
    # no holes: nothing hidden
    assert fieldqc.expected_hidden_nuclei(src, np.zeros(src.shape, bool)) == 0.0


def test_expected_hidden_nuclei_is_local():
    """The same hole hides more where the nuclei around it are dense (radius 30)."""
    src, _ = _nuclei_grid(shape=(200, 400), step=40)
    src[:, 200:] = 500  # right half: no nuclei
    _disk(src, 104, 304, 7)  # but one, far from the hole below
    dense = np.zeros(src.shape, bool)
    dense[75:85, 75:85] = True  # background between four nuclei of the left half
    sparse = np.zeros(src.shape, bool)
    sparse[35:45, 235:245] = True  # right half, > 30 px from any nucleus centre
    d = fieldqc.expected_hidden_nuclei(src, dense, radius=30)
    s = fieldqc.expected_hidden_nuclei(src, sparse, radius=30)
    # by hand: the 61x61 square around every pixel of the dense hole holds 4 nucleus centres
    # (at 60 and 100 in y and x) and 61*61 - 100 known px
    assert d == pytest.approx(100 * 4 / (61 * 61 - 100))
    assert s == 0.0


def test_expected_hidden_nuclei_counts_clumps_as_params_say():
    from phirm_scale.metric import PhirmParams

    src = np.full((120, 120), 500, np.uint16)
    _disk(src, 35, 35, 28)  # a clump of ~2460 px (>= 2200): counts clump_count
    _disk(src, 95, 95, 7)  # a nucleus of ~150 px
    holes = np.zeros(src.shape, bool)
    holes[105:115, 5:15] = True
    known = src.size - 100
    for count in (1, 2):
        p = PhirmParams(clump_count=count)
        got = fieldqc.expected_hidden_nuclei(src, holes, radius=1000, params=p)
        assert got == pytest.approx(100 * (count + 1) / known)


def test_expected_hidden_nuclear_area_by_hand():
    """Each hole component counts its area times the nucleus fraction of the non-hole
    pixels within 8 px of it."""
    lo = 500
    src = np.full((120, 160), lo, np.uint16)
    # left half (x < 80): one textured nucleus region (8-bit 125..255 with the field's
    # range, mean ~190 < PhIRM's artefact mean 210), varying along y only
    src[:, :80] = np.linspace(15000, 30000, 120).astype(np.uint16)[:, None]
    holes = np.zeros(src.shape, bool)
    holes[20:30, 30:40] = True  # inside the nucleus region: ring all nucleus -> 100
    assert fieldqc.expected_hidden_nuclear_area(src, holes) == pytest.approx(100.0)
    holes[:] = False
    holes[90:100, 120:130] = True  # on background, > 8 px from the region: 0
    assert fieldqc.expected_hidden_nuclear_area(src, holes) == 0.0
    holes[:] = False
    holes[60:70, 75:85] = True  # centred on the border x = 80: half its ring is nucleus
    assert fieldqc.expected_hidden_nuclear_area(src, holes) == pytest.approx(50.0)
    # the components add up, and a wider ring reaches the same fractions here
    holes[20:30, 30:40] = True
    assert fieldqc.expected_hidden_nuclear_area(src, holes) == pytest.approx(150.0)
    assert fieldqc.expected_hidden_nuclear_area(src, holes, ring=4) == pytest.approx(150.0)
    assert fieldqc.expected_hidden_nuclear_area(src, np.zeros(src.shape, bool)) == 0.0
    with pytest.raises(fieldqc.InputError, match="ring must be >= 1"):
        fieldqc.expected_hidden_nuclear_area(src, holes, ring=0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    radius=st.integers(5, 80),
)
def test_expected_hidden_measures_have_no_preferred_direction(seed, radius):
    """Transposing (expected_hidden_nuclei) or mirroring (both) field and holes changes
    nothing."""
    rng = np.random.default_rng(seed)
    src = np.full((90, 130), 400, np.uint16)
    for _ in range(int(rng.integers(1, 12))):
        y, x, r = int(rng.integers(90)), int(rng.integers(130)), int(rng.integers(4, 9))
        _disk(src, y, x, r, hi=int(rng.integers(20000, 40000)))
    holes = np.zeros(src.shape, bool)
    for _ in range(int(rng.integers(1, 4))):
        y, x = int(rng.integers(80)), int(rng.integers(120))
        holes[y : y + int(rng.integers(2, 15)), x : x + int(rng.integers(2, 15))] = True
    a = fieldqc.expected_hidden_nuclei(src, holes, radius=radius)
    b = fieldqc.expected_hidden_nuclei(src.T.copy(), holes.T.copy(), radius=radius)
    assert a >= 0
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    # the ring is OpenCV's elliptic element, symmetric under flips (not under transposition:
    # it is a pixel wider than tall at some sizes): mirroring the field changes nothing
    ring = 1 + radius % 12
    a = fieldqc.expected_hidden_nuclear_area(src, holes, ring=ring)
    assert 0 <= a <= holes.sum()  # a fraction of the hole area
    for flip in (np.flipud, np.fliplr):
        b = fieldqc.expected_hidden_nuclear_area(flip(src).copy(), flip(holes).copy(), ring=ring)
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


# --------------------------------------------------------------- estimated_phirm (issue 20)


def test_estimated_phirm_by_hand():
    # PhIRM's weights (paper): NCD lost 1.1**n * n, invented 2**|n|, NAD 2e-4 |a|, AAD 1e-3 |R|
    s = [1.0, 0.9, 1.0, 1.0, 1.0, 1.0, 0.95, np.nan]
    r = [0, 0, 0, 0, 1000, 0, 500, 0]
    n = [0, 0, 2, -2, 0, 0, 1, 0]
    a = [0, 0, 0, 0, 0, -500, 100, 0]
    want = [
        1.0,
        0.9,
        (10 - 1.1**2 * 2) / 10,
        (10 - 2**2) / 10,
        (10 - 1.0) / 10,
        (10 - 0.1) / 10,
        (10 - 0.5 - 0.5 - 1.1 - 0.02) / 10,
    ]
    got = fieldqc.estimated_phirm(s, r, n, a)
    np.testing.assert_allclose(got[:-1], want, rtol=1e-12)
    assert np.isnan(got[-1])  # no pseudo-hole: no estimate
    assert fieldqc.estimated_phirm([0.2], [20000], [0], [0])[0] == 0.0  # floored at 0


@settings(max_examples=200, deadline=None)
@given(
    s=st.floats(0, 1),
    r=st.floats(0, 1e5),
    n=st.integers(-20, 40),
    a=st.floats(-1e5, 1e5),
)
def test_estimated_phirm_never_exceeds_the_selfcheck(s, r, n, a):
    e = float(fieldqc.estimated_phirm([s], [r], [n], [a])[0])
    assert 0.0 <= e <= s + 1e-12
    # what the restoration left only lowers it
    assert e <= float(fieldqc.estimated_phirm([s], [0], [0], [0])[0]) + 1e-12


def _nuclei_field(seed=0):
    """256 x 512, two 256 windows; 10 discs (r 7, 3000 at the centre falling to 1500 at
    the edge) per window on a dim noisy floor."""
    rng = np.random.default_rng(seed)
    img = rng.normal(300, 20, (256, 512))
    yy, xx = np.mgrid[:256, :512]
    centres = [(40 + 45 * (i // 5), 30 + 45 * (i % 5) + 256 * w) for w in (0, 1) for i in range(10)]
    for cy, cx in centres:
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        inside = r2 <= 49
        img[inside] = 1500 + 1500 * (1 - r2[inside] / 49)  # brightest at the centre
    return np.clip(img, 0, 65535).astype(np.uint16), (yy, xx)


SLICES = [(slice(0, 256), slice(0, 256)), (slice(0, 256), slice(256, 512))]


def test_residual_terms_zero_when_the_restoration_left_nothing():
    src, (yy, xx) = _nuclei_field()
    holes = np.zeros(src.shape, np.uint8)
    holes[200:230, 20:60] = 1  # background only
    rec = src.copy()
    rec[holes != 0] = 300
    terms = fieldqc.residual_window_terms(src, rec, holes, SLICES)
    for k in fieldqc.RESIDUAL_WINDOW_VARIABLES:
        np.testing.assert_array_equal(terms[k], [0.0, 0.0], err_msg=k)
    np.testing.assert_array_equal(fieldqc.estimated_phirm([1.0, 1.0], *terms.values()), [1, 1])


def test_residual_terms_see_a_rim_the_mask_left():
    """A saturated 30 x 40 rim left in the right window: PhIRM counts it as artefact area
    (its 1,200 px) there and not in the left window."""
    src, _ = _nuclei_field()
    holes = np.zeros(src.shape, np.uint8)
    holes[200:230, 300:340] = 1
    rec = src.copy()
    rec[200:230, 300:340] = 300
    rec[195:200, 295:345] = 65535  # the rim above the hole, 5 x 50 = 250 px ...
    rec[200:225, 340:346] = 65535  # ... and right of it, 25 x 6 = 150 px: 400 px
    terms = fieldqc.residual_window_terms(src, rec, holes, SLICES)
    assert terms["residual_artefact_window"].tolist() == [0.0, 400.0]
    assert terms["residual_hidden_nuclei"][0] == 0
    est = fieldqc.estimated_phirm([1.0, 1.0], *terms.values())
    assert est[0] == 1.0 and est[1] <= 1 - 0.001 * 400 / 10 + 1e-12


def test_residual_terms_count_a_nucleus_a_fill_invented():
    """A disc of nucleus brightness drawn wholly inside a hole (an inpainting smearing a
    rim inwards) is counted as invented: -1 nucleus and minus its area, in its window only;
    a real nucleus the hole only clips is not."""
    src, (yy, xx) = _nuclei_field()
    holes = np.zeros(src.shape, np.uint8)
    holes[190:240, 100:160] = 1  # background: the fill below invents a nucleus there
    holes[35:45, 30:40] = 1  # clips the real nucleus at (40, 30)
    rec = src.copy()
    rec[190:240, 100:160] = 300
    disc = (yy - 215) ** 2 + (xx - 130) ** 2 <= 64
    rec[disc] = 2500
    terms = fieldqc.residual_window_terms(src, rec, holes, SLICES)
    assert terms["residual_hidden_nuclei"].tolist() == [-1.0, 0.0]
    assert terms["residual_hidden_nuclear_area"].tolist() == [-float(disc.sum()), 0.0]
    assert terms["residual_artefact_window"].tolist() == [0.0, 0.0]
    est = fieldqc.estimated_phirm([1.0, 1.0], *terms.values())
    np.testing.assert_allclose(est, [(10 - 2 - 2e-4 * disc.sum()) / 10, 1.0])
