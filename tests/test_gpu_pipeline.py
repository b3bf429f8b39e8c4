"""GPU-path pieces, tested on the CPU: model lifetime (cache, per-call batch size, hash without
a network), the torch Canny against skimage, the cross-field tile batcher, precision
switches, and the local cluster's GPU workers (device count faked)."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.feature import canny as sk_canny

from phirm_scale.batcher import TileBatcher
from phirm_scale.errors import InputError, PlateError
from phirm_scale.inpaint import inpaint_field
from phirm_scale.models import get_model
from phirm_scale.models.canny import HYSTERESIS, canny
from phirm_scale.models.checkpoint import save_checkpoint
from phirm_scale.models.registry import checkpoint_hash, clear_cache

TINY_EC = dict(width=8, blocks=1)


def _real_tiles(files, n_files=3, per_file=3, size=96, seed=0):
    import tifffile

    rng = np.random.default_rng(seed)
    tiles, known = [], []
    for f in files[:n_files]:
        im = tifffile.imread(f).astype(np.float64)
        for _ in range(per_file):
            y, x = rng.integers(0, im.shape[0] - size), rng.integers(0, im.shape[1] - size)
            t = im[y : y + size, x : x + size]
            tiles.append((t - t.min()) / max(t.max() - t.min(), 1e-9))
            k = np.ones((size, size), bool)
            cy, cx = rng.integers(20, size - 20, 2)
            k[cy - 12 : cy + 12, cx - 15 : cx + 15] = False
            known.append(k)
    return np.stack(tiles)[:, None], np.stack(known)[:, None]


# --------------------------------------------------------------------------- model lifetime


def test_untrained_models_are_cached_and_views_keep_their_own_batch_size():
    clear_cache()
    a = get_model("edgeconnect", device="cpu", batch_size=3, **TINY_EC)
    b = get_model("edgeconnect", device="cpu", **TINY_EC)
    c = get_model("edgeconnect", device="cpu", width=4, blocks=1)
    assert a.generator is b.generator  # built once per process
    assert c.generator is not a.generator  # another config, another network
    assert (a.batch_size, b.batch_size) == (3, 8)  # the cached model is never mutated
    assert get_model("edgeconnect", device="cpu", **TINY_EC).batch_size == 8


def test_the_callers_batch_size_never_sets_the_forward_pass():
    # before issue 20 a call's batch size was the forward pass's size, so the same tile went
    # through other kernels in another caller's batches; now each view has one pass size
    clear_cache()
    model = get_model("deepfill-v2", device="cpu", width=8)
    seen = []
    hook = model.generator.register_forward_pre_hook(
        lambda mod, args: seen.append(args[0].shape[0])
    )
    try:
        rng = np.random.default_rng(1)
        img = (rng.random((64, 64)) * 1000).astype(np.uint16)
        hole = np.zeros((64, 64), np.uint8)
        hole[5:60, 5:60] = 1
        ref = inpaint_field(img, hole, model, tile=32, overlap=8, batch_size=3)
        # 3 x 3 grid, all tiles hold holes: calls of 3, each pass padded to the model's 8
        assert seen == [8, 8, 8]
        seen.clear()
        four = model.with_options(batch_size=4)
        got = inpaint_field(img, hole, four, tile=32, overlap=8, batch_size=3)
        assert seen == [4, 4, 4]
        for bs in (1, 2, 9):
            np.testing.assert_array_equal(
                inpaint_field(img, hole, four, tile=32, overlap=8, batch_size=bs), got
            )
            np.testing.assert_array_equal(
                inpaint_field(img, hole, model, tile=32, overlap=8, batch_size=bs), ref
            )
    finally:
        hook.remove()


def test_checkpoint_hash_is_read_without_building_the_network(tmp_path, monkeypatch):
    clear_cache()
    model = get_model("edgeconnect", device="cpu", **TINY_EC)
    digest = save_checkpoint(
        tmp_path / "e.pt",
        model="edgeconnect",
        config=model.config,
        state_dicts={"generator": model.generator.state_dict()},
    )
    clear_cache()
    import phirm_scale.models.networks as networks

    def boom(*a, **k):
        raise AssertionError("network built")

    monkeypatch.setattr(networks, "make_generator", boom)
    assert checkpoint_hash(tmp_path / "e.pt", "edgeconnect") == digest


@pytest.mark.slow
def test_gpu_or_cuda_device_without_cuda_stops_at_once(tmp_path, monkeypatch):
    import subprocess
    import sys

    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.synthetic import make_plate

    p = make_plate(
        tmp_path / "src.ome.zarr", rows=1, columns=1, fields=1, size=96, seed=1, artefacts=0.03
    )
    import phirm_scale.cluster as cl

    monkeypatch.setattr(cl, "visible_gpus", lambda: 0)
    for kw in ({"gpu": True, "cluster": "local"}, {"device": "cuda", "cluster": "threads"}):
        with pytest.raises(PlateError, match="no CUDA device"):
            inpaint_plate(
                p.path,
                tmp_path / "o.ome.zarr",
                mask_label="artefacts_true",
                model="telea",
                progress=False,
                **kw,
            )
        assert not (tmp_path / "o.ome.zarr").exists()  # nothing half-written
    if torch.cuda.is_available():
        return
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "phirm_scale",
            "inpaint",
            str(p.path),
            "--mask-label",
            "artefacts_true",
            "--gpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
    assert "no CUDA device" in proc.stderr


@pytest.mark.slow
def test_local_cluster_starts_one_gpu_worker_per_visible_device(monkeypatch, tmp_path):
    import phirm_scale.cluster as cl
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.synthetic import make_plate

    monkeypatch.setattr(cl, "visible_gpus", lambda: 2)
    with cl.open_cluster(
        "local", n_workers=1, threads_per_worker=1, quiet=True, gpu=True
    ) as client:
        info = client.scheduler_info()["workers"].values()
        gpus = sorted(w.get("resources", {}).get("GPU", 0) for w in info)
        assert gpus == [0, 1, 1]
        assert (
            sorted(w["nthreads"] for w in info if w.get("resources", {}).get("GPU"))
            == [cl.GPU_WORKER_THREADS] * 2
        )
        devices = client.run(lambda: __import__("os").environ.get("CUDA_VISIBLE_DEVICES"))
        assert sorted(v for v in devices.values() if v is not None) == ["0", "1"]
    # the whole stage with --gpu on the default local cluster finishes (never waits)
    monkeypatch.setattr(cl, "visible_gpus", lambda: 1)
    p = make_plate(
        tmp_path / "src.ome.zarr", rows=1, columns=1, fields=2, size=96, seed=2, artefacts=0.03
    )
    res = inpaint_plate(
        p.path,
        tmp_path / "o.ome.zarr",
        mask_label="artefacts_true",
        model="telea",
        tile=64,
        gpu=True,
        device="cpu",
        progress=False,
    )
    assert res["fields"] == 2


# --------------------------------------------------------------------------- torch Canny


def test_torch_canny_equals_skimage_on_real_tiles(bbbc039_files):
    tiles, known = _real_tiles(bbbc039_files)
    expect = np.stack(
        [sk_canny(tiles[i, 0], sigma=2.0, mask=known[i, 0]) for i in range(len(tiles))]
    )
    assert expect.sum() > 500  # real edges, not an empty comparison
    t, k = torch.from_numpy(tiles), torch.from_numpy(known)
    for dtype in (torch.float64, torch.float32):
        for hyst in HYSTERESIS:
            got = canny(t, 2.0, mask=k, dtype=dtype, hysteresis=hyst)[:, 0].numpy()
            assert (got != expect).sum() == 0, (dtype, hyst)
    no_mask = np.stack([sk_canny(tiles[i, 0], sigma=1.0) for i in range(3)])
    np.testing.assert_array_equal(canny(t[:3], 1.0, dtype=torch.float64)[:, 0].numpy(), no_mask)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    sigma=st.sampled_from([1.0, 1.5, 2.0]),
    size=st.integers(12, 40),
    blur=st.booleans(),
)
def test_torch_canny_matches_skimage_on_random_images(seed, sigma, size, blur):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    img = rng.random((size, size))
    if blur:
        img = ndi.uniform_filter(img, 3) * 3 % 1.0
    known = rng.random((size, size)) > 0.15
    expect = sk_canny(img, sigma=sigma, mask=known)
    for hyst in HYSTERESIS:
        got = canny(
            torch.from_numpy(img),
            sigma,
            mask=torch.from_numpy(known),
            dtype=torch.float64,
            hysteresis=hyst,
        ).numpy()
        np.testing.assert_array_equal(got, expect)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 23), st.integers(1, 23)),
    density=st.floats(0.0, 0.6),
)
def test_both_dilations_are_scipys_3x3_binary_dilation(seed, shape, density):
    from scipy import ndimage as ndi

    from phirm_scale.models.canny import _dilate3, _dilate3_pool

    b = np.random.default_rng(seed).random(shape) < density
    expect = np.stack([ndi.binary_dilation(im, np.ones((3, 3), bool)) for im in b])
    t = torch.from_numpy(b)[:, None]
    np.testing.assert_array_equal(_dilate3(t)[:, 0].numpy(), expect)
    for dtype in (torch.float32, torch.float64):
        got = _dilate3_pool(t.to(dtype))[:, 0].numpy()
        assert set(np.unique(got)) <= {0.0, 1.0}
        np.testing.assert_array_equal(got != 0, expect)


def test_canny_refuses_an_unknown_hysteresis():
    with pytest.raises(ValueError, match="hysteresis must be one of pool, dilate, label"):
        canny(torch.zeros(8, 8), hysteresis="flood")


def test_edgeconnect_outputs_equal_with_either_canny(bbbc039_files):
    clear_cache()
    tiles, known = _real_tiles(bbbc039_files, n_files=2, per_file=2, size=64)
    holes = (~known).astype(np.float32)
    x = (tiles * known).astype(np.float32)
    a = get_model("edgeconnect", device="cpu", canny="torch", **TINY_EC)(x, holes)
    b = get_model("edgeconnect", device="cpu", canny="skimage", **TINY_EC)(x, holes)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- batcher


def _fields(n=5, size=100, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = (rng.random((size, size)) * 3000 + 500).astype(np.uint16)
        hole = np.zeros((size, size), np.uint8)
        for _ in range(1 + i % 3):
            y, x = rng.integers(0, size - 12, 2)
            hole[y : y + 10, x : x + 12] = 1
        out.append((img, hole))
    return out


# Every forward pass of a learned model has one fixed shape (forward_size: the view's batch
# size, the last pass of a call padded), so these tests run with the default
# kernels (oneDNN on, NNPACK allowed): they used to switch oneDNN off, and still failed now and
# then when a batcher's pass held 16 tiles or more (NNPACK; 1 pixel of 10,000 by 1 count).
_TINY = {
    "edgeconnect": TINY_EC,
    "deepfill-v2": {"width": 8},
    "context-encoder": {"width": 8, "bottleneck": 16},
}


@settings(max_examples=12, deadline=None)
@given(
    name=st.sampled_from(sorted(_TINY)),
    view_bs=st.integers(1, 6),
    call_bs=st.integers(1, 24),
    n=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_a_tile_gives_the_same_pixels_whatever_batch_it_is_in(name, view_bs, call_bs, n, seed):
    """The promise of issue 20: a tile's result is a function of the tile (and the view) alone:
    the same bit for bit alone, or at any position among any ``n`` others, in calls of any
    size. The old code let the caller's batch size pick the forward shape: oneDNN chose other
    kernels by shape and NNPACK took over from 16 tiles, and results moved by float rounding."""
    model = get_model(name, device="cpu", batch_size=view_bs, **_TINY[name])
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 32, 32)).astype(np.float32) * rng.uniform(0.05, 1.0)
    h = np.zeros_like(x)
    for i in range(n):
        y0, x0 = rng.integers(0, 20, 2)
        h[i, 0, y0 : y0 + 10, x0 : x0 + 12] = 1
    alone = np.concatenate([model(x[i : i + 1], h[i : i + 1], batch_size=1) for i in range(n)])
    order = rng.permutation(n)
    together = np.empty_like(alone)
    together[order] = model(x[order], h[order], batch_size=call_bs)
    np.testing.assert_array_equal(together, alone)


def test_forward_passes_have_one_shape_per_view():
    clear_cache()
    base = get_model("deepfill-v2", device="cpu", width=8, batch_size=4)
    rng = np.random.default_rng(1)
    x = rng.random((7, 1, 32, 32)).astype(np.float32)
    m = np.zeros_like(x)
    m[:, :, 4:20, 10:28] = 1
    seen: list[int] = []
    hook = base.generator.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    try:
        for call_bs in (None, 2, 16):
            base(x, m, batch_size=call_bs)
        assert seen == [4, 4] * 3  # the view's size whatever the call asked, the last padded
        seen.clear()
        base.with_options(batch_size=3)(x, m)
        assert seen == [3, 3, 3]
    finally:
        hook.remove()
    assert base.forward_size() == 4


@pytest.mark.parametrize("name,cfg", [("edgeconnect", TINY_EC), ("deepfill-v2", {"width": 8})])
def test_batcher_results_do_not_depend_on_grouping(name, cfg):
    clear_cache()
    model = get_model(name, device="cpu", **cfg)
    fields = _fields()
    per_field = [
        inpaint_field(img, h, model, tile=32, overlap=8, batch_size=4) for img, h in fields
    ]
    for bs, runners in ((1, 1), (3, 2), (64, 2)):
        b = TileBatcher(model, batch_size=bs, runners=runners, max_wait=0.02)
        got = [None] * len(fields)

        def work(i, got=got, b=b):
            img, h = fields[i]
            got[i] = inpaint_field(img, h, b, tile=32, overlap=8, batch_size=1 << 16)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(fields))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        b.close()
        if bs == 64:
            assert b.batches < b.tiles  # tiles of several fields shared a forward pass
        for (img, h), g, ref in zip(fields, got, per_field, strict=True):
            np.testing.assert_array_equal(g[h == 0], img[h == 0])  # outside holes: the input
            np.testing.assert_array_equal(g, ref)  # the per-field result


@pytest.mark.slow
@pytest.mark.timeout(900, method="thread")  # a deadlock may hold the GIL: end the process
@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="torch.compile on the CPU needs a C compiler",
)
def test_a_compiled_bf16_model_serves_several_runner_threads(tmp_path, monkeypatch):
    # torch.compile traces in the first thread that calls; before the model ran its compiled
    # autocast region one thread at a time, tracing there while the other runner left an
    # autocast region deadlocked both (2 of 3 cold bench runs on this CPU hung for good)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # a cold compile
    clear_cache()
    model = get_model("edgeconnect", device="cpu", **TINY_EC)
    view = model.with_options(compile=True, precision="bf16", batch_size=4)
    rng = np.random.default_rng(0)
    x = rng.random((12, 1, 32, 32), dtype=np.float32)
    h = np.zeros_like(x)
    h[:, :, 8:20, 10:22] = 1
    batcher = TileBatcher(view, 4, runners=2, max_wait=0.0)
    got: dict[int, np.ndarray] = {}
    threads = [
        threading.Thread(
            target=lambda i=i: got.__setitem__(
                i, batcher(x[3 * i : 3 * i + 3], h[3 * i : 3 * i + 3])
            ),
            daemon=True,
        )
        for i in range(4)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 600  # one limit for all four (cold compile: ~30 s here)
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    # (before anything else runs the model: a deadlocked runner would take this thread too)
    assert sorted(got) == [0, 1, 2, 3], "the compiled model's runner threads hung"
    batcher.close()
    out = np.concatenate([got[i] for i in range(4)])
    hole = h != 0
    assert np.array_equal(out[~hole], x[~hole])  # the input, bit for bit
    # inside: the same network as eager bf16, up to the compiler's rounding
    eager = model.with_options(precision="bf16", batch_size=4)(x, h)
    assert np.abs(out - eager)[hole].max() < 0.05
    assert np.abs(out - eager)[hole].mean() < 0.005


def test_batcher_hands_errors_to_the_waiting_field():
    def bad(x, m):
        raise ValueError("device on fire")

    b = TileBatcher(bad, batch_size=4, runners=1)
    with pytest.raises(ValueError, match="device on fire"):
        b(np.zeros((2, 1, 8, 8), np.float32), np.ones((2, 1, 8, 8), np.float32))
    b.close()


def test_learned_stage_through_the_batcher_equals_the_per_field_path(tmp_path):
    from phirm_scale.batcher import close_batchers
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.synthetic import make_plate

    clear_cache()
    close_batchers()
    net = get_model("edgeconnect", device="cpu", **TINY_EC)
    ck = tmp_path / "ec.pt"
    save_checkpoint(
        ck,
        model="edgeconnect",
        config=net.config,
        state_dicts={"generator": net.generator.state_dict()},
    )
    p = make_plate(
        tmp_path / "src.ome.zarr", rows=1, columns=2, fields=2, size=96, seed=5, artefacts=0.03
    )
    res = inpaint_plate(
        p.path,
        tmp_path / "o.ome.zarr",
        mask_label="artefacts_true",
        model="edgeconnect",
        checkpoint=ck,
        tile=64,
        overlap=16,
        batch_size=5,
        cluster="threads",
        device="cpu",
        progress=False,
    )
    assert res["fields"] == 4 and res["tiles_inpainted"] > 0
    out = open_plate(tmp_path / "o.ome.zarr")
    # passes of the stage's shape (its view's batch size, 5): passes of another shape may take
    # other kernels (1 count in 9216 px with 2 threads, 0 with 1) -- that is the documented
    # bound, not what this test is about
    model = get_model("edgeconnect", checkpoint=ck, device="cpu", batch_size=5)
    c = p.channel_index("DAPI")
    for k in p.fields:
        src, mask = p.read_field(k), p.read_label(k, "artefacts_true")
        expect = inpaint_field(src[c], mask, model, tile=64, overlap=16, batch_size=2)
        np.testing.assert_array_equal(out.read_field(k)[c], expect)
    assert out.attrs["phirm_scale"]["inpaint"]["precision"] == "fp32"
    close_batchers()


# --------------------------------------------------------------------------- precision


def test_precision_switches():
    clear_cache()
    rng = np.random.default_rng(3)
    x = rng.random((3, 1, 32, 32)).astype(np.float32)
    m = np.zeros_like(x)
    m[:, :, 8:24, 6:20] = 1
    base = get_model("deepfill-v2", device="cpu", width=8)
    ref = base(x, m)
    np.testing.assert_array_equal(
        get_model("deepfill-v2", device="cpu", width=8, precision="fp32")(x, m), ref
    )
    bf = get_model("deepfill-v2", device="cpu", width=8, precision="bf16")(x, m)
    hole = m > 0
    assert np.array_equal(bf[~hole], x[~hole])
    assert 0 < np.abs(bf - ref)[hole].max() < 0.1  # bf16 really ran, and stayed close
    cl = get_model("deepfill-v2", device="cpu", width=8, channels_last=True)(x, m)
    np.testing.assert_allclose(cl, ref, atol=1e-5)
    with pytest.raises(Exception, match="precision"):
        get_model("deepfill-v2", device="cpu", width=8, precision="fp8")


@pytest.mark.parametrize(
    "name,cfg", [("edgeconnect", TINY_EC), ("context-encoder", {"width": 8, "bottleneck": 16})]
)
def test_channels_last_weights_stay_trainable_and_follow_the_generator(name, cfg):
    # the channels-last conversion happens inside inference; it must leave ordinary tensors
    # (a trainer can still take gradients), and it is redone when someone has turned the
    # weights back to the standard layout (a flag remembered that it had been done once).
    # Context Encoder's first weight has one input channel: it is both layouts at once, so
    # looking at it alone said "converted" on an unconverted model.
    clear_cache()
    model = get_model(name, device="cpu", **cfg)
    view = model.with_options(channels_last=True)
    x = np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32)
    h = np.zeros_like(x)
    h[:, :, 8:20, 8:20] = 1
    a = view(x, h)
    convs = [p for p in model.generator.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not any(p.is_inference() for p in model.generator.parameters())
    out = model.generate(model.prepare(x, h != 0))["output"]
    out.mean().backward()  # would raise on inference tensors
    assert all(p.grad is not None for p in convs if p.requires_grad)
    model.generator.zero_grad(set_to_none=True)
    model.generator.to(memory_format=torch.contiguous_format)
    b = view(x, h)
    assert all(
        p.is_contiguous(memory_format=torch.channels_last)
        for p in model.generator.parameters()
        if p.dim() == 4
    )
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_fixed_batches_pad_partial_batches_without_changing_results():
    clear_cache()
    rng = np.random.default_rng(4)
    x = rng.random((7, 1, 32, 32)).astype(np.float32)
    m = np.zeros_like(x)
    m[:, :, 4:20, 10:28] = 1
    base = get_model("deepfill-v2", device="cpu", width=8, batch_size=4)
    fixed = base.with_options(fixed_batch=True)
    seen = []
    hook = base.generator.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    try:
        ref = base(x, m)
        assert seen == [4, 4]  # the last, partial batch was padded to the full shape
        seen.clear()
        got = fixed(x, m)
        assert seen == [4, 4]  # fixed_batch: the same (kept for its callers)
    finally:
        hook.remove()
    np.testing.assert_array_equal(got, ref)
    # the padding changes nothing: each tile as it comes out of a pass of 4 on its own
    alone = np.concatenate([base(x[i : i + 1], m[i : i + 1]) for i in range(len(x))])
    np.testing.assert_array_equal(got, alone)
    # passes of another shape (1 here) may take other kernels: equal to float rounding only
    one = base.with_options(batch_size=1)(x, m)
    np.testing.assert_allclose(one, ref, atol=1e-5)
    assert base.fixed_batch is False  # the view's option never reaches the cached model


# --------------------------------------------------------------------------- device memory
def _limit_device_memory(model, max_tiles):
    """A device that holds at most ``max_tiles`` tiles per forward pass: the generator raises
    torch's out-of-memory error above that, as CUDA does (the size the device takes is the
    test's, the model's reaction is the code under test)."""
    seen = []

    def pre(mod, args):
        seen.append(args[0].shape[0])
        if args[0].shape[0] > max_tiles:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return seen, model.generator.register_forward_pre_hook(pre)


def test_a_batch_too_big_for_the_device_is_halved_and_said_once(caplog):
    clear_cache()
    model = get_model("deepfill-v2", device="cpu", width=8, batch_size=16)
    view = model
    rng = np.random.default_rng(3)
    x = rng.random((13, 1, 32, 32)).astype(np.float32)
    m = np.zeros_like(x)
    m[:, :, 6:22, 9:25] = 1
    # tiles are independent: the reference is passes of the size that will fit (4), each tile
    # alone
    expect = np.concatenate(
        [model.with_options(batch_size=4)(x[i : i + 1], m[i : i + 1]) for i in range(len(x))]
    )
    seen, hook = _limit_device_memory(model, 5)
    try:
        with caplog.at_level("WARNING"):
            got = view(x, m)
        np.testing.assert_array_equal(got, expect)
        # 16 did not fit, 8 did not fit, then passes of 4: 4 + 4 + 4 + 1 (padded to 4)
        assert seen == [16, 8, 4, 4, 4, 4]
        said = [r.getMessage() for r in caplog.records if "did not fit" in r.getMessage()]
        assert len(said) == 2 and "using 4 tiles per batch" in said[-1]
        # the next call (another view of the same model too) starts at the size that fits
        seen.clear()
        caplog.clear()
        other = get_model("deepfill-v2", device="cpu", width=8, batch_size=32)
        np.testing.assert_array_equal(other(x, m), expect)
        assert seen == [4, 4, 4, 4] and not caplog.records
    finally:
        hook.remove()
        clear_cache()


def test_a_single_tile_too_big_for_the_device_is_one_error():
    clear_cache()
    model = get_model("deepfill-v2", device="cpu", width=8)
    x = np.random.default_rng(0).random((3, 1, 32, 32)).astype(np.float32)
    m = np.ones_like(x)
    _, hook = _limit_device_memory(model, 0)
    try:
        with pytest.raises(InputError, match=r"one 32x32 tile does not fit in the memory of cpu"):
            model(x, m, batch_size=2)
    finally:
        hook.remove()
        clear_cache()


def test_bf16_on_a_gpu_without_bfloat16_is_refused_in_one_line(monkeypatch):
    clear_cache()
    model = get_model("deepfill-v2", device="cpu", width=8)
    model.with_options(precision="bf16")  # the CPU runs bf16
    monkeypatch.setattr(model, "device", torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(InputError, match="precision bf16 is not supported by cuda:0"):
        model.with_options(precision="bf16")
    assert model.with_options(precision="fp16").precision == "fp16"
    clear_cache()
