"""Artificial masks (paper 3.4): area bins, DeepFill v2 strokes, artefact pools, specs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phirm_scale.errors import InputError
from phirm_scale.masks import (
    MASK_FAMILIES,
    RECT_BINS,
    artefact_pool_mask,
    parse_mask_spec,
    rect_mask,
    sample_mask,
    sample_masks,
    stroke_mask,
)


def _is_one_rectangle(mask: np.ndarray) -> bool:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return False
    box = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return bool(box.all()) and int(mask.sum()) == box.size


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), b=st.sampled_from(RECT_BINS))
def test_rect_mask_area_in_paper_bin_for_any_seed(seed, b):
    m = rect_mask((256, 256), b, rng=np.random.default_rng(seed))
    assert m.dtype == np.uint8 and m.shape == (256, 256)
    assert set(np.unique(m).tolist()) == {0, 1}
    frac = m.sum() / m.size
    assert b[0] <= frac < b[1]
    assert _is_one_rectangle(m)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(16, 300),
    w=st.integers(16, 300),
    lo=st.floats(0.0, 0.9),
    width=st.floats(0.02, 0.5),
)
def test_rect_mask_area_in_any_bin_and_shape(seed, h, w, lo, width):
    hi = min(1.0, lo + width)
    areas = np.outer(np.arange(1, h + 1), np.arange(1, w + 1))
    # brute force; bin edges within 1e-9 px count as inside, as rect_mask documents (0.02 * 112
    # * 150 is 336.00000000000006 in floats)
    low, high = lo * h * w - 1e-9, hi * h * w - 1e-9
    exists = bool(((areas >= low) & (areas < high)).any())
    if not exists:
        with pytest.raises(InputError, match="no rectangle"):
            rect_mask((h, w), (lo, hi), rng=np.random.default_rng(seed))
        return
    m = rect_mask((h, w), (lo, hi), rng=np.random.default_rng(seed))
    n = int(m.sum())
    assert low <= n < high
    assert _is_one_rectangle(m)


def test_rect_mask_positions_vary_and_stay_inside():
    rng = np.random.default_rng(3)
    centres = set()
    for _ in range(50):
        m = rect_mask((256, 256), (0.10, 0.20), rng=rng)
        ys, xs = np.nonzero(m)
        centres.add((int(ys.mean()) // 32, int(xs.mean()) // 32))
    assert len(centres) > 10  # random positions, not always centred


def test_rect_mask_impossible_bin_is_a_clear_error():
    # a 2x2 mask has pixel counts 1..4 = 25 % steps: nothing lies in [30 %, 40 %)
    with pytest.raises(InputError, match="no rectangle"):
        rect_mask((2, 2), (0.30, 0.40), rng=np.random.default_rng(0))
    with pytest.raises(InputError, match="area_range"):
        rect_mask((64, 64), (0.5, 0.2), rng=np.random.default_rng(0))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), box=st.booleans())
def test_strokes_binary_nonempty_and_reproducible(seed, box):
    a = stroke_mask((256, 256), rng=np.random.default_rng(seed), with_box=box)
    b = stroke_mask((256, 256), rng=np.random.default_rng(seed), with_box=box)
    assert a.dtype == np.uint8 and a.shape == (256, 256)
    assert set(np.unique(a).tolist()) <= {0, 1}
    assert a.sum() > 0
    np.testing.assert_array_equal(a, b)


def test_strokes_geometry_follows_deepfill_v2():
    rng = np.random.default_rng(0)
    masks = [stroke_mask((256, 256), rng=rng) for _ in range(200)]
    fracs = np.array([m.mean() for m in masks])
    # thick free-form strokes: never a full tile, typical hole a few to ~40 % of the tile
    assert fracs.max() < 0.8
    assert 0.05 < np.median(fracs) < 0.4
    # different seeds give different masks
    assert len({m.tobytes() for m in masks}) == len(masks)
    # a single thin stroke of one vertex pair: width bounds respected (width 12 -> no pixel
    # further than ~6 px + 1 from the segment's vertices' convex hull)
    m = stroke_mask(
        (256, 256),
        rng=np.random.default_rng(1),
        min_width=12,
        max_width=12,
        min_vertices=1,
        max_vertices=1,
        max_strokes=1,
    )
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(m)
    assert 5 <= dist.max() <= 8  # half the brush width (plus rasterisation)


def test_strokes_radius_scales_with_diagonal():
    # segment length ~ N(R, R/2) with R = diag/8: bigger tiles -> longer strokes
    def extent(size):
        rng = np.random.default_rng(5)
        spans = []
        for _ in range(40):
            m = stroke_mask((size, size), rng=rng, min_width=2, max_width=2)
            ys, xs = np.nonzero(m)
            spans.append(max(np.ptp(ys), np.ptp(xs)))
        return np.median(spans)

    assert extent(512) > 1.5 * extent(128)
    assert extent(128) > math.hypot(128, 128) / 8  # at least one segment of about R


def test_artefact_mask_draws_only_nonempty_pool_members():
    pool = np.zeros((4, 32, 32), np.uint8)
    pool[2, 5:9, 10:20] = 3  # any non-zero = artefact
    rng = np.random.default_rng(0)
    for _ in range(10):
        m = artefact_pool_mask(pool, rng=rng)
        assert m.dtype == np.uint8 and int(m.sum()) == 40
        assert set(np.unique(m).tolist()) == {0, 1}
    with pytest.raises(InputError, match="no mask"):
        artefact_pool_mask(np.zeros((3, 8, 8), np.uint8), rng=rng)
    with pytest.raises(InputError, match="artefact pool"):
        sample_mask("artefacts", (32, 32), rng=rng)
    with pytest.raises(InputError, match=r"\(32, 32\)"):
        sample_mask("artefacts", (16, 16), rng=rng, artefact_pool=pool)


@pytest.mark.parametrize(
    ("spec", "kind", "area"),
    [
        ("rect:10-20", "rect", (0.1, 0.2)),
        ("rect:40-50", "rect", (0.4, 0.5)),
        ("RECT:5-7.5", "rect", (0.05, 0.075)),
        ("rect", "rect", None),
        ("strokes", "strokes", None),
        ("artefacts", "artefacts", None),
        ("mix", "mix", None),
    ],
)
def test_parse_mask_spec(spec, kind, area):
    ms = parse_mask_spec(spec)
    assert ms.kind == kind
    if area is None:
        assert ms.area_range is None
    else:
        assert ms.area_range == pytest.approx(area)


@pytest.mark.parametrize("bad", ["square", "rect:20-10", "rect:10", "rect:a-b", "rect:10-120", ""])
def test_parse_mask_spec_rejects_unknown(bad):
    with pytest.raises(InputError, match="mask spec"):
        parse_mask_spec(bad)


def test_sample_mask_families_and_reproducibility():
    pool = np.zeros((2, 64, 64), np.uint8)
    pool[0, 10:30, 10:20] = 1
    for spec in MASK_FAMILIES + ("rect", "mix", "strokes+box"):
        a = sample_masks(spec, 5, (64, 64), rng=np.random.default_rng(9), artefact_pool=pool)
        b = sample_masks(spec, 5, (64, 64), rng=np.random.default_rng(9), artefact_pool=pool)
        assert a.shape == (5, 64, 64) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        assert (a.reshape(5, -1).sum(1) > 0).all()
    # 'rect' uses the paper bins only
    rng = np.random.default_rng(1)
    fr = [sample_mask("rect", (256, 256), rng=rng).mean() for _ in range(100)]
    assert min(fr) >= 0.10 and max(fr) < 0.50
    # 'mix' without a pool never needs one; with a pool it sometimes draws it
    rng = np.random.default_rng(2)
    drawn = [sample_mask("mix", (64, 64), rng=rng, artefact_pool=pool) for _ in range(60)]
    assert any(int(m.sum()) == 200 for m in drawn)
