"""Metric validation (paper 4.1): graded manipulations scored by PhIRM, PSNR and SSIM."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import BBBC039

from phirm_scale.errors import InputError
from phirm_scale.metric import components, score, to_uint8
from phirm_scale.validate_metric import (
    add_artefacts,
    erode_nuclei,
    remove_nuclei,
    validate_image,
    validate_metric,
)

DATA = BBBC039
FIELD = "IXMtest_A02_s1_w1051DAA7C-7042-435F-99F0-1E847D9B42CB.tif"


def _discs(n_side=4, size=200, r=9, value=120, bg=10):
    """Well separated, equal discs on a flat background: n_side**2 nuclei."""
    img = np.full((size, size), bg, np.uint8)
    step = size // n_side
    for i in range(n_side):
        for j in range(n_side):
            cv2.circle(img, (step // 2 + j * step, step // 2 + i * step), r, value, -1)
    return img


@pytest.fixture(scope="module")
def real_field():
    f = DATA / FIELD
    if not f.is_file():
        pytest.skip(f"BBBC039 sample fields not found at {DATA}")
    import tifffile

    return to_uint8(tifffile.imread(f))


def test_remove_nuclei_on_discs_counts_and_nesting():
    img = _discs()
    n0 = components(img).nuclei_count
    assert n0 == 16
    prev = None
    for k in range(7):
        out = remove_nuclei(img, k, rng=3)
        c = components(out)
        assert c.nuclei_count == 16 - k
        removed = out != img
        if prev is not None:  # same seed: nested sets of removed nuclei
            assert not (prev & ~removed).any()
        prev = removed
    # removal outside the chosen nuclei changes nothing; filled pixels are background-dark
    out = remove_nuclei(img, 16, rng=0)
    assert components(out).nuclei_count == 0
    assert out.max() <= 10


def test_erode_nuclei_shrinks_area_by_ring():
    img = _discs(r=10)
    a0 = components(img).nuclei_area
    areas = [components(erode_nuclei(img, r, rng=0)).nuclei_area for r in range(5)]
    assert areas[0] == a0
    assert all(b < a for a, b in itertools.pairwise(areas))
    # a disc of radius 10 eroded by 3 px is about a disc of radius 7 (16 discs)
    assert areas[3] == pytest.approx(16 * np.pi * 7.0**2, rel=0.12)
    assert components(erode_nuclei(img, 3, rng=0)).nuclei_count == 16


def test_add_artefacts_area_and_classification():
    img = _discs()
    for frac in (0.002, 0.01, 0.03):
        out = add_artefacts(img, frac, rng=1)
        added = (out == 255) & (img != 255)
        assert added.sum() >= frac * img.size
        assert added.sum() < frac * img.size + 800  # stops after the shape that crosses it
        c = components(out)
        assert 0.9 * added.sum() <= c.artefact_area <= added.sum() + 50
        assert c.nuclei_count == 16  # placed away from the nuclei
    small = add_artefacts(img, 0.005, rng=7) == 255
    large = add_artefacts(img, 0.02, rng=7) == 255
    assert not (small & ~large).any()  # same seed: the larger adds to the smaller


def test_bad_inputs():
    with pytest.raises(InputError, match="uint8"):
        remove_nuclei(np.zeros((10, 10), np.uint16), 1)
    with pytest.raises(InputError, match="non-negative"):
        erode_nuclei(_discs(), -1)
    with pytest.raises(InputError, match=r"\[0, 0.5\]"):
        add_artefacts(_discs(), 0.9)
    with pytest.raises(InputError, match="no such file"):
        validate_metric("/nonexistent/folder")


def test_real_field_monotone_and_one_at_zero(real_field):
    strengths = {
        "nuclei_removed": (0, 1, 2, 3, 4, 5, 6),
        "artefacts_added": (0, 0.0005, 0.001, 0.0025, 0.005, 0.01),
    }
    df = pd.DataFrame(validate_image(real_field, strengths=strengths, name=FIELD))
    for kind in strengths:
        g = df[df.manipulation == kind].sort_values("strength")
        for col in ("phirm", "phirm_reference"):
            v = g[col].to_numpy()
            assert v[0] == 1.0
            assert (np.diff(v) <= 1e-12).all(), (kind, col, v)
            assert v[-1] < 0.5  # the strongest manipulation is clearly penalised
    rem = df[df.manipulation == "nuclei_removed"].sort_values("strength")
    # the unmanipulated field's count is Algorithm 1's, by the independent loop implementation;
    # each removal loses at least one
    from phirm_scale.reference_impl import paper_components

    assert rem.ref_nuclei_count.iloc[0] == paper_components(real_field).nuclei_count
    assert (np.diff(rem.nuclei_count.to_numpy()) < 0).all()
    # SSIM hardly notices removed nuclei, PhIRM does (the paper's point, Fig. 1c)
    four = rem[rem.strength == 4].iloc[0]
    assert four.ssim > 0.98 and four.phirm < 0.5
    zero = df[df.strength == 0]
    assert (zero.psnr == np.inf).all() and (zero.ssim == 1.0).all()


def test_score_of_manipulation_matches_metric(real_field):
    man = remove_nuclei(real_field, 2, rng=0)
    row = next(iter(validate_image(real_field, strengths={"nuclei_removed": (2,)})))
    s = score(real_field, man)
    assert row["phirm"] == s.phirm
    # independent of the code path: two removed nuclei cost 1.1**2 * 2 in NCD (paper mode)
    assert s.reference.nuclei_count - s.reconstruction.nuclei_count == 2
    assert s.ncd == pytest.approx(1.1**2 * 2)
    assert s.phirm == pytest.approx(max(0.0, 10 - s.ncd - s.nad - s.aad) / 10)


@pytest.mark.slow
def test_cli_validate_metric(tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"BBBC039 sample fields not found at {DATA}")
    out = tmp_path / "vm"
    script = Path(sys.executable).parent / "phirm-scale"
    args = ["validate-metric", str(DATA), "-o", str(out), "--limit", "1"]
    if script.is_file():
        res = subprocess.run([str(script), *args], capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
        text = res.stdout
    else:  # package not installed as a script: run the typer app in-process
        from typer.testing import CliRunner

        from phirm_scale.cli import app

        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        text = r.output
    assert "nuclei_removed" in text
    df = pd.read_csv(out / "validation.csv")
    assert df.field.nunique() == 1
    assert set(df.manipulation) == {"nuclei_removed", "nuclei_eroded", "artefacts_added"}
    assert (out / "validation.png").stat().st_size > 10_000
    assert (out / "examples.png").is_file()
    zero = df[df.strength == 0]
    assert len(zero) >= 3 and (zero.phirm == 1.0).all()


def test_validate_metric_on_a_list_of_files_with_an_output_folder(tmp_path):
    """A list of files (not a folder) with ``out_dir``: each file is an input, none a path."""
    from phirm_scale.errors import OutputError

    imageio = pytest.importorskip("tifffile")
    files = []
    for name, n_side in (("a.tif", 3), ("b.tif", 4)):
        img = _discs(n_side=n_side)
        img[0, 0] = 250  # the discs mid-range after min/max normalisation, not saturated
        imageio.imwrite(tmp_path / name, img)
        files.append(tmp_path / name)
    strengths = {"nuclei_removed": (0, 2), "nuclei_eroded": (0,)}
    out = tmp_path / "vm"
    df = validate_metric(files, out_dir=out, strengths=strengths, plot=False)
    assert sorted(df.field.unique()) == ["a.tif", "b.tif"]
    assert len(df) == 2 * 3  # two fields x three (manipulation, strength) pairs
    on_disk = pd.read_csv(out / "validation.csv")
    assert len(on_disk) == 6
    # 2 of the 9 (resp. 16) discs removed, as the counts on the originals say
    removed = on_disk[(on_disk.manipulation == "nuclei_removed") & (on_disk.strength == 2)]
    assert sorted(removed.ref_nuclei_count - removed.nuclei_count) == [2, 2]
    with pytest.raises(OutputError, match="is an input"):
        validate_metric(files, out_dir=files[1], strengths=strengths, plot=False)
