"""The shipped trained model (issue 19): loads without a checkpoint, refuses damaged files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import WIDE_ENV, run_cli

from phirm_scale.errors import CheckpointError
from phirm_scale.models import get_model, list_models
from phirm_scale.models import shipped as shp
from phirm_scale.models.checkpoint import load_checkpoint, save_checkpoint
from phirm_scale.models.registry import clear_cache, default_config, shipped_hash

NAME = "bbbc039-deepfill-v2"


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    """A copy of the package's weights folder, used instead of it (the original untouched)."""
    folder = tmp_path / "weights"
    shutil.copytree(shp.weights_dir(), folder)
    monkeypatch.setenv(shp.WEIGHTS_ENV, str(folder))
    clear_cache()
    yield folder
    clear_cache()


def _inpaint_shipped(plate, out, env):
    """``inpaint PLATE --mask-label artefacts_true --model NAME -o OUT`` (no --checkpoint)."""
    return run_cli(
        "inpaint", plate, "--mask-label", "artefacts_true", "--model", NAME, "-o", out, env=env
    )


def test_listed_and_in_help():
    assert NAME in list_models()
    proc = run_cli("inpaint", "--help", env={**WIDE_ENV})
    assert NAME in proc.stdout


def test_loads_without_checkpoint_and_inpaints_holes_only():
    m = get_model(NAME, device="cpu")
    assert m.name == NAME
    assert m.checkpoint_hash == shipped_hash(NAME)
    ck = load_checkpoint(shp.weights_dir() / f"{NAME}.pt", expected_model="deepfill-v2")
    # generator only, in fp16, with its provenance
    assert set(ck.state_dicts) == {"generator"}
    assert all(
        v.dtype.is_floating_point is False or str(v.dtype) == "torch.float16"
        for v in ck.state_dicts["generator"].values()
    )
    prov = ck.provenance["shipped"]
    assert prov["step"] == ck.step > 0
    assert prov["train_command"].startswith("phirm-scale train --model deepfill-v2")
    rng = np.random.default_rng(0)
    img = rng.random((2, 1, 64, 64), dtype=np.float32)
    mask = np.zeros_like(img)
    mask[:, :, 16:40, 20:44] = 1
    out = m(img, mask)
    assert np.array_equal(out[mask == 0], img[mask == 0])
    assert np.all((out >= 0) & (out <= 1))
    assert not np.array_equal(out[mask == 1], img[mask == 1])


def test_network_options_refused_unless_equal():
    from phirm_scale.errors import InputError

    m = get_model(NAME, device="cpu")
    get_model(NAME, device="cpu", width=m.config["width"])
    with pytest.raises(InputError, match="differ from its saved config"):
        get_model(NAME, device="cpu", width=m.config["width"] + 4)
    with pytest.raises(InputError, match="shipped trained"):
        default_config(NAME)


def test_truncated_file_refused_naming_it(weights_copy):
    f = weights_copy / f"{NAME}.pt"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated") as e:
        get_model(NAME, device="cpu")
    assert str(f) in str(e.value)


def test_corrupted_byte_refused_through_cli(weights_copy, tmp_path):
    f = weights_copy / f"{NAME}.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    plate = tmp_path / "p.ome.zarr"
    run_cli("make-plate", plate, "--size", "64", "--rows", "1", "--columns", "1", check=True)
    env = {**WIDE_ENV, shp.WEIGHTS_ENV: str(weights_copy)}
    proc = _inpaint_shipped(plate, tmp_path / "out.ome.zarr", env)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") and str(f) in lines[-1]
    assert not (tmp_path / "out.ome.zarr").exists()


def test_other_architecture_refused(weights_copy, tmp_path):
    # an EdgeConnect checkpoint exported under the DeepFill name, and given as its checkpoint
    from phirm_scale.models.registry import build_model

    cfg = default_config("edgeconnect", width=8, blocks=1)
    net = build_model("edgeconnect", cfg, "cpu")
    ec = tmp_path / "ec.pt"
    save_checkpoint(
        ec, model="edgeconnect", config=cfg, state_dicts={"generator": net.generator.state_dict()}
    )
    with pytest.raises(CheckpointError, match="'edgeconnect' model"):
        shp.export_shipped(ec, NAME, out_dir=weights_copy)
    with pytest.raises(CheckpointError, match="not 'deepfill-v2'"):
        get_model(NAME, checkpoint=ec, device="cpu")
    # the file replaced by it (manifest updated to match its bytes): still refused
    shutil.copy(ec, weights_copy / f"{NAME}.pt")
    manifest = shp.read_manifest(weights_copy)
    manifest[NAME]["sha256"] = shp.file_sha256(ec)
    (weights_copy / "manifest.json").write_text(__import__("json").dumps(manifest))
    with pytest.raises(CheckpointError, match="not 'deepfill-v2'"):
        get_model(NAME, device="cpu")


