"""One atomic writer (phirm_scale._atomic.atomic_store) for stores, files and checkpoints:
a failed write leaves the previous output and no ``.partial``; the models never import Zarr
or Dask to use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from phirm_scale._atomic import atomic_store


def test_a_file_is_replaced_only_when_written_whole(tmp_path):
    out = tmp_path / "run.json"
    out.write_text("old")
    with atomic_store(out) as tmp:
        assert tmp == tmp_path / "run.json.partial"
        tmp.write_text("new")
        assert out.read_text() == "old"  # not visible before the end of the block
    assert out.read_text() == "new"
    with pytest.raises(RuntimeError, match="killed"), atomic_store(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert out.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no .partial left


def test_a_store_is_replaced_whole_and_a_stale_partial_removed(tmp_path):
    out = tmp_path / "qc.zarr"
    (out / "a").mkdir(parents=True)
    (out / "a" / "x").write_text("old")
    stale = tmp_path / "qc.zarr.partial"
    (stale / "junk").mkdir(parents=True)  # left by a killed writer
    with atomic_store(out) as tmp:
        assert not tmp.exists()
        (tmp / "b").mkdir(parents=True)
        (tmp / "b" / "y").write_text("new")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["b", "b/y"]
    with pytest.raises(RuntimeError), atomic_store(out) as tmp:
        (tmp / "c").mkdir(parents=True)
        raise RuntimeError("killed")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["b", "b/y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qc.zarr"]


def test_outputs_and_checkpoints_share_the_writer():
    from phirm_scale import outputs
    from phirm_scale.models import checkpoint

    assert outputs.atomic_store is atomic_store
    assert checkpoint.atomic_store is atomic_store


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    import torch

    from phirm_scale.models.checkpoint import load_checkpoint, save_checkpoint
    from phirm_scale.models.registry import build_model, default_config

    net = build_model("context-encoder", default_config("context-encoder", width=8), "cpu")
    path = tmp_path / "ck" / "last.pt"
    digest = save_checkpoint(
        path,
        model="context-encoder",
        config=net.config,
        state_dicts={"generator": net.generator.state_dict()},
    )
    before = path.read_bytes()

    def dies_half_way(obj, f, *a, **k):
        Path(f).write_bytes(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(
            path,
            model="context-encoder",
            config=net.config,
            state_dicts={"generator": net.generator.state_dict()},
            step=5,
        )
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).content_hash == digest
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_models_never_import_zarr_or_dask():
    code = (
        "import sys; import phirm_scale.models.checkpoint, phirm_scale.models.train, "
        "phirm_scale._atomic; "
        "print(sorted(m for m in ('zarr', 'dask', 'distributed') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        check=True,
    )
    assert p.stdout.strip() == "[]", p.stdout
