"""Models: registry, classical fills, network shapes, composited outputs, edge inputs,
contextual attention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import phirm_scale
from phirm_scale.errors import InputError
from phirm_scale.models import get_model, list_models
from phirm_scale.models.classical import (
    inpaint_biharmonic,
    inpaint_navier_stokes,
    inpaint_telea,
)

torch.set_num_threads(1)

# read from the package's manifest file directly, not through the loader under test
SHIPPED_HASHES = {
    name: entry["content_hash"]
    for name, entry in json.loads(
        (Path(phirm_scale.__file__).parent / "models" / "weights" / "manifest.json").read_text()
    ).items()
}

TINY = {
    "telea": {},
    "navier-stokes": {},
    "biharmonic": {},
    "context-encoder": {"width": 8, "bottleneck": 16},
    "deepfill-v2": {"width": 8},
    "edgeconnect": {"width": 8, "blocks": 8},
    "bbbc039-deepfill-v2": {},  # shipped trained: its own config
}


def _batch(n, size=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)
    images = np.clip(
        base[None, None] + 0.05 * rng.standard_normal((n, 1, size, size)), 0, 1
    ).astype(np.float32)
    masks = np.zeros_like(images, dtype=np.uint8)
    for i in range(n):
        y, x = rng.integers(0, size - 24, 2)
        masks[i, 0, y : y + 20, x : x + 16] = 1
    masks[0, 0, size - 5 :, :7] = 1  # a second hole touching the border
    return images, masks


def test_every_listed_model_is_built_under_its_name():
    names = list_models()
    assert len(set(names)) == len(names)
    for name in names:  # TINY covers the paper's six models; a listed model without one fails
        assert get_model(name, device="cpu", **TINY[name]).name == name


@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_callers_of_one_cached_model_keep_their_own_batch_size(tmp_path, with_checkpoint):
    """Two callers get the same cached network with different batch sizes: each call runs in
    its caller's batches, whoever asked last (get_model once set the size on the shared model).
    Passes of the view's size, the last one padded; a per-call size no longer changes the
    pass (issue 20)."""
    from phirm_scale.models.checkpoint import save_checkpoint
    from phirm_scale.models.registry import clear_cache

    clear_cache()
    kw = {"width": 8}
    if with_checkpoint:
        net = get_model("deepfill-v2", device="cpu", **kw)
        save_checkpoint(
            tmp_path / "df.pt",
            model="deepfill-v2",
            config=net.config,
            state_dicts={"generator": net.generator.state_dict()},
        )
        kw = {"checkpoint": tmp_path / "df.pt"}
    a = get_model("deepfill-v2", device="cpu", batch_size=3, **kw)
    b = get_model("deepfill-v2", device="cpu", batch_size=5, **kw)
    assert a.generator is b.generator  # one network per process
    seen = []
    hook = a.generator.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    images, masks = _batch(7, size=32)
    try:
        out_a = a(images, masks)
        runs_a, seen[:] = list(seen), []
        out_b = b(images, masks)
        runs_b, seen[:] = list(seen), []
        assert (runs_a, runs_b) == ([3, 3, 3], [5, 5])
        a(images, masks, batch_size=2)  # a per-call size leaves the passes as they are
        runs_a2, seen[:] = list(seen), []
        a(images, masks)
        runs_a3 = list(seen)
    finally:
        hook.remove()
    assert (runs_a, runs_b, runs_a2, runs_a3) == ([3, 3, 3], [5, 5], [3, 3, 3], [3, 3, 3])
    # passes of another shape may take other kernels: equal to float rounding, not bit for bit
    np.testing.assert_allclose(out_a, out_b, atol=1e-5)


def test_unknown_model_lists_known_names():
    with pytest.raises(InputError, match="unknown model 'lama'.*telea.*deepfill-v2.*edgeconnect"):
        get_model("lama")


def test_unknown_option_is_refused():
    with pytest.raises(InputError, match="unknown option.*depth"):
        get_model("deepfill-v2", depth=3)
    with pytest.raises(InputError, match="multiple of 4"):
        get_model("deepfill-v2", width=6)


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("n", [1, 8])
def test_forward_shapes_and_composite(name, n):
    model = get_model(name, device="cpu", **TINY[name])
    images, masks = _batch(n)
    out = model(images, masks)
    assert out.shape == (n, 1, 64, 64) and out.dtype == np.float32
    hole = masks != 0
    # outside the holes: the input, bit for bit
    assert np.array_equal(out[~hole].view(np.uint32), images[~hole].view(np.uint32))
    # inside: a fill in [0, 1] that is not the input
    assert out[hole].min() >= 0 and out[hole].max() <= 1
    assert np.mean(out[hole] != images[hole]) > 0.5
    assert model.name == name
    # untrained models have no checkpoint; a shipped one names the weights its manifest lists
    assert model.checkpoint_hash == SHIPPED_HASHES.get(name)


@pytest.mark.parametrize("name", ["deepfill-v2", "edgeconnect", "context-encoder"])
def test_learned_models_composite_like_the_host_would(name):
    # the composite runs on the model's device; it must equal clip-and-select on the host of
    # the generator's raw output, bit for bit
    model = get_model(name, device="cpu", **TINY[name])
    plain = model.generate

    def wide(batch, **kw):  # pushed past [0, 1] both ways, so the clip has work to do
        out = plain(batch, **kw)["output"]
        i, j = torch.meshgrid(
            torch.arange(out.shape[-2]), torch.arange(out.shape[-1]), indexing="ij"
        )
        checker = 1.0 - 2.0 * ((i + j) % 2)  # +1 / -1 on alternate pixels
        return {"output": (out - 0.5) * 3.0 + 0.5 + 0.9 * checker}

    model.generate = wide  # this view only
    images, masks = _batch(5)
    hole = masks != 0
    n, full = len(images), model.forward_size()  # one pass of the view's size, padded
    assert n < full
    pad = np.r_[np.arange(n), np.full(full - n, n - 1)]
    with torch.inference_mode():
        raw = model.generate(model.prepare(images[pad], hole[pad]))["output"].float().numpy()[:n]
    assert raw[hole].min() < -0.1 and raw[hole].max() > 1.1
    expect = np.where(hole, np.clip(raw, 0.0, 1.0), images).astype(np.float32)
    got = model(images, masks)
    assert np.array_equal(got.view(np.uint32), expect.view(np.uint32))
    assert got.flags.c_contiguous and got.dtype == np.float32


@pytest.mark.parametrize("name", ["deepfill-v2", "edgeconnect", "context-encoder"])
def test_learned_models_accept_sizes_that_are_not_multiples(name):
    model = get_model(name, device="cpu", **TINY[name])
    images, masks = _batch(2, size=64)
    images, masks = images[..., :60, :52], masks[..., :60, :52]
    out = model(images, masks)
    assert out.shape == images.shape
    assert np.array_equal(out[masks == 0], images[masks == 0])


def test_untrained_learned_models_are_seeded():
    images, masks = _batch(2)
    a = get_model("deepfill-v2", device="cpu", width=8)(images, masks)
    b = get_model("deepfill-v2", device="cpu", width=8)(images, masks)
    c = get_model("deepfill-v2", device="cpu", width=8, seed=1)(images, masks)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_empty_mask_returns_input():
    images, _ = _batch(2)
    for name in ("telea", "edgeconnect"):
        out = get_model(name, device="cpu", **TINY[name])(images, np.zeros_like(images))
        assert np.array_equal(out, images)


@pytest.mark.parametrize(
    "images, masks, match",
    [
        (np.zeros((2, 64, 64), np.float32), np.zeros((2, 64, 64)), r"\(N, 1, H, W\)"),
        (np.zeros((1, 1, 8, 8), np.float32), np.zeros((1, 1, 8, 9)), "masks must have"),
        (np.full((1, 1, 8, 8), np.nan, np.float32), np.ones((1, 1, 8, 8)), "NaN"),
        (np.full((1, 1, 8, 8), 2.0, np.float32), np.ones((1, 1, 8, 8)), r"\[0, 1\]"),
        # one bad value among good ones, and a NaN beside a value out of range: NaN is named
        (np.r_[np.zeros(63), np.inf].reshape(1, 1, 8, 8), np.ones((1, 1, 8, 8)), "infinite"),
        (np.r_[np.zeros(63), -np.inf].reshape(1, 1, 8, 8), np.ones((1, 1, 8, 8)), "infinite"),
        (np.r_[np.full(62, 0.5), 7.0, np.nan].reshape(1, 1, 8, 8), np.ones((1, 1, 8, 8)), "NaN"),
        (np.r_[np.full(63, 0.5), -0.25].reshape(1, 1, 8, 8), np.ones((1, 1, 8, 8)), "-0.25, 0.5"),
        (np.zeros((1, 1, 8, 8), np.uint8), np.ones((1, 1, 8, 8)), "float"),
    ],
)
def test_bad_batches_are_refused(images, masks, match):
    with pytest.raises(InputError, match=match):
        get_model("telea")(images, masks)


# --------------------------------------------------------------------------- classical


def test_telea_and_ns_fill_a_constant_exactly():
    img = np.full((32, 32), 0.5, np.float32)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 10:30] = 1
    for fn in (inpaint_telea, inpaint_navier_stokes):
        out = fn(img, mask)
        # uint16 round trip of 0.5: rint(0.5 * 65535) = 32768
        assert np.all(out[mask == 1] == np.float32(32768 / 65535))
        assert np.array_equal(out[mask == 0], img[mask == 0])


@pytest.mark.parametrize("dtype, top", [("uint16", 65535), ("uint8", 255)])
def test_telea_runs_opencv_on_integers(dtype, top):
    import cv2

    ramp = np.tile(np.linspace(0.1, 0.9, 64, dtype=np.float32), (64, 1))
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 1
    direct = cv2.inpaint(
        np.rint(ramp.astype(np.float64) * top).astype(dtype), mask, 3.0, cv2.INPAINT_TELEA
    )
    out = inpaint_telea(ramp, mask, dtype=dtype)
    np.testing.assert_array_equal(
        out[mask == 1], (direct.astype(np.float32) / np.float32(top))[mask == 1]
    )
    # a smooth ramp stays within its local range (no float-input garbage)
    assert 0.3 < out[mask == 1].min() and out[mask == 1].max() < 0.65


def test_classical_dtype_is_checked():
    with pytest.raises(ValueError, match="uint8 or uint16"):
        inpaint_telea(np.zeros((8, 8)), np.ones((8, 8)), dtype="float32")


def test_biharmonic_reproduces_a_linear_ramp():
    ramp = np.tile(np.linspace(0.0, 1.0, 48), (48, 1)).astype(np.float32)
    mask = np.zeros((48, 48), bool)
    mask[10:30, 15:35] = True
    out = inpaint_biharmonic(ramp, mask)
    np.testing.assert_allclose(out[mask], ramp[mask], atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    y=st.integers(0, 30),
    x=st.integers(0, 30),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    name=st.sampled_from(["telea", "navier-stokes", "deepfill-v2"]),
)
def test_only_hole_pixels_change(seed, y, x, h, w, name):
    rng = np.random.default_rng(seed)
    images = rng.random((1, 1, 32, 32), dtype=np.float32)
    masks = np.zeros((1, 1, 32, 32), np.uint8)
    masks[0, 0, y : y + h, x : x + w] = 1
    out = get_model(name, device="cpu", **TINY[name])(images, masks)
    assert np.array_equal(out[masks == 0], images[masks == 0])


# --------------------------------------------------------------------------- learned internals


@pytest.mark.parametrize("backend", ["skimage", "torch"])
def test_edgeconnect_edges_are_canny_of_known_pixels_only(backend):
    from skimage.feature import canny

    model = get_model("edgeconnect", device="cpu", **TINY["edgeconnect"]).with_options(
        canny=backend
    )
    img = np.zeros((3, 1, 64, 64), np.float32)
    img[..., 16:48, 16:48] = 1.0  # a bright square: edges along its border
    img[1, 0, 8:24, 40:60] = 0.6  # and other shapes per tile
    img[2, 0] = img[2, 0].T.copy()
    # a little noise: exact gradient ties (a noiseless square) are where float32 arithmetic
    # and skimage's float64 may break a tie differently (docs/models.md)
    img = np.clip(img + 0.03 * np.random.default_rng(0).random(img.shape), 0, 1)
    img = img.astype(np.float32)
    hole = np.zeros((3, 1, 64, 64), bool)
    hole[0, :, 30:64, :] = True
    hole[1, :, :, 0:20] = True
    hole[2, :, 10:20, 10:50] = True
    batch = model.prepare(img, hole, train=True)
    for i in range(3):
        edges, gt = batch["edges"].numpy()[i, 0], batch["edges_gt"].numpy()[i, 0]
        known = ~hole[i, 0]
        assert edges[~known].sum() == 0
        assert edges[known].sum() > 0
        np.testing.assert_array_equal(gt, canny(img[i, 0].astype(np.float64), sigma=2.0))
        # edges of the known part, computed with the known mask
        np.testing.assert_array_equal(
            edges, canny(img[i, 0].astype(np.float64), sigma=2.0, mask=known) & known
        )
    # inference: the known-pixel edges alone, the same
    np.testing.assert_array_equal(model.prepare(img, hole)["edges"], batch["edges"])


@pytest.mark.parametrize(
    "rows, cols, expected",
    [
        # 20 x 16 hole: side 24 is the smallest even side whose inner 7/8 (margin 4/64 on each
        # side) holds 20 rows (22 * 7/8 = 19.25 < 20); centred on the hole's centre (20, 28)
        ((10, 30), (20, 36), (8, 16, 24)),
        # 6 x 4 hole in the top-right corner: side 8 (6 * 8/7 = 6.9 -> 7, made even), centre
        # (3, 62); the box leaves the image (top -1, right edge 66 > 64)
        ((0, 6), (60, 64), (-1, 58, 8)),
        # one pixel: the smallest box, side 2, around it
        ((40, 41), (40, 41), (39, 39, 2)),
    ],
)
def test_context_encoder_box_around_the_hole(rows, cols, expected):
    model = get_model("context-encoder", device="cpu", **TINY["context-encoder"])
    hole = np.zeros((1, 1, 64, 64), bool)
    hole[0, 0, rows[0] : rows[1], cols[0] : cols[1]] = True
    assert model.geometry(hole) == [expected]


def test_contextual_attention_pastes_known_patches_only():
    from phirm_scale.models.networks.deepfill_v2 import ContextualAttention

    torch.manual_seed(0)
    f = torch.rand(2, 4, 16, 16)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:48, 16:48] = 1  # features 4:12 are holes
    f[:, :, 4:12, 4:12] = 1000.0
    out = ContextualAttention()(f, f, mask)
    assert out.shape == f.shape
    assert out.max() <= 1.0 + 1e-5  # averages of known values in [0, 1)
    assert out[:, :, 4:12, 4:12].min() > 0
