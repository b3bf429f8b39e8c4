"""Checkpoints: round trips, content hash, refusals, the per-process cache, and importers of
official (RGB, old spectral-norm) weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from phirm_scale.errors import CheckpointError, InputError
from phirm_scale.models import get_model
from phirm_scale.models.checkpoint import content_hash, load_checkpoint, save_checkpoint
from phirm_scale.models.registry import clear_cache, default_config

torch.set_num_threads(1)

TINY = {
    "context-encoder": {"width": 8, "bottleneck": 16},
    "deepfill-v2": {"width": 8},
    "edgeconnect": {"width": 8},
}


def _batch(n=3, size=64, seed=1):
    rng = np.random.default_rng(seed)
    images = rng.random((n, 1, size, size), dtype=np.float32)
    masks = np.zeros((n, 1, size, size), np.uint8)
    masks[:, :, 12:40, 20:44] = 1
    return images, masks


def _save(model, path, **kw):
    return save_checkpoint(
        path,
        model=model.name,
        config=model.config,
        state_dicts={"generator": model.generator.state_dict()},
        **kw,
    )


@pytest.mark.parametrize("name", list(TINY))
def test_round_trip_gives_identical_outputs(name, tmp_path):
    clear_cache()
    model = get_model(name, device="cpu", **TINY[name], seed=3)
    with torch.no_grad():  # move away from the seeded init so a silent re-init would show
        for p in model.generator.parameters():
            p.add_(0.01 * torch.randn_like(p))
    images, masks = _batch()
    expected = model(images, masks)
    digest = _save(model, tmp_path / "m.pt", epoch=2, step=17, provenance={"tiles": "x.zarr"})
    loaded = get_model(name, checkpoint=tmp_path / "m.pt", device="cpu")
    assert loaded.checkpoint_hash == digest
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded(images, masks), expected)
    ck = load_checkpoint(tmp_path / "m.pt")
    assert (ck.model, ck.epoch, ck.step, ck.provenance["tiles"]) == (name, 2, 17, "x.zarr")


def test_content_hash_depends_on_weights_only(tmp_path):
    model = get_model("deepfill-v2", device="cpu", width=8)
    a = _save(model, tmp_path / "a.pt", epoch=1)
    b = _save(model, tmp_path / "b.pt", epoch=5, provenance={"other": 1})
    assert a == b
    sd = {k: v.clone() for k, v in model.generator.state_dict().items()}
    k0 = next(iter(sd))
    sd[k0].view(-1)[0] += 1e-3
    assert content_hash("deepfill-v2", model.config, sd) != a
    assert (
        content_hash("deepfill-v2", {**model.config, "width": 12}, model.generator.state_dict())
        != a
    )


def test_cache_returns_one_model_per_checkpoint(tmp_path):
    clear_cache()
    model = get_model("edgeconnect", device="cpu", width=8)
    _save(model, tmp_path / "e.pt")
    _save(model, tmp_path / "copy.pt")
    m1 = get_model("edgeconnect", checkpoint=tmp_path / "e.pt", device="cpu")
    m2 = get_model(None, checkpoint=str(tmp_path / "e.pt"), device="cpu", batch_size=2)
    m3 = get_model(
        "edgeconnect", checkpoint=tmp_path / "copy.pt", device="cpu"
    )  # same weights, same hash
    # one network per checkpoint hash; each caller's view carries its own batch size
    assert m1.generator is m2.generator is m3.generator
    assert (m1.batch_size, m2.batch_size, m3.batch_size) == (8, 2, 8)
    clear_cache()
    assert (
        get_model("edgeconnect", checkpoint=tmp_path / "e.pt", device="cpu").generator
        is not m1.generator
    )


def test_wrong_architecture_is_refused(tmp_path):
    clear_cache()
    model = get_model("deepfill-v2", device="cpu", width=8)
    _save(model, tmp_path / "df.pt")
    with pytest.raises(CheckpointError, match=r"holds a 'deepfill-v2' model, not 'edgeconnect'"):
        get_model("edgeconnect", checkpoint=tmp_path / "df.pt", device="cpu")
    # same name, weights of another width: the state dict does not fit
    cfg = default_config("deepfill-v2", width=12)
    save_checkpoint(
        tmp_path / "bad.pt",
        model="deepfill-v2",
        config=cfg,
        state_dicts={"generator": model.generator.state_dict()},
    )
    with pytest.raises(
        CheckpointError,
        match=r"bad.pt: generator does not fit this architecture: .*shape mismatches",
    ):
        get_model("deepfill-v2", checkpoint=tmp_path / "bad.pt", device="cpu")
    # EdgeConnect weights labelled as a Context Encoder
    ec = get_model("edgeconnect", device="cpu", width=8)
    save_checkpoint(
        tmp_path / "ce.pt",
        model="context-encoder",
        config=default_config("context-encoder", width=8),
        state_dicts={"generator": ec.generator.state_dict()},
    )
    with pytest.raises(CheckpointError, match="missing keys.*unexpected keys"):
        get_model("context-encoder", checkpoint=tmp_path / "ce.pt", device="cpu")


def test_unusable_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        get_model("deepfill-v2", checkpoint=tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pt: not a phirm-scale checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="random.pt: not a phirm-scale checkpoint"):
        load_checkpoint(tmp_path / "random.pt")
    torch.save({"generator": {}, "iteration": 3}, tmp_path / "official.pth")
    with pytest.raises(CheckpointError, match="not a phirm-scale checkpoint.*importers"):
        load_checkpoint(tmp_path / "official.pth")
    model = get_model("deepfill-v2", device="cpu", width=8)
    _save(model, tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    next(iter(raw["state_dicts"]["generator"].values())).view(-1)[0] += 1
    torch.save(raw, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="content hash mismatch"):
        load_checkpoint(tmp_path / "edited.pt")
    whole = (tmp_path / "m.pt").read_bytes()
    for cut in (len(whole) // 2, len(whole) - 10):
        (tmp_path / "cut.pt").write_bytes(whole[:cut])
        with pytest.raises(
            CheckpointError,
            match=r"cut.pt: truncated or damaged checkpoint "
            r"\(the file is incomplete",
        ):
            load_checkpoint(tmp_path / "cut.pt")


def test_options_contradicting_a_checkpoint_are_refused(tmp_path):
    clear_cache()
    model = get_model("deepfill-v2", device="cpu", width=8)
    _save(model, tmp_path / "m.pt")
    assert (
        get_model("deepfill-v2", checkpoint=tmp_path / "m.pt", device="cpu", width=8).config[
            "width"
        ]
        == 8
    )
    with pytest.raises(InputError, match="width=16.*differ from its saved config"):
        get_model("deepfill-v2", checkpoint=tmp_path / "m.pt", device="cpu", width=16)
    with pytest.raises(InputError, match="classical"):
        get_model("telea", checkpoint=tmp_path / "m.pt")


# --------------------------------------------------------------------------- importers
# An independent re-creation of the official EdgeConnect generators (knazeri/edge-connect,
# src/networks.py): old-style torch.nn.utils.spectral_norm (weight_orig/_u/_v keys), an RGB
# inpainting generator (4 inputs: RGB + edge; 3 outputs), sigmoid/tanh heads.


def _sn(m, on):
    return nn.utils.spectral_norm(m) if on else m


class _OfficialResnetBlock(nn.Module):
    def __init__(self, dim, dilation, sn):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            _sn(nn.Conv2d(dim, dim, 3, dilation=dilation, bias=not sn), sn),
            nn.InstanceNorm2d(dim, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            _sn(nn.Conv2d(dim, dim, 3, bias=not sn), sn),
            nn.InstanceNorm2d(dim, track_running_stats=False),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class _OfficialGenerator(nn.Module):
    def __init__(self, cin, cout, w, sn, blocks=8):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            _sn(nn.Conv2d(cin, w, 7), sn),
            nn.InstanceNorm2d(w),
            nn.ReLU(True),
            _sn(nn.Conv2d(w, 2 * w, 4, 2, 1), sn),
            nn.InstanceNorm2d(2 * w),
            nn.ReLU(True),
            _sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1), sn),
            nn.InstanceNorm2d(4 * w),
            nn.ReLU(True),
        )
        self.middle = nn.Sequential(*[_OfficialResnetBlock(4 * w, 2, sn) for _ in range(blocks)])
        self.decoder = nn.Sequential(
            _sn(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), sn),
            nn.InstanceNorm2d(2 * w),
            nn.ReLU(True),
            _sn(nn.ConvTranspose2d(2 * w, w, 4, 2, 1), sn),
            nn.InstanceNorm2d(w),
            nn.ReLU(True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(w, cout, 7),
        )

    def forward(self, x):  # pre-activation
        return self.decoder(self.middle(self.encoder(x)))


def _official_files(tmp_path, w=8):
    torch.manual_seed(0)
    edge = _OfficialGenerator(3, 1, w, sn=True)
    inpaint = _OfficialGenerator(4, 3, w, sn=False)
    for net in (edge, inpaint):
        net.train()
        with torch.no_grad():  # a few power iterations so u/v are not the initial ones
            for _ in range(3):
                net(torch.rand(1, net.encoder[1].in_channels, 32, 32))
        net.eval()
    torch.save({"iteration": 12, "generator": edge.state_dict()}, tmp_path / "EdgeModel_gen.pth")
    torch.save(
        {"iteration": 12, "generator": inpaint.state_dict()}, tmp_path / "InpaintingModel_gen.pth"
    )
    return edge, inpaint


def test_official_edgeconnect_files_have_the_old_layout(tmp_path):
    _official_files(tmp_path)
    sd = torch.load(tmp_path / "EdgeModel_gen.pth", weights_only=True)["generator"]
    assert (
        "encoder.1.weight_orig" in sd
        and "middle.0.conv_block.1.weight_u" in sd
        and "decoder.0.weight_v" in sd
    )
    sd = torch.load(tmp_path / "InpaintingModel_gen.pth", weights_only=True)["generator"]
    assert sd["encoder.1.weight"].shape[1] == 4 and sd["decoder.7.weight"].shape[0] == 3


def test_import_edgeconnect_matches_the_official_networks(tmp_path):
    from phirm_scale.models.importers import import_edgeconnect

    clear_cache()
    edge, inpaint = _official_files(tmp_path)
    digest = import_edgeconnect(
        tmp_path / "ec.pt",
        edge=tmp_path / "EdgeModel_gen.pth",
        inpaint=tmp_path / "InpaintingModel_gen.pth",
    )
    model = get_model("edgeconnect", checkpoint=tmp_path / "ec.pt", device="cpu")
    assert (
        model.checkpoint_hash == digest
        and model.config["width"] == 8
        and model.config["blocks"] == 8
    )
    ck = load_checkpoint(tmp_path / "ec.pt")
    assert ck.provenance["imported_from"]["edge"]["iteration"] == 12
    g = model.generator.eval()
    torch.manual_seed(1)
    grey = torch.rand(2, 1, 32, 32)
    edges = (torch.rand(2, 1, 32, 32) > 0.8).float()
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:20, 8:24] = 1
    with torch.no_grad():
        # edge generator: same inputs, same weights (spectral norm from the stored u, v)
        x = torch.cat([grey * (1 - mask) + mask, edges * (1 - mask), mask], 1)
        torch.testing.assert_close(
            g.predict_edges(grey, edges, mask), edge(x), rtol=1e-5, atol=1e-5
        )
        # inpainting generator: grey repeated to RGB through the official net = our grey net,
        # whose output is the mean of the three colour pre-activations
        rgb = (grey * (1 - mask) + mask).repeat(1, 3, 1, 1)
        pre = inpaint(torch.cat([rgb, edges], 1)).mean(1, keepdim=True)
        torch.testing.assert_close(
            g.inpaint_image(grey, edges, mask), (torch.tanh(pre) + 1) / 2, rtol=1e-5, atol=1e-5
        )


def test_import_edgeconnect_refuses_foreign_files(tmp_path):
    from phirm_scale.models.importers import import_edgeconnect

    torch.save({"G": {}}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="no 'generator' state dict"):
        import_edgeconnect(tmp_path / "out.pt", edge=tmp_path / "x.pth")
    torch.save({"generator": {"foo.weight": torch.zeros(2)}}, tmp_path / "y.pth")
    with pytest.raises(CheckpointError, match="not an EdgeConnect generator"):
        import_edgeconnect(tmp_path / "out.pt", edge=tmp_path / "y.pth")


# The generator of the DeepFill v2 PyTorch port (github nipponjo/deepfillv2-pytorch,
# model/networks.py: ``Generator(cnum_in=5, cnum_out=3, cnum=48)``), written out by hand from
# that file: every gated conv ``GConv(cin, cout, k)`` is one ``nn.Conv2d`` named ``<layer>.conv``
# with 2 * cout filters (cout for the ungated ``conv_to_rgb``). (name, out, in, kernel) for
# ``cnum = c``; stage 1 takes (RGB, ones, mask), stage 2 RGB, both output RGB.
def _port_layers(c):
    h, q = c // 2, c // 4
    stage1 = [
        ("conv1", c, 5, 5),
        ("down_block1.conv1_downsample", 2 * c, h, 3),
        ("down_block1.conv2", 2 * c, c, 3),
        ("down_block2.conv1_downsample", 4 * c, c, 3),
        ("down_block2.conv2", 4 * c, 2 * c, 3),
        *[(f"conv_bn{i}", 4 * c, 2 * c, 3) for i in range(1, 8)],
        ("up_block1.conv1_upsample.conv", 2 * c, 2 * c, 3),
        ("up_block1.conv2", 2 * c, c, 3),
        ("up_block2.conv1_upsample.conv", c, c, 3),
        ("up_block2.conv2", h, h, 3),
        ("conv_to_rgb", 3, q, 3),
    ]
    stage2 = [
        ("conv_conv1", c, 3, 5),
        ("conv_down_block1.conv1_downsample", c, h, 3),
        ("conv_down_block1.conv2", 2 * c, h, 3),
        ("conv_down_block2.conv1_downsample", 2 * c, c, 3),
        ("conv_down_block2.conv2", 4 * c, c, 3),
        *[(f"conv_conv_bn{i}", 4 * c, 2 * c, 3) for i in range(1, 6)],
        ("ca_conv1", c, 3, 5),
        ("ca_down_block1.conv1_downsample", c, h, 3),
        ("ca_down_block1.conv2", 2 * c, h, 3),
        ("ca_down_block2.conv1_downsample", 4 * c, c, 3),
        ("ca_down_block2.conv2", 4 * c, 2 * c, 3),
        ("ca_conv_bn1", 4 * c, 2 * c, 3),
        ("ca_conv_bn4", 4 * c, 2 * c, 3),
        ("ca_conv_bn5", 4 * c, 2 * c, 3),
        ("conv_bn6", 4 * c, 4 * c, 3),
        ("conv_bn7", 4 * c, 2 * c, 3),
        ("up_block1.conv1_upsample.conv", 2 * c, 2 * c, 3),
        ("up_block1.conv2", 2 * c, c, 3),
        ("up_block2.conv1_upsample.conv", c, c, 3),
        ("up_block2.conv2", h, h, 3),
        ("conv_to_rgb", 3, q, 3),
    ]
    return [(f"stage1.{n}", *r) for n, *r in stage1] + [(f"stage2.{n}", *r) for n, *r in stage2]


def _port_states(c, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, cout, cin, k in _port_layers(c):
        sd[f"{name}.conv.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.1
        sd[f"{name}.conv.bias"] = torch.randn(cout, generator=g) * 0.1
    return sd


def test_import_deepfill_v2_port_states(tmp_path):
    from phirm_scale.models.importers import import_deepfill_v2

    c = 8
    port = _port_states(c)
    torch.save({"G": port, "D": {}, "n_iter": 5}, tmp_path / "states.pth")
    digest = import_deepfill_v2(tmp_path / "states.pth", tmp_path / "df.pt")
    clear_cache()
    model = get_model("deepfill-v2", checkpoint=tmp_path / "df.pt", device="cpu")
    assert model.config["width"] == c and model.checkpoint_hash == digest
    ours = model.generator.state_dict()
    assert set(ours) == set(port)  # every layer of the port, no other
    grey_inputs = {"stage1.conv1": 3, "stage2.conv_conv1": 3, "stage2.ca_conv1": 3}
    for key, t in port.items():
        layer = key.rsplit(".conv.", 1)[0]
        if layer.endswith("conv_to_rgb"):  # RGB outputs: averaged into one grey output
            expected = t.mean(0, keepdim=True)
        elif layer in grey_inputs and key.endswith("weight"):  # RGB inputs: summed into grey
            expected = torch.cat([t[:, :3].sum(1, keepdim=True), t[:, 3:]], 1)
        else:
            expected = t
        torch.testing.assert_close(ours[key], expected, rtol=0, atol=1e-6, msg=key)
    # a grey image through the imported coarse stage = the port's RGB conv on it repeated
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    m = torch.zeros_like(x)
    w, b = port["stage1.conv1.conv.weight"], port["stage1.conv1.conv.bias"]
    rgb_in = torch.cat([x, x, x, torch.ones_like(x), m], 1)
    with torch.no_grad():
        ref = torch.nn.functional.conv2d(rgb_in, w, b, padding=2)
        got = model.generator.stage1.conv1.conv(torch.cat([x, torch.ones_like(x), m], 1))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    out = model(((x + 1) / 2).numpy(), np.ones_like(x.numpy()))
    assert out.shape == (1, 1, 16, 16) and np.isfinite(out).all()


def test_import_weights_cli(tmp_path, capsys):
    from phirm_scale.cli import main

    _official_files(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "import-weights",
                "edgeconnect",
                str(tmp_path / "EdgeModel_gen.pth"),
                str(tmp_path / "InpaintingModel_gen.pth"),
                "-o",
                str(tmp_path / "ec.pt"),
            ]
        )
    assert exc.value.code == 0
    ck = load_checkpoint(tmp_path / "ec.pt", expected_model="edgeconnect")
    assert set(ck.provenance["imported_from"]) == {"format", "edge", "inpaint"}
    assert f"content hash {ck.content_hash[:12]}" in capsys.readouterr().out