def test_export_roundtrip_matches_fp32_source(weights_copy, tmp_path):
    # re-export the shipped file's own weights (as fp32) and compare outputs
    src = load_checkpoint(weights_copy / f"{NAME}.pt")
    fp32 = {k: v.float() for k, v in src.state_dicts["generator"].items()}
    ck = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint(
        ck,
        model="deepfill-v2",
        config=src.config,
        state_dicts={"generator": fp32},
        step=7,
        epoch=1,
        train_config=src.train_config,
    )
    out = tmp_path / "w2"
    entry = shp.export_shipped(ck, NAME, out_dir=out)
    assert entry["step"] == 7 and entry["sha256"] == shp.file_sha256(out / f"{NAME}.pt")
    # fp32 -> fp16 of values that were fp16 already: the same tensors, the same hash
    assert entry["content_hash"] == src.content_hash


def test_wall_time_sums_resumed_invocations(tmp_path):
    log = tmp_path / "train_log.csv"
    log.write_text("epoch,step,elapsed_s\n1,10,5.0\n1,20,9.0\n1,30,3.0\n1,40,7.5\n")
    assert shp._wall_time(log, 40) == 16.5
    assert shp._wall_time(log, 20) == 9.0


@pytest.mark.slow
def test_run_with_shipped_model_on_tiny_plate(tmp_path):
    plate = tmp_path / "p.ome.zarr"
    run_cli("make-plate", plate, "--size", "128", "--rows", "1", "--columns", "2", check=True)
    out = tmp_path / "out.ome.zarr"
    proc = _inpaint_shipped(plate, out, {**WIDE_ENV})
    assert proc.returncode == 0, proc.stderr
    from phirm_scale.plate import open_plate

    src, dst = open_plate(plate), open_plate(out)
    k = src.fields[0]
    a, b = src.read_field(k), dst.read_field(k)
    hole = src.read_label(k, "artefacts_true") != 0
    assert hole.any()
    assert not np.array_equal(a[0][hole], b[0][hole])
    # a torch model: its precision is recorded (was None for shipped names)
    assert dst.attrs["phirm_scale"]["inpaint"]["precision"] == "fp32"


def test_shipped_model_shares_the_tile_batcher():
    """The inpaint stage batches a shipped model's hole tiles across fields as it does a
    learned architecture's (it once called the model per field: `name in LEARNED`)."""
    from phirm_scale.batcher import TileBatcher
    from phirm_scale.stages.inpaint import field_runner

    runner, per_call = field_runner({"name": NAME, "device": "cpu"}, 4)
    assert isinstance(runner, TileBatcher)
    telea, n = field_runner({"name": "telea"}, 4)
    assert not isinstance(telea, TileBatcher) and n == 4


@pytest.mark.slow
def test_run_with_shipped_model_on_tiny_screen(tmp_path):
    """`run ... --model bbbc039-deepfill-v2` needs no --checkpoint (a 2-field screen of real
    BBBC039 crops with a saturated block in a second channel)."""
    import json
    from pathlib import Path

    import tifffile

    src = sorted(Path("/work/shared/data/bbbc039-rows-A-D").glob("*_w1*.tif"))[:2]
    if not src:
        pytest.skip("BBBC039 fields not at hand")
    folder = tmp_path / "tiffs"
    folder.mkdir()
    for f in src:
        a = tifffile.imread(f)[:200, :200]
        b = np.full_like(a, 100)
        b[60:90, 70:110] = 4095
        tifffile.imwrite(folder / f.name, a)
        tifffile.imwrite(folder / f.name.replace("_w1", "_w2"), b)
    out = tmp_path / "out"
    proc = run_cli(
        "run",
        folder,
        "-o",
        out,
        "--channel-names",
        "DAPI,CFP",
        "--channel",
        "DAPI",
        "--artefact-channel",
        "CFP",
        "--model",
        NAME,
        "--window",
        "field",
        "--cluster",
        "threads",
        "--no-progress",
        env={**WIDE_ENV},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert NAME in (out / "run.json").read_text()
    assert json.loads((out / "run.json").read_text())
