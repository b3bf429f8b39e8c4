"""`phirm-scale metric` on real files: JSON keys and values, folders, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from conftest import run_cli

from phirm_scale.api import score_images
from phirm_scale.metric import score, to_uint8

KEYS = {"nuclei_count", "nuclei_area", "artefact_count", "artefact_area"}


def test_json_on_a_real_16bit_pair(tmp_path, bbbc039_files):
    ref = tifffile.imread(bbbc039_files[0])
    rec = ref.copy()
    rec[100:160, 200:260] = int(ref.min())  # erase a patch of nuclei
    tifffile.imwrite(tmp_path / "rec.tif", rec)
    proc = run_cli("metric", bbbc039_files[0], tmp_path / "rec.tif", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"reference", "reconstruction", "ncd", "nad", "aad", "phirm", "psnr", "ssim"}
    assert set(out["reference"]) == KEYS == set(out["reconstruction"])
    lo, hi = ref.min(), ref.max()
    expect = score(to_uint8(ref, lo, hi), to_uint8(rec, lo, hi))
    assert out["phirm"] == pytest.approx(expect.phirm)
    assert out["reference"]["nuclei_count"] == expect.reference.nuclei_count
    assert out["reconstruction"]["nuclei_area"] < out["reference"]["nuclei_area"]
    ref_mode = json.loads(
        run_cli(
            "metric", bbbc039_files[0], tmp_path / "rec.tif", "--json", "--mode", "reference"
        ).stdout
    )
    assert ref_mode["reference"]["nuclei_area"] != out["reference"]["nuclei_area"]


def test_png_8bit_used_as_is(tmp_path):
    import cv2

    img = np.zeros((64, 64), np.uint8)
    img[10:20, 10:20] = 100
    cv2.imwrite(str(tmp_path / "a.png"), img)
    cv2.imwrite(str(tmp_path / "b.png"), img)
    out = json.loads(run_cli("metric", tmp_path / "a.png", tmp_path / "b.png", "--json").stdout)
    assert out["phirm"] == 1.0 and out["psnr"] is None
    assert out["reference"]["nuclei_area"] == 100


@pytest.mark.slow
def test_folder_pair_scores_each_common_name(tmp_path, bbbc039_files):
    (tmp_path / "ref").mkdir()
    (tmp_path / "rec").mkdir()
    for f in bbbc039_files[:3]:
        img = tifffile.imread(f)
        tifffile.imwrite(tmp_path / "ref" / f.name, img)
        tifffile.imwrite(tmp_path / "rec" / f.name, img)
    proc = run_cli("metric", tmp_path / "ref", tmp_path / "rec", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["pairs"]) == 3 and out["mean"]["phirm"] == 1.0
    table = run_cli("metric", tmp_path / "ref", tmp_path / "rec")
    assert table.returncode == 0 and "mean" in table.stdout


def test_score_images_uses_reference_range_for_both():
    ref = np.array([[100, 200], [300, 400]], np.uint16)
    rec = np.array([[0, 200], [300, 800]], np.uint16)
    s = score_images(np.tile(ref, (8, 8)), np.tile(rec, (8, 8)))
    # with the reference's range 0 and 800 clip to 0 and 255: the 8-bit images are equal;
    # normalising the reconstruction by its own range would have moved 200 and 300
    assert s.psnr == float("inf")
    assert not np.array_equal(to_uint8(rec), to_uint8(ref))


@pytest.mark.parametrize("case", ["missing", "truncated", "shape", "nan", "3d"])
def test_bad_input_is_one_line_naming_the_file(tmp_path, case):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    bad = tmp_path / "bad.tif"
    if case == "truncated":
        data = good.read_bytes()
        bad.write_bytes(data[: len(data) // 3])
    elif case == "shape":
        tifffile.imwrite(bad, np.zeros((32, 64), np.uint16))
    elif case == "nan":
        a = np.ones((64, 64), np.float32)
        a[0, 0] = np.nan
        tifffile.imwrite(bad, a)
    elif case == "3d":
        tifffile.imwrite(bad, np.zeros((3, 64, 64, 2), np.uint16))
    proc = run_cli("metric", good, bad)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "bad.tif" in lines[0]
