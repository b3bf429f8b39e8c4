"""phirm_scale.inpaint: only hole pixels change, clean tiles are skipped, stitching is
independent of batching, and a real classical model restores a real field."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from phirm_scale.errors import InputError
from phirm_scale.inpaint import hole_tiles, inpaint_field, overlap_tile_starts


def half_fill(images, masks):
    """A model that puts 0.5 in every hole (composited like the real ones)."""
    return np.where(masks > 0, np.float32(0.5), images)


def mean_fill(images, masks):
    """Fill holes with the mean of each tile's known pixels (depends on the tile's context)."""
    out = images.copy()
    for i in range(len(images)):
        known = images[i][masks[i] == 0]
        out[i][masks[i] > 0] = known.mean()
    return out


def test_tile_starts_cover_and_align_to_the_border():
    assert overlap_tile_starts(2160, 256, 0) == [0, 256, 512, 768, 1024, 1280, 1536, 1792, 1904]
    assert overlap_tile_starts(520, 256, 32) == [0, 224, 264]
    assert overlap_tile_starts(100, 256, 32) == [0]
    with pytest.raises(InputError):
        overlap_tile_starts(100, 64, 64)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(20, 300),
    w=st.integers(20, 300),
    tile=st.sampled_from([32, 64, 128]),
    overlap=st.sampled_from([0, 8, 16]),
    seed=st.integers(0, 10_000),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32]),
)
def test_only_hole_pixels_change(h, w, tile, overlap, seed, dtype):
    rng = np.random.default_rng(seed)
    image = (rng.random((h, w)) * 200).astype(dtype)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, h), rng.integers(0, w)
        mask[y : y + rng.integers(1, 30), x : x + rng.integers(1, 30)] = 1
    if mask.all():  # small fields can be covered whole: nothing to inpaint from
        with pytest.raises(InputError, match="covers the whole field"):
            inpaint_field(image, mask, mean_fill, tile=tile, overlap=overlap, batch_size=3)
        return
    out = inpaint_field(image, mask, mean_fill, tile=tile, overlap=overlap, batch_size=3)
    assert out.dtype == image.dtype and out.shape == image.shape
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])


def test_clean_tiles_are_skipped_and_work_follows_the_holes():
    image = np.random.default_rng(0).integers(0, 4000, (1024, 1024)).astype(np.uint16)
    mask = np.zeros_like(image, dtype=np.uint8)
    mask[10:20, 10:20] = 1  # one tile
    mask[700:800, 300:310] = 1  # spans two tile rows
    calls = []

    def counting(images, masks):
        calls.append(len(images))
        return half_fill(images, masks)

    out, stats = inpaint_field(image, mask, counting, tile=256, overlap=0, return_stats=True)
    assert stats.tiles_total == 16 and stats.tiles_inpainted == 3 == sum(calls)
    assert stats.hole_pixels == int(mask.sum())
    assert hole_tiles(mask, 256, 0) == [(0, 0), (512, 256), (768, 256)]
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    none, s0 = inpaint_field(image, np.zeros_like(mask), counting, return_stats=True)
    assert s0.tiles_inpainted == 0 and np.array_equal(none, image)


def test_hole_values_map_back_to_the_tile_range():
    image = np.full((64, 64), 1000, np.uint16)
    image[:, :32] = 3000
    mask = np.zeros((64, 64), np.uint8)
    mask[30:34, 30:34] = 1
    out = inpaint_field(image, mask, half_fill, tile=64, overlap=0)
    assert np.all(out[mask > 0] == 2000)  # 1000 + 0.5 * (3000 - 1000)


def test_batch_size_does_not_change_the_result():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 4096, (600, 700)).astype(np.uint16)
    mask = (rng.random((600, 700)) > 0.995).astype(np.uint8)
    a = inpaint_field(image, mask, mean_fill, tile=128, overlap=32, batch_size=1)
    b = inpaint_field(image, mask, mean_fill, tile=128, overlap=32, batch_size=64)
    np.testing.assert_array_equal(a, b)


def test_small_field_is_padded():
    image = np.arange(50 * 40, dtype=np.uint16).reshape(50, 40)
    mask = np.zeros_like(image, dtype=np.uint8)
    mask[20:25, 10:15] = 1
    out = inpaint_field(image, mask, half_fill, tile=64, overlap=8)
    assert out.shape == image.shape
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])


def test_bad_input():
    with pytest.raises(InputError, match="shape"):
        inpaint_field(np.zeros((8, 8)), np.zeros((8, 9)), half_fill)
    with pytest.raises(InputError, match="whole field"):
        inpaint_field(np.zeros((8, 8)), np.ones((8, 8)), half_fill)
    with pytest.raises(InputError, match="2-D"):
        inpaint_field(np.zeros((2, 8, 8)), np.ones((2, 8, 8)), half_fill)


def test_telea_restores_a_real_field_better_than_a_flat_fill(bbbc039_files):
    from phirm_scale.metric import psnr, to_uint8
    from phirm_scale.models import get_model

    field = tifffile.imread(bbbc039_files[0])
    mask = np.zeros(field.shape, np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(12):
        y, x = rng.integers(0, field.shape[0] - 12), rng.integers(0, field.shape[1] - 12)
        mask[y : y + 6, x : x + 12] = 1
    damaged = field.copy()
    damaged[mask > 0] = field.max()
    telea = inpaint_field(damaged, mask, get_model("telea"), tile=256, overlap=32)
    flat = inpaint_field(damaged, mask, half_fill, tile=256, overlap=32)
    lo, hi = field.min(), field.max()
    ref = to_uint8(field, lo, hi)
    assert psnr(ref, to_uint8(telea, lo, hi)) > psnr(ref, to_uint8(flat, lo, hi)) + 3
    np.testing.assert_array_equal(telea[mask == 0], damaged[mask == 0])


def test_whole_field_models_get_the_field_in_one_call():
    from phirm_scale.models import get_model

    rng = np.random.default_rng(7)
    image = rng.integers(200, 3000, (300, 500)).astype(np.float32)
    image[0, 0], image[299, 499], image[5, 5] = 100.0, 4100.0, 2100.0  # known range 100..4100
    mask = np.zeros(image.shape, np.uint8)
    mask[100:120, 200:260] = 1
    image[mask > 0] = 9999.0  # the damage: must not stretch the range the model sees
    telea = get_model("telea")
    assert telea.whole_field
    seen = []

    def quarter(images, masks):
        """Records its input; predicts 0.25 (a quarter of the known range) in the hole."""
        seen.append((images.copy(), masks.copy()))
        return np.where(masks > 0, np.float32(0.25), images)

    quarter.whole_field = True
    out, stats = inpaint_field(image, mask, quarter, tile=128, return_stats=True)
    # one call with the whole field, not tiles
    assert [x.shape for x, _ in seen] == [(1, 1, 300, 500)]
    assert (stats.tiles_total, stats.tiles_inpainted) == (1, 1)
    x, m = seen[0][0][0, 0], seen[0][1][0, 0]
    np.testing.assert_array_equal(m, mask)
    # the model sees the known pixels mapped onto [0, 1] (100 -> 0, 2100 -> 0.5, 4100 -> 1)
    # in the same order, and nothing of the damage
    known = mask == 0
    assert (x[0, 0], x[5, 5], x[299, 499]) == pytest.approx((0.0, 0.5, 1.0), abs=1e-6)
    assert x[known].min() == 0.0 and x[known].max() == pytest.approx(1.0, abs=1e-6)
    assert np.all(x[mask > 0] == 0.0)
    order = np.argsort(image[known], kind="stable")
    assert np.all(np.diff(x[known][order]) >= 0)
    # its answer is mapped back: a quarter of the way from 100 to 4100
    np.testing.assert_allclose(out[mask > 0], 1100.0, rtol=1e-6)
    np.testing.assert_array_equal(out[known], image[known])
    # OpenCV's Telea on the float field: a hole in a flat field is filled with the flat value
    flat = np.full((300, 500), 700.0, np.float32)
    flat[0, 0], flat[299, 499] = 100.0, 4100.0
    filled = inpaint_field(flat, mask, telea, tile=128)
    np.testing.assert_allclose(filled[mask > 0], 700.0, atol=4000 / 255)
    # integer fields go straight to cv2.inpaint, unnormalised
    import cv2

    u16 = image.astype(np.uint16)
    direct = inpaint_field(u16, mask, telea, tile=128)
    np.testing.assert_array_equal(direct, cv2.inpaint(u16, mask, 3.0, cv2.INPAINT_TELEA))
