"""The vectorised cut and blend of phirm_scale.inpaint against a plain per-tile loop written
here from the rules (grid, reflect padding, per-tile min-max over known pixels, linear-ramp
weights, accumulation tile by tile in grid order): equal bit for bit for any field shape,
tile, overlap and hole layout, holes on the borders and fields smaller than a tile included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from phirm_scale.inpaint import (
    blend_hole_tiles,
    blend_weight,
    cut_hole_tiles,
    hole_tiles,
    inpaint_field,
)


# ----------------------------------------------------------------------- the plain reference
def grid(length: int, tile: int, overlap: int) -> list[int]:
    """Tile starts: every ``tile - overlap`` px, plus one tile flush with the far border."""
    if length <= tile:
        return [0]
    starts = []
    s = 0
    while s + tile <= length:
        starts.append(s)
        s += tile - overlap
    if starts[-1] + tile != length:
        starts.append(length - tile)
    return starts


def ramp(tile: int, overlap: int) -> np.ndarray:
    """1 inside, falling linearly to 1/(overlap+1) at both ends over ``overlap`` px."""
    return np.array(
        [min(1.0, (p + 1) / (overlap + 1), (tile - p) / (overlap + 1)) for p in range(tile)]
    )


def plain_cut(image, hole, tile, overlap):
    img = image.astype(np.float64)
    hl = hole.copy()
    fh, fw = image.shape
    if fh < tile or fw < tile:  # mirror the field (edge pixel repeated) up to one tile
        pad = ((0, max(0, tile - fh)), (0, max(0, tile - fw)))
        img = np.pad(img, pad, mode="symmetric")
        hl = np.pad(hl, pad, mode="symmetric")
    field_known = img[~hl]
    starts, images, masks, ranges = [], [], [], []
    for y in grid(img.shape[0], tile, overlap):
        for x in grid(img.shape[1], tile, overlap):
            h = hl[y : y + tile, x : x + tile]
            if not h.any():
                continue
            t = img[y : y + tile, x : x + tile]
            k = t[~h] if (~h).any() else field_known
            lo, hi = float(k.min()), float(k.max())
            if hi <= lo:
                hi = lo + 1.0
            norm = np.clip((t - lo) / (hi - lo), 0.0, 1.0)
            norm[h] = 0.0
            starts.append((y, x))
            images.append(norm.astype(np.float32))
            masks.append(h.astype(np.float32))
            ranges.append((lo, hi))
    return starts, images, masks, ranges, img.shape


def plain_blend(starts, pred, ranges, padded_shape, hole, tile, overlap):
    acc = np.zeros(padded_shape)
    wsum = np.zeros(padded_shape)
    w = np.outer(ramp(tile, overlap), ramp(tile, overlap))
    for (y, x), p, (lo, hi) in zip(starts, pred, ranges, strict=True):
        acc[y : y + tile, x : x + tile] += w * (p.astype(np.float64) * (hi - lo) + lo)
        wsum[y : y + tile, x : x + tile] += w
    fh, fw = hole.shape
    return acc[:fh, :fw][hole] / wsum[:fh, :fw][hole]


# ----------------------------------------------------------------------- fields and holes
DTYPES = [np.uint8, np.uint16, np.int16, np.float32, np.float64]


def make_case(seed, h, w, dtype, layout, density):
    rng = np.random.default_rng(seed)
    if layout == "constant":
        image = np.full((h, w), 7, dtype)
    else:
        hi = 60000 if dtype == np.uint16 else 250 if dtype == np.uint8 else 3000
        image = (rng.random((h, w)) * hi).astype(dtype)
        if np.issubdtype(dtype, np.signedinteger) or np.issubdtype(dtype, np.floating):
            image = (image - np.asarray(hi // 2, dtype)).astype(dtype)
    hole = np.zeros((h, w), bool)
    if layout in ("random", "constant"):
        hole = rng.random((h, w)) < density
    elif layout == "borders":  # the outermost rows and columns, and a corner block
        hole[0, :] = hole[-1, :] = hole[:, 0] = hole[:, -1] = True
        hole[-max(1, h // 3) :, -max(1, w // 3) :] = True
    elif layout == "blocks":  # rectangles, some large enough to swallow whole tiles
        for _ in range(rng.integers(1, 5)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            hole[y : y + rng.integers(1, h + 1), x : x + rng.integers(1, w + 1)] = True
    elif layout == "single":
        hole[rng.integers(0, h), rng.integers(0, w)] = True
    return image, hole


case = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31),
        "h": st.integers(1, 150),
        "w": st.integers(1, 150),
        "tile": st.integers(2, 64),
        "overlap_frac": st.floats(0.0, 0.99),
        "dtype": st.sampled_from(DTYPES),
        "layout": st.sampled_from(["random", "borders", "blocks", "single", "constant"]),
        "density": st.sampled_from([0.001, 0.02, 0.3, 0.95]),
    }
)


def unpack(c):
    tile = c["tile"]
    overlap = min(tile - 1, int(c["overlap_frac"] * tile))
    image, hole = make_case(c["seed"], c["h"], c["w"], c["dtype"], c["layout"], c["density"])
    return image, hole, tile, overlap


# ----------------------------------------------------------------------- properties
@settings(max_examples=150, deadline=None)
@given(c=case)
def test_cut_equals_the_plain_per_tile_loop(c):
    image, hole, tile, overlap = unpack(c)
    assume(hole.any() and not hole.all())
    starts, images, masks, ranges, padded = plain_cut(image, hole, tile, overlap)
    got = cut_hole_tiles(image, hole, tile, overlap)
    assert [tuple(s) for s in got.starts.tolist()] == starts
    assert got.padded_shape == padded
    assert got.images.dtype == np.float32 and got.masks.dtype == np.float32
    assert got.images.shape == (len(starts), 1, tile, tile)
    np.testing.assert_array_equal(got.images[:, 0], np.array(images).reshape(-1, tile, tile))
    np.testing.assert_array_equal(got.masks[:, 0], np.array(masks).reshape(-1, tile, tile))
    np.testing.assert_array_equal(got.holes, np.array(masks).reshape(-1, tile, tile) > 0)
    np.testing.assert_array_equal(got.lo, [lo for lo, _ in ranges])
    np.testing.assert_array_equal(got.hi, [hi for _, hi in ranges])
    # what hole_tiles reports for the unpadded mask is the same grid cells
    assert hole_tiles(hole, tile, overlap) == starts


@settings(max_examples=150, deadline=None)
@given(c=case, pred_dtype=st.sampled_from([np.float32, np.float64]))
def test_blend_equals_the_plain_per_tile_loop(c, pred_dtype):
    image, hole, tile, overlap = unpack(c)
    assume(hole.any() and not hole.all())
    starts, _, _, ranges, padded = plain_cut(image, hole, tile, overlap)
    tiles = cut_hole_tiles(image, hole, tile, overlap)
    pred = np.random.default_rng(c["seed"] + 1).random((len(starts), 1, tile, tile))
    pred = pred.astype(pred_dtype)
    expected = plain_blend(starts, pred[:, 0], ranges, padded, hole, tile, overlap)
    got = blend_hole_tiles(tiles, pred, hole, tile, overlap)
    assert got.dtype == np.float64 and got.shape == (int(hole.sum()),)
    np.testing.assert_array_equal(got, expected)


def mean_fill(images, masks):
    """A model whose output depends on each tile's whole context."""
    out = images.copy()
    for i in range(len(images)):
        known = images[i][masks[i] == 0]
        out[i][masks[i] > 0] = known.mean() * 0.8 + 0.1 if known.size else 0.25
    return out


