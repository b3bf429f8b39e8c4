"""The paper's experiment on a tiny tile store: models x mask families, scored with PhIRM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phirm_scale.errors import InputError
from phirm_scale.evaluate import (
    evaluate,
    evaluation_table,
    format_table,
    parse_checkpoints,
    tile_masks,
)
from phirm_scale.metric import score
from phirm_scale.synthetic import make_plate
from phirm_scale.tiles import open_tiles, write_tiles

FAMILIES = ["rect:10-20", "rect:40-50", "strokes", "artefacts"]


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("ev")
    plate = make_plate(
        d / "p.ome.zarr", rows=2, columns=2, fields=1, size=128, seed=4, artefacts=0.04
    )
    out = d / "T.zarr"
    write_tiles(
        plate,
        out,
        channel="DAPI_clean",
        size=64,
        split=(0.5, 0.25, 0.25),
        seed=0,
        label="artefacts_true",
    )
    return out


class Oracle:
    """Copies the original into the hole: a perfect inpainter."""

    name = "oracle"

    def __init__(self, store):
        ts = open_tiles(store, "test")
        self.originals = np.asarray(ts.images[:]).astype(np.float32) / 255
        self.calls = 0

    def __call__(self, images, masks):
        # find each tile's original by its unmasked pixels (the tiles are distinct)
        out = np.empty_like(images)
        for j in range(images.shape[0]):
            keep = masks[j, 0] == 0
            diffs = [np.abs(o[keep] - images[j, 0][keep]).max() for o in self.originals]
            out[j, 0] = self.originals[int(np.argmin(diffs))]
        self.calls += 1
        return out


def zero_fill(images, masks):
    return np.where(masks != 0, 0.0, images).astype(np.float32)


zero_fill.name = "zeros"


def test_oracle_scores_one_and_zero_fill_scores_lower(tiles):
    oracle = Oracle(tiles)
    df = evaluate([oracle, zero_fill], tiles, masks=FAMILIES, seed=1, batch_size=3)
    n = len(open_tiles(tiles, "test"))
    assert len(df) == 2 * len(FAMILIES) * n
    o = df[df.model == "oracle"]
    assert len(o) == len(FAMILIES) * n > 0
    assert (o.phirm == 1.0).all() and (o.phirm_reference == 1.0).all()
    assert (o.psnr == np.inf).all() and (o.ssim == 1.0).all()
    z = df[df.model == "zeros"]
    s = evaluation_table(df).set_index(["model", "mask"])
    for fam in FAMILIES:
        assert s.loc[("zeros", fam), "phirm"] < 1.0
        assert s.loc[("zeros", fam), "psnr"] < 40
    # bigger holes hurt more
    assert s.loc[("zeros", "rect:40-50"), "phirm"] <= s.loc[("zeros", "rect:10-20"), "phirm"]
    assert z.hole_fraction[z["mask"] == "rect:40-50"].between(0.40, 0.50, inclusive="left").all()
    # the per-tile score equals metric.score on the same 8-bit images
    ts = open_tiles(tiles, "test")
    m = tile_masks("rect:40-50", [0], (64, 64), seed=1)[0]
    orig = np.asarray(ts.images[0])
    rec = np.where(m != 0, 0, orig).astype(np.uint8)
    row = z[(z["mask"] == "rect:40-50") & (z.tile == 0)].iloc[0]
    ref = score(orig, rec)
    assert row.phirm == pytest.approx(ref.phirm) and row.psnr == pytest.approx(ref.psnr)
    assert row.ssim == pytest.approx(ref.ssim)


def test_masks_are_seeded_per_tile_and_shared(tiles):
    a = tile_masks("strokes", [0, 1, 2, 3], (64, 64), seed=5)
    b = tile_masks("strokes", [2, 3], (64, 64), seed=5)
    np.testing.assert_array_equal(a[2:], b)
    c = tile_masks("strokes", [0, 1, 2, 3], (64, 64), seed=6)
    assert not np.array_equal(a, c)
    # 'artefacts' masks come from the artefact pool (non-empty)
    pool = open_tiles(tiles, "test").artefacts[:]
    m = tile_masks("artefacts", range(4), (64, 64), seed=0, artefact_pool=pool)
    assert (m.reshape(4, -1).sum(1) > 0).all()


def test_classical_models_and_outputs(tiles, tmp_path):
    out = tmp_path / "eval"
    df = evaluate(
        "telea,navier-stokes",
        f"{tiles}:test",
        masks=FAMILIES,
        out_dir=out,
        limit=3,
        seed=0,
        n_examples=2,
    )
    assert set(df.model) == {"telea", "navier-stokes"} and df.tile.max() == 2
    assert df.phirm.between(0, 1).all() and df.phirm_reference.between(0, 1).all()
    # classical inpainting beats filling the holes with black on the big rectangles (PSNR)
    z = evaluate([zero_fill], f"{tiles}:test", masks=["rect:40-50"], limit=3, seed=0)
    t = df[(df.model == "telea") & (df["mask"] == "rect:40-50")]
    assert t.psnr.mean() > z.psnr.mean()
    for f in (
        "evaluation_tiles.csv",
        "evaluation.csv",
        "table.txt",
        "phirm_by_mask.png",
        "evaluation.json",
        "examples_rect_10-20.png",
        "examples_artefacts.png",
    ):
        assert (out / f).is_file(), f
    table = pd.read_csv(out / "evaluation.csv")
    assert list(table.columns[:3]) == ["model", "mask", "n"] and len(table) == 2 * len(FAMILIES)
    text = format_table(df)
    assert "telea" in text and "rect:40-50" in text and "mean PhIRM" in text


def test_learned_model_without_checkpoint_is_refused(tiles):
    with pytest.raises(InputError, match="--allow-untrained"):
        evaluate(["telea", "deepfill-v2"], tiles, masks=["strokes"], limit=2)


def test_untrained_learned_model_runs_when_allowed(tiles):
    """The same call that is refused above runs with ``allow_untrained``: a model *name* without
    a checkpoint, so the flag itself is what lets it through."""
    pytest.importorskip("torch")
    df = evaluate(
        ["context-encoder"],
        tiles,
        masks=["rect:20-30"],
        limit=2,
        allow_untrained=True,
        batch_size=2,
    )
    assert len(df) == 2 and set(df.model) == {"context-encoder"}
    assert df.phirm.between(0, 1).all()
    with pytest.raises(InputError, match="--allow-untrained"):
        evaluate(["context-encoder"], tiles, masks=["rect:20-30"], limit=2, batch_size=2)


def test_bad_arguments(tiles):
    with pytest.raises(InputError, match="unknown model"):
        evaluate(["nope"], tiles, masks=["strokes"])
    with pytest.raises(InputError, match="mask spec"):
        evaluate(["telea"], tiles, masks=["hexagons"])
    with pytest.raises(InputError, match="not among the evaluated models"):
        evaluate(["telea"], tiles, masks=["strokes"], checkpoints="ce=x.pt")
    with pytest.raises(InputError, match="NAME=PATH"):
        parse_checkpoints("ce")
    assert parse_checkpoints("ce=a.pt,deepfill=b.pt,edge=c.pt") == {
        "context-encoder": "a.pt",
        "deepfill-v2": "b.pt",
        "edgeconnect": "c.pt",
    }


def test_artefacts_family_needs_artefact_tiles(tmp_path):
    plate = make_plate(tmp_path / "p.ome.zarr", rows=1, columns=2, fields=1, size=64, seed=0)
    write_tiles(plate, tmp_path / "T.zarr", channel="DAPI", size=64, split=(0.5, 0, 0.5))
    with pytest.raises(InputError, match="no artefact masks"):
        evaluate(["telea"], tmp_path / "T.zarr", masks=["artefacts"])


@pytest.mark.slow
def test_cli_evaluate(tiles, tmp_path):
    from typer.testing import CliRunner

    from phirm_scale.cli import app

    out = tmp_path / "e"
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--models",
            "telea,biharmonic",
            "--tiles",
            f"{tiles}:test",
            "--masks",
            "rect:10-20,strokes,artefacts",
            "-o",
            str(out),
            "--limit",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "biharmonic" in r.output and "mean PhIRM" in r.output
    assert len(pd.read_csv(out / "evaluation.csv")) == 6
    r = CliRunner().invoke(
        app, ["evaluate", "--models", "telea,edgeconnect", "--tiles", str(tiles), "-o", str(out)]
    )
    assert r.exit_code != 0
    assert isinstance(r.exception, InputError) and "allow-untrained" in str(r.exception)


def test_cli_untrained_learned_model_is_a_one_line_error(tiles):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "phirm-scale"
    if not script.is_file():
        pytest.skip("phirm-scale console script not installed beside this Python")
    res = subprocess.run(
        [
            str(script),
            "evaluate",
            "--models",
            "deepfill-v2",
            "--tiles",
            f"{tiles}:test",
            "--masks",
            "strokes",
            "-o",
            "/nonexistent/never",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model 'deepfill-v2' is learned")


def test_results_do_not_depend_on_batch_size_or_limit(tiles):
    a = evaluate(["telea"], tiles, masks=["rect:20-30", "strokes"], batch_size=1, seed=3)
    b = evaluate(["telea"], tiles, masks=["rect:20-30", "strokes"], batch_size=16, seed=3)
    c = evaluate(["telea"], tiles, masks=["rect:20-30", "strokes"], limit=2, seed=3)
    cols = ["model", "mask", "tile", "hole_fraction", "phirm", "phirm_reference", "psnr", "ssim"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    head = a[a.tile < 2][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(head, c[cols].reset_index(drop=True))
