"""Artefact masks (paper 3.3): Otsu x 0.7, opening then closing; the per-field Dask stage."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import iou
from hypothesis import example, given, settings
from hypothesis import strategies as st

from phirm_scale.errors import InputError, PlateError
from phirm_scale.masks._artefacts import artefact_mask, otsu_separability, otsu_threshold_midgap
from phirm_scale.synthetic import artefact_channel, synthetic_artefacts


def test_exact_square():
    img = np.full((40, 40), 100, np.uint16)
    img[10:22, 5:30] = 60000
    m = artefact_mask(img)
    assert m.dtype == np.uint8
    expected = np.zeros((40, 40), np.uint8)
    expected[10:22, 5:30] = 1
    # opening with a radius-2 disk rounds each corner: the corner pixel and its two
    # neighbours along the edges are not covered by any disk that fits inside
    for y, x, dy, dx in ((10, 5, 1, 1), (10, 29, 1, -1), (21, 5, -1, 1), (21, 29, -1, -1)):
        expected[y, x] = expected[y + dy, x] = expected[y, x + dx] = 0
    np.testing.assert_array_equal(m, expected)
    assert m.sum() == 12 * 25 - 12


def test_opening_removes_specks_closing_fills_holes():
    img = np.full((60, 60), 200, np.uint16)
    img[10:40, 10:40] = 50000
    img[25, 25] = 200  # 1-px hole inside the artefact: closed
    img[50, 50] = 50000  # 1-px speck: opened away
    img[50:52, 5:7] = 50000  # 2x2 speck: smaller than a radius-2 disk, opened away
    m = artefact_mask(img, radius=2)
    assert m[25, 25] == 1 and m[50, 50] == 0 and m[50:52, 5:7].sum() == 0
    assert m[11:39, 11:39].all() and m.sum() == 900 - 12
    raw = artefact_mask(img, radius=0)  # no morphology: the plain threshold
    assert raw[25, 25] == 0 and raw[50, 50] == 1 and raw.sum() == 900 - 1 + 1 + 4


def test_threshold_factor():
    # levels 100 (background), 1000 (dim) and 3000 (bright): the dim population is artefact
    # only when factor x Otsu falls below it
    img = np.full((50, 50), 100, np.uint16)
    img[:, 25:] = 3000
    img[20:30, 5:15] = 1000
    t = otsu_threshold_midgap(img)
    assert 1000 <= t < 3000
    assert artefact_mask(img, otsu_factor=1.0)[20:30, 5:15].sum() == 0
    low = artefact_mask(img, otsu_factor=0.3, min_separability=None)
    assert low[20:30, 5:15].sum() == 100 - 12 and low[:, 25:].all()  # corners rounded


def test_matches_skimage_morphology_reference():
    from skimage.morphology import closing, disk, opening

    rng = np.random.default_rng(5)
    img = (200 + 30 * rng.standard_normal((80, 90))).astype(np.float64)
    for _ in range(6):
        y, x = rng.integers(0, 70, 2)
        img[y : y + rng.integers(3, 12), x : x + rng.integers(3, 12)] = 40000
    t = otsu_threshold_midgap(img) * 0.7
    ref = closing(opening(img > t, disk(2), mode="ignore"), disk(2), mode="ignore")
    np.testing.assert_array_equal(artefact_mask(img), ref.astype(np.uint8))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.uint8, np.uint16, np.float32]))
@example(64835, np.float32)  # a plateau one bin wide: its bin reaches above its centre
def test_otsu_same_partition_as_skimage(seed, dtype):
    """Ties only happen across empty histogram bins, so the middle of a plateau splits the
    pixels exactly as skimage's first maximum does."""
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 40.0, (30, 33))
    x = x.astype(dtype) if dtype != np.float32 else (x / 100).astype(dtype)
    if x.min() == x.max():
        return
    np.testing.assert_array_equal(x > otsu_threshold_midgap(x), x > threshold_otsu(x))


def test_otsu_middle_of_plateau():
    img = np.full((20, 20), 100.0)
    img[:4] = 1100.0
    from skimage.filters import threshold_otsu

    assert threshold_otsu(img) < 110  # skimage: first split, just above background
    assert otsu_threshold_midgap(img) == pytest.approx(600.0, abs=5)  # middle of the gap


def test_synthetic_fields_iou():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        intensity, true = synthetic_artefacts((256, 256), rng=rng, density=0.03)
        cfp = artefact_channel(intensity, rng=rng)
        assert true.sum() > 0.02 * true.size
        assert iou(artefact_mask(cfp), true) >= 0.9


def test_clean_field_empty():
    rng = np.random.default_rng(0)
    intensity, true = synthetic_artefacts((256, 256), rng=rng, density=0.0)
    assert true.sum() == 0
    cfp = artefact_channel(intensity, rng=rng)
    assert artefact_mask(cfp).sum() == 0
    assert otsu_separability(cfp, otsu_threshold_midgap(cfp)) == pytest.approx(0.64, abs=0.05)
    # the paper's rule without the guard splits the noise
    assert artefact_mask(cfp, min_separability=None).sum() > 1000
    assert artefact_mask(np.full((8, 8), 7, np.uint16)).sum() == 0


def test_bad_input():
    with pytest.raises(InputError, match="2-D"):
        artefact_mask(np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="NaN"):
        artefact_mask(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(InputError, match="otsu_factor"):
        artefact_mask(np.zeros((4, 4)), otsu_factor=0)


# --------------------------------------------------------------------------- Dask stage


@pytest.fixture(scope="module")
def local_cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def test_masks_stage_on_plate(tmp_path, local_cluster):
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.masks import make_artefact_masks
    from phirm_scale.synthetic import make_plate

    p = make_plate(
        tmp_path / "s.ome.zarr", rows=2, columns=2, fields=1, size=192, seed=4, artefacts=0.03
    )
    res = make_artefact_masks(
        p.path, channel="CFP", dilation=0, cluster=local_cluster, progress=False
    )
    assert set(res) == set(p.fields)
    q = open_plate(p.path)
    for k in q.fields:
        m = q.read_label(k, "artefacts")
        # each field's label is that field's artefacts: judged against the composited truth
        truth = q.read_label(k, "artefacts_true")
        assert truth.any() and iou(m, truth) >= 0.9
        assert res[k] == int(m.sum())
    assert q.attrs["phirm_scale"]["labels_artefacts"]["otsu_factor"] == 0.7
    # resumable: nothing left to do
    assert make_artefact_masks(p.path, dilation=0, cluster="threads", progress=False) == {}

    clean = make_plate(
        tmp_path / "c.ome.zarr", rows=1, columns=2, fields=2, size=128, seed=1, artefacts=0.0
    )
    res = make_artefact_masks(clean.path, cluster="threads", progress=False)
    assert len(res) == 4 and all(v == 0 for v in res.values())
    with pytest.raises(PlateError, match="no channel 'GFP'"):
        make_artefact_masks(clean.path, channel="GFP", cluster="threads", progress=False)


def test_cli_masks(tmp_path):
    from typer.testing import CliRunner

    from phirm_scale.cli import app
    from phirm_scale.plate import open_plate

    out = tmp_path / "m.ome.zarr"
    r = CliRunner().invoke(
        app,
        ["make-plate", str(out), "--rows", "1", "--columns", "2", "--size", "96", "--no-progress"],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        app,
        [
            "masks",
            str(out),
            "--channel",
            "CFP",
            "--cluster",
            "threads",
            "--no-progress",
            "--name",
            "dust",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "labels/dust written for 2 fields" in r.output
    p = open_plate(out)
    assert all(p.has_label(k, "dust") for k in p.fields)
