"""Training: losses fall when overfitting one batch, EdgeConnect stages train their own parts,
an end-to-end run writes checkpoints/logs/plot, and a resumed run continues identically."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from phirm_scale.errors import CheckpointError, InputError
from phirm_scale.models import get_model
from phirm_scale.models.checkpoint import load_checkpoint
from phirm_scale.models.registry import build_model, clear_cache, default_config
from phirm_scale.models.train import TrainConfig, make_trainer, train

torch.set_num_threads(1)


def _train(model, tiles, *, out_dir, **kw):
    return train(TrainConfig(model, tiles, out_dir, **kw))


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """A real tile store cut from a small synthetic plate: 8 train, 4 val, 4 test tiles of 64."""
    from phirm_scale.synthetic import make_plate
    from phirm_scale.tiles import write_tiles

    d = tmp_path_factory.mktemp("tiles")
    plate = make_plate(d / "p.ome.zarr", rows=2, columns=2, fields=1, size=128, seed=0)
    write_tiles(
        plate,
        d / "t.zarr",
        channel="DAPI_clean",
        size=64,
        split=(0.5, 0.25, 0.25),
        label="artefacts_true",
    )
    return d / "t.zarr"


@pytest.fixture(scope="module")
def one_batch(tiles):
    from phirm_scale.masks import sample_masks
    from phirm_scale.tiles import open_tiles

    images = np.asarray(open_tiles(tiles, "train").images[:4]).astype(np.float32)[:, None] / 255
    masks = sample_masks("rect:20-30", 4, (64, 64), rng=np.random.default_rng(0))[:, None] != 0
    return images, masks


@pytest.mark.parametrize(
    "name, stage, key, lr, steps, threads",
    [
        ("context-encoder", None, "g_l2", 1e-3, 25, 1),
        # DeepFill v2 sits on a plateau for ~25 steps before it drops: 60 steps leave a wide margin
        # (last/first about 0.42 here, on 1 thread and on all cores); it ran 3 of 3 red at 25.
        pytest.param("deepfill-v2", None, "g_l1", 2e-3, 60, 1, marks=pytest.mark.slow),
        pytest.param("deepfill-v2", None, "g_l1", 2e-3, 60, 0, marks=pytest.mark.slow),
        pytest.param("edgeconnect", "inpaint", "g_l1", 1e-3, 25, 1, marks=pytest.mark.slow),
        pytest.param("edgeconnect", "joint", "g_l1", 1e-3, 25, 1, marks=pytest.mark.slow),
    ],
)
def test_overfitting_one_batch_reduces_the_loss(one_batch, name, stage, key, lr, steps, threads):
    images, masks = one_batch
    net = build_model(name, default_config(name, width=8), "cpu")
    trainer = make_trainer(net, lr=lr, stage=stage)
    batch = net.prepare(images, masks, train=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or (os.cpu_count() or 1))
    try:
        losses = [trainer.train_step(batch)[key] for _ in range(steps)]
    finally:
        torch.set_num_threads(before)
    assert np.isfinite(losses).all(), losses
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.75 * first, (first, last)


def test_contextual_attention_gradient_is_finite_on_blank_patches():
    """An all-zero background patch has norm 0; its gradient must stay finite (it was NaN:
    d sqrt(x)/dx at 0, which sent DeepFill v2 training to NaN after ~25 steps at lr 2e-3)."""
    from phirm_scale.models.networks.deepfill_v2 import ContextualAttention

    torch.manual_seed(0)
    f = torch.rand(1, 4, 16, 16, requires_grad=True)
    b = torch.zeros(1, 4, 16, 16)
    b[..., :, 8:] = torch.rand(1, 4, 16, 8)  # left half blank: zero-norm patches
    b.requires_grad_(True)
    mask = torch.zeros(1, 1, 64, 64)  # full resolution: features are 4x smaller
    mask[..., 16:48, 16:48] = 1
    out = ContextualAttention()(f, b, mask)
    out = out[0] if isinstance(out, tuple) else out
    out.sum().backward()
    assert torch.isfinite(f.grad).all() and torch.isfinite(b.grad).all()


def test_edgeconnect_stages_train_only_their_generator(one_batch):
    images, masks = one_batch
    # no stage given: 'joint', both generators train
    for stage, moving in (
        ("edge", {"edge"}),
        ("inpaint", {"inpaint"}),
        (None, {"edge", "inpaint"}),
    ):
        net = build_model("edgeconnect", default_config("edgeconnect", width=8), "cpu")
        before = {k: v.clone() for k, v in net.generator.state_dict().items()}
        trainer = make_trainer(net, lr=1e-3, stage=stage)
        m = trainer.train_step(net.prepare(images, masks, train=True))
        after = net.generator.state_dict()
        changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
        assert changed == moving, (stage, changed)
        assert ("edge_precision" in m) == (stage != "inpaint")


def test_stage_and_vgg_apply_to_edgeconnect_only(tiles, tmp_path):
    with pytest.raises(InputError, match="edgeconnect only"):
        _train(
            "deepfill-v2", tiles, out_dir=tmp_path / "r", stage="edge", max_steps=1, device="cpu"
        )
    with pytest.raises(InputError, match="unknown edgeconnect stage 'both'"):
        _train(
            "edgeconnect", tiles, out_dir=tmp_path / "r", stage="both", max_steps=1, device="cpu"
        )
    with pytest.raises(InputError, match="cannot train 'telea'"):
        _train("telea", tiles, out_dir=tmp_path / "r")
    with pytest.raises(CheckpointError, match="VGG weights .*no such file"):
        _train(
            "edgeconnect",
            tiles,
            out_dir=tmp_path / "r",
            vgg_weights=tmp_path / "vgg19.pth",
            max_steps=1,
            width=8,
            device="cpu",
        )


def test_vgg_losses_from_a_local_weights_file(tiles, tmp_path, one_batch):
    from phirm_scale.models.losses import VGG19Features

    torch.manual_seed(0)
    torch.save(VGG19Features().state_dict(), tmp_path / "vgg19.pth")
    net = build_model("edgeconnect", default_config("edgeconnect", width=8), "cpu")
    trainer = make_trainer(net, lr=1e-3, stage="inpaint", vgg_weights=tmp_path / "vgg19.pth")
    images, masks = one_batch
    m = trainer.train_step(net.prepare(images[:1, :, :32, :32], masks[:1, :, :32, :32], train=True))
    assert m["g_perceptual"] > 0 and m["g_style"] >= 0


def _rows(path):
    return list(csv.DictReader(open(path, newline="")))


@pytest.mark.slow
def test_train_writes_checkpoints_logs_plot_and_resumes_identically(tiles, tmp_path):
    clear_cache()
    kw = {
        "epochs": 3,
        "lr": 1e-3,
        "batch_size": 4,
        "masks": "mix",
        "width": 8,
        "device": "cpu",
        "log_every": 1,
    }
    # 8 train tiles / batch 4 = 2 steps per epoch; 3 steps crosses an epoch boundary
    full = _train("deepfill-v2", tiles, out_dir=tmp_path / "full", max_steps=5, **kw)
    part = _train("deepfill-v2", tiles, out_dir=tmp_path / "part", max_steps=3, **kw)
    assert (load_checkpoint(part).epoch, load_checkpoint(part).step) == (1, 3)
    resumed = _train(
        "deepfill-v2", tiles, out_dir=tmp_path / "part", max_steps=5, resume=part, **kw
    )
    a, b = load_checkpoint(full), load_checkpoint(resumed)
    assert (a.epoch, a.step) == (b.epoch, b.step) == (2, 5)
    assert a.content_hash == b.content_hash
    for part_name in ("generator", "discriminator"):
        for k, v in a.state_dicts[part_name].items():
            assert torch.equal(v, b.state_dicts[part_name][k]), k
    # logs: one train row per step, identical losses; validation per epoch and at the end
    ta, tb = _rows(tmp_path / "full" / "train_log.csv"), _rows(tmp_path / "part" / "train_log.csv")
    assert [r["step"] for r in ta] == [r["step"] for r in tb] == ["1", "2", "3", "4", "5"]
    assert [r["g_l1"] for r in ta] == [r["g_l1"] for r in tb]
    val = _rows(tmp_path / "full" / "val_log.csv")
    assert [r["step"] for r in val] == ["2", "4", "5"]
    for r in val:
        assert 0 <= float(r["phirm"]) <= 1 and 0 <= float(r["ssim"]) <= 1 and float(r["psnr"]) > 5
        assert r["n"] == "4"
    run = tmp_path / "full"
    assert {p.name for p in (run / "checkpoints").iterdir()} == {
        "epoch_0001.pt",
        "epoch_0002.pt",
        "last.pt",
    }
    assert (run / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ck = load_checkpoint(run / "checkpoints" / "epoch_0001.pt")
    assert (ck.epoch, ck.step) == (1, 2)
    assert (
        ck.provenance["train"]["masks"] == "mix" and ck.provenance["tiles_attrs"]["tile_size"] == 64
    )
    # the trained checkpoint serves inference through the registry
    model = get_model("deepfill-v2", checkpoint=full, device="cpu")
    x = np.full((1, 1, 64, 64), 0.25, np.float32)
    m = np.zeros_like(x)
    m[..., 8:24, 8:24] = 1
    assert np.array_equal(model(x, m)[m == 0], x[m == 0])


@pytest.mark.parametrize(
    "log_every, save_every, held", [(1, 1000, 1), (1000, 1, 1), (1000, 1000, 2)]
)
def test_a_diverging_run_stops_naming_its_step_and_saves_its_state(
    tiles, tmp_path, log_every, save_every, held
):
    # lr 1e30: Adam moves every weight by ~1e30 in the first step, so step 1's adversarial loss
    # is already infinite. A step's metrics are read once the next step is queued, or at a log
    # or save point: the error names step 1 either way, the saved state says which step it
    # holds, and a save point never writes last.pt from a diverged state.
    out = tmp_path / "run"
    with pytest.raises(InputError, match=r"training diverged at step 1 \(.*not finite\)") as e:
        _train(
            "context-encoder",
            tiles,
            out_dir=out,
            epochs=5,
            lr=1e30,
            batch_size=4,
            masks="mix",
            width=8,
            device="cpu",
            log_every=log_every,
            save_every=save_every,
        )
    assert f"state after step {held} saved to checkpoints/diverged.pt" in str(e.value)
    assert load_checkpoint(out / "checkpoints" / "diverged.pt").step == held
    # never a diverged state under the name of a good one
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["diverged.pt"]
    # and the error left no tile loader running
    assert not [t for t in threading.enumerate() if t.name.startswith("tile-loader")]


def test_batches_prepared_ahead_are_the_batches_prepared_in_line():
    # on CUDA train prepares one batch ahead on a thread (and stream) of its own; the batches
    # must be the same, in the same order, errors must reach the loop, and closing early stops
    from phirm_scale.models.training.loop import prepared_batches

    net = get_model("edgeconnect", device="cpu", width=8, blocks=1).with_options(canny="torch")
    rng = np.random.default_rng(0)
    items = [
        (rng.random((2, 1, 32, 32), dtype=np.float32), rng.random((2, 1, 32, 32)) < 0.2)
        for _ in range(5)
    ]
    inline = list(prepared_batches(net, iter(items), ahead=False))
    ahead = list(prepared_batches(net, iter(items), ahead=True))
    assert len(ahead) == len(inline) == 5
    for a, b in zip(ahead, inline, strict=True):
        assert sorted(a) == sorted(b) == ["edges", "edges_gt", "image", "mask"]
        for k in a:
            assert torch.equal(a[k], b[k]), k

    def failing(after):
        yield from items[:after]
        raise RuntimeError("tile store went away")

    def loader_threads():
        return {t for t in threading.enumerate() if t.name.startswith("tile-loader")}

    before = loader_threads()
    for after in (0, 1, 3):  # failing at once (while the first batch is queued) or later
        gen = prepared_batches(net, failing(after), ahead=True)
        with pytest.raises(RuntimeError, match="tile store went away"):
            list(gen)
        assert not {t for t in loader_threads() - before if t.is_alive()}, after
    # prefetch itself (the tile loader: 4 ahead) when the source fails while it fills up
    from phirm_scale.models.training.data import prefetch

    with pytest.raises(RuntimeError, match="tile store went away"):
        list(prefetch(lambda item: item, failing(2), workers=2, depth=4))
    assert not {t for t in loader_threads() - before if t.is_alive()}
    gen = prepared_batches(net, iter(items), ahead=True)
    first = next(gen)
    gen.close()  # stops the preparing thread; nothing left running
    assert not {t for t in loader_threads() - before if t.is_alive()}
    assert torch.equal(first["image"], inline[0]["image"])


def test_pending_metrics_give_the_floats_of_the_step():
    from phirm_scale.models.training.trainer import PendingMetrics

    third = torch.tensor(1 / 3)  # float32: float() of it is not 1/3
    values = {
        "g_l1": third,
        "d_loss": torch.tensor(0.1, dtype=torch.bfloat16),
        "edge_precision": 0.25,  # a plain float among tensors
        "g_loss": torch.tensor([2.5], requires_grad=True).sum(),
    }
    got = PendingMetrics(values).result()
    assert list(got) == list(values)
    assert got["g_l1"] == float(np.float32(1 / 3)) != 1 / 3
    assert got["d_loss"] == 0.10009765625  # bfloat16's nearest value to 0.1
    assert got["edge_precision"] == 0.25 and got["g_loss"] == 2.5
    assert all(type(v) is float for v in got.values())
    assert PendingMetrics({}).result() == {}


def test_resume_refuses_another_model_or_settings(tiles, tmp_path):
    kw = {"epochs": 1, "lr": 1e-3, "batch_size": 4, "width": 8, "device": "cpu", "max_steps": 1}
    ck = _train("context-encoder", tiles, out_dir=tmp_path / "ce", **kw)
    with pytest.raises(CheckpointError, match="holds a 'context-encoder' model, not 'deepfill-v2'"):
        _train("deepfill-v2", tiles, out_dir=tmp_path / "x", resume=ck, **kw)
    with pytest.raises(InputError, match="batch size 4, not 2"):
        _train(
            "context-encoder", tiles, out_dir=tmp_path / "ce", resume=ck, **{**kw, "batch_size": 2}
        )
    with pytest.raises(InputError, match="--width 16 contradicts"):
        _train("context-encoder", tiles, out_dir=tmp_path / "ce", resume=ck, **{**kw, "width": 16})
    with pytest.raises(InputError, match="augment 'none', not 'dihedral'"):
        _train(
            "context-encoder",
            tiles,
            out_dir=tmp_path / "ce",
            resume=ck,
            **{**kw, "augment": "dihedral"},
        )
    # fine-tuning from it (init) keeps the weights but starts a fresh schedule
    ft = _train("context-encoder", tiles, out_dir=tmp_path / "ft", init=ck, **{**kw, "width": None})
    c = load_checkpoint(ft)
    assert c.step == 1 and c.provenance["init"]["content_hash"] == load_checkpoint(ck).content_hash


def test_training_progress_is_the_stages_progress_bar(tiles, tmp_path, capsys, caplog):
    """Steps shown by phirm_scale.progress.progress_bar (plain lines: stderr is not a
    terminal), a resumed run counting only its own steps; epoch summaries are log records;
    progress=False shows no step line and keeps the records; nothing on stdout."""
    import logging
    import re

    line = re.compile(r"^train: (\d+)/(\d+) \((\d+)%\) [\d.]+ s$")

    def steps_shown(err: str) -> list[tuple[str, ...]]:
        return [m.groups() for m in map(line.match, err.splitlines()) if m]

    kw = {"epochs": 2, "lr": 1e-3, "batch_size": 4, "width": 8, "device": "cpu"}
    kw |= {"val_every": 0, "val_tiles": 1}
    cfg = TrainConfig("context-encoder", tiles, tmp_path / "a", max_steps=3, **kw)
    with caplog.at_level(logging.INFO, logger="phirm_scale"):
        first = train(cfg)  # 8 train tiles, batches of 4: 2 steps per epoch, stopped after 3
        out, err = capsys.readouterr()
        assert out == ""
        assert steps_shown(err) == [("1", "3", "33"), ("2", "3", "66"), ("3", "3", "100")]
        said = [r.getMessage() for r in caplog.records if r.name.endswith("training.loop")]
        assert any(m.startswith("epoch 1/2 step 2 ") for m in said), said
        # resumed to the end of epoch 2: one step left, counted as 1 of 1
        train(dataclasses.replace(cfg, max_steps=None, resume=first))
        assert steps_shown(capsys.readouterr().err) == [("1", "1", "100")]
        caplog.clear()
        train(dataclasses.replace(cfg, out_dir=tmp_path / "b"), progress=False)
        out, err = capsys.readouterr()
        assert out == "" and steps_shown(err) == [] and "train:" not in err
        said = [r.getMessage() for r in caplog.records if r.name.endswith("training.loop")]
        assert any(m.startswith("epoch 1/2 step 2 ") for m in said), said
    with pytest.raises(TypeError, match="progress is a bool"):
        train(cfg, progress=print)  # type: ignore[arg-type]  # the old callable is refused


def _turned(t, w):
    """The w-th symmetry of a square tile by index arithmetic (not numpy's rot90/flip):
    w % 4 quarter turns counter-clockwise, then for w >= 4 a left-right mirror."""
    s = t.shape[-1]
    i, j = np.mgrid[:s, :s]
    for _ in range(w % 4):  # counter-clockwise: out[i, j] = in[j, s - 1 - i]
        t = t[..., j, s - 1 - i]
    return t[..., i, s - 1 - j] if w >= 4 else t


def test_dihedral_turns_are_the_eight_symmetries_of_the_square():
    from phirm_scale.models.training.data import dihedral

    t = np.arange(25, dtype=np.float32).reshape(1, 5, 5)
    tiles = np.stack([t] * 8)
    out = dihedral(tiles, np.arange(8))
    assert out.flags.c_contiguous and out.dtype == np.float32
    for w in range(8):
        np.testing.assert_array_equal(out[w], _turned(t, w))
    assert len({o.tobytes() for o in out}) == 8  # all different on an asymmetric tile
    np.testing.assert_array_equal(tiles[0], t)  # the input is left alone
    with pytest.raises(InputError, match="square tiles"):
        dihedral(np.zeros((1, 1, 4, 5)), np.array([1]))


def test_dihedral_augmentation_turns_each_tile_and_keeps_the_masks(tiles):
    from phirm_scale.masks import parse_mask_spec
    from phirm_scale.models.training.data import StepBatches, TileSource, open_split

    source = TileSource(open_split(tiles, "train"))
    spec = parse_mask_spec("mix")
    plain = StepBatches(source, spec, batch_size=4, seed=3)
    turned = StepBatches(source, spec, batch_size=4, seed=3, augment="dihedral")
    seen = set()
    for epoch in range(4):
        for step in range(plain.steps_per_epoch):
            x0, m0 = plain.load(epoch, step)
            x1, m1 = turned.load(epoch, step)
            np.testing.assert_array_equal(m1, m0)  # the masks' stream is untouched
            again, _ = turned.load(epoch, step)
            np.testing.assert_array_equal(again, x1)  # a pure function of (seed, epoch, step)
            for a, b in zip(x0, x1, strict=True):
                ws = [w for w in range(8) if np.array_equal(_turned(a, w), b)]
                assert ws, "a tile that is no symmetry of its source"
                seen.add(ws[0])
    assert len(seen) >= 6  # 32 tiles: the turns vary (8 possible)
    with pytest.raises(InputError, match="augment must be"):
        TrainConfig("deepfill-v2", tiles, "x", augment="flip").check()
    with pytest.raises(InputError, match="augment must be one of none, dihedral; got 'flip'"):
        StepBatches(source, spec, batch_size=4, seed=3, augment="flip")
    oblong = TileSource.__new__(TileSource)  # a source of 64 x 48 tiles, no store needed
    oblong.n, oblong.size, oblong.path = 8, (64, 48), "oblong.zarr"
    with pytest.raises(InputError, match="^oblong.zarr: tiles are 64x48; --augment dihedral"):
        StepBatches(oblong, spec, batch_size=4, seed=3, augment="dihedral")


@pytest.mark.slow
def test_recorded_config_reproduces_the_run(tiles, tmp_path):
    first = TrainConfig(
        "deepfill-v2",
        tiles,
        tmp_path / "a",
        width=8,
        device="cpu",
        max_steps=2,
        batch_size=4,
        val_every=0,
        val_tiles=1,
    )
    a = load_checkpoint(train(first))
    recorded = TrainConfig.from_checkpoint(tmp_path / "a" / "final.pt")
    # the record holds the schedule the run used (lr and epochs were left to the defaults)
    assert a.optimizers["generator"]["param_groups"][0]["lr"] == recorded.lr
    assert recorded.epochs >= 1 and recorded.batch_size == 4 and recorded.stage is None
    assert TrainConfig.from_dict(recorded.to_dict()) == recorded
    # the recorded config alone gives the same weights and optimiser states
    b = load_checkpoint(train(dataclasses.replace(recorded, out_dir=tmp_path / "b")))
    assert b.content_hash == a.content_hash
    for k, v in a.state_dicts["discriminator"].items():
        assert torch.equal(v, b.state_dicts["discriminator"][k]), k
    assert b.optimizers["generator"]["param_groups"] == a.optimizers["generator"]["param_groups"]
    # ... and it matters: another learning rate trains other weights
    c = load_checkpoint(
        train(dataclasses.replace(recorded, out_dir=tmp_path / "c", lr=10 * recorded.lr))
    )
    assert c.content_hash != a.content_hash
    with pytest.raises(InputError, match="unknown training setting.*depth"):
        TrainConfig.from_dict({**recorded.to_dict(), "depth": 3})


def test_checkpoint_without_training_settings_is_refused(tmp_path):
    from phirm_scale.models.checkpoint import save_checkpoint

    net = build_model("deepfill-v2", default_config("deepfill-v2", width=8), "cpu")
    save_checkpoint(
        tmp_path / "m.pt",
        model="deepfill-v2",
        config=net.config,
        state_dicts={"generator": net.generator.state_dict()},
    )
    with pytest.raises(CheckpointError, match="m.pt: holds no training settings"):
        TrainConfig.from_checkpoint(tmp_path / "m.pt")


def test_train_takes_a_config():
    with pytest.raises(TypeError, match="TrainConfig"):
        train("deepfill-v2")


def test_artefact_masks_need_artefacts(tmp_path):
    from phirm_scale.synthetic import make_plate
    from phirm_scale.tiles import write_tiles

    plate = make_plate(tmp_path / "p.ome.zarr", rows=1, columns=2, fields=1, size=64, seed=1)
    write_tiles(plate, tmp_path / "t.zarr", channel="DAPI", size=64, split=(0.5, 0.5, 0.0))
    with pytest.raises(InputError, match="masks 'artefacts' need artefact masks"):
        _train(
            "deepfill-v2",
            tmp_path / "t.zarr",
            out_dir=tmp_path / "r",
            masks="artefacts",
            width=8,
            device="cpu",
        )
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.slow
def test_train_cli_end_to_end_and_resume(tiles, tmp_path):
    run = tmp_path / "run"
    code = (
        "import sys, torch; torch.set_num_threads(1); "
        "from phirm_scale.cli import main; main(sys.argv[1:])"
    )
    base = [
        sys.executable,
        "-c",
        code,
        "train",
        "--model",
        "edgeconnect",
        "--tiles",
        str(tiles),
        "-o",
        str(run),
        "--width",
        "8",
        "--batch-size",
        "4",
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--device",
        "cpu",
        "--stage",
        "inpaint",
        "--augment",
        "dihedral",
    ]
    r = subprocess.run(
        base + ["--max-steps", "2"], capture_output=True, text=True, timeout=300, check=False
    )
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and (run / "final.pt").is_file()
    assert "train: 2/2 (100%) " in r.stderr  # the steps, as plain progress lines (a pipe)
    assert (
        (run / "train_log.csv").is_file()
        and (run / "val_log.csv").is_file()
        and (run / "training.png").is_file()
    )
    r = subprocess.run(
        base + ["--max-steps", "3", "--resume", str(run / "final.pt"), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "train:" not in r.stderr and "final step 3: val phirm" in r.stderr  # logs stay
    ck = load_checkpoint(run / "final.pt")
    assert (ck.step, ck.epoch, ck.provenance["train"]["stage"]) == (3, 1, "inpaint")
    assert ck.provenance["train"]["augment"] == ck.train_config["augment"] == "dihedral"
    # a user error is one line and exit status 2
    r = subprocess.run(
        base[:4] + ["--model", "lama", "--tiles", str(tiles), "-o", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith(
        "error: cannot train 'lama'"
    )