@settings(max_examples=80, deadline=None)
@given(c=case, batch_size=st.integers(1, 9))
def test_inpaint_field_equals_the_plain_loop_pipeline(c, batch_size):
    image, hole, tile, overlap = unpack(c)
    assume(hole.any() and not hole.all())
    starts, images, masks, ranges, padded = plain_cut(image, hole, tile, overlap)
    pred = mean_fill(np.array(images)[:, None], np.array(masks)[:, None])
    filled = plain_blend(starts, pred[:, 0], ranges, padded, hole, tile, overlap)
    expected = image.copy()
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        filled = np.clip(np.rint(filled), info.min, info.max)
    expected[hole] = filled.astype(image.dtype)
    got = inpaint_field(image, hole, mean_fill, tile=tile, overlap=overlap, batch_size=batch_size)
    np.testing.assert_array_equal(got, expected)


def test_blend_weight_is_the_outer_product_of_linear_ramps():
    w = blend_weight(8, 3)
    r = np.array([0.25, 0.5, 0.75, 1.0, 1.0, 0.75, 0.5, 0.25])
    np.testing.assert_array_equal(w, np.outer(r, r))
    np.testing.assert_array_equal(blend_weight(4, 0), np.ones((4, 4)))


def test_a_tile_without_known_pixels_uses_the_field_range():
    image = np.arange(64 * 96, dtype=np.uint16).reshape(64, 96)
    hole = np.zeros(image.shape, bool)
    hole[:, 40:] = True  # the tiles at x = 32 and 64 of 32 px; the one at 64 is all hole
    t = cut_hole_tiles(image, hole, 32, 0)
    assert [tuple(s) for s in t.starts.tolist()] == [(0, 32), (0, 64), (32, 32), (32, 64)]
    known = image[~hole]
    assert t.lo[1] == known.min() == 0 and t.hi[1] == known.max() == 63 * 96 + 39
    assert not t.images[1].any()  # all hole: zeros
    # the tile at (0, 32) is normalised over its own 8 known columns
    assert t.lo[0] == 32 and t.hi[0] == 31 * 96 + 39


@pytest.mark.parametrize("shape", [(1, 1), (3, 200), (200, 3), (17, 17)])
def test_fields_smaller_than_a_tile_are_mirrored(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, shape).astype(np.uint16)
    hole = np.zeros(shape, bool)
    hole[0, 0] = True
    if hole.all():
        image = np.array([[5, 9]], np.uint16)
        hole = np.array([[True, False]])
    t = cut_hole_tiles(image, hole, 32, 8)
    assert t.padded_shape == (max(32, image.shape[0]), max(32, image.shape[1]))
    # the mirrored copy of the hole pixel is a hole in the padded tile too
    assert t.holes[0, 0, 0]
    if 2 * image.shape[1] - 1 < 32:  # [a b c | c b a]: column 0 comes back at 2W-1
        assert t.holes[0, 0, 2 * image.shape[1] - 1] == hole[0, 0]
