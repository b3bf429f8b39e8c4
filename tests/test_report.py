"""HTML report of a QC store: files, worst-field order, thumbnails read from the plates."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phirm_scale import qc
from phirm_scale.errors import PhirmError
from phirm_scale.report import worst_fields, write_report

SIZE = 270


@pytest.fixture(scope="module")
def qc_store(tmp_path_factory):
    from phirm_scale.plate import create_plate_like
    from phirm_scale.stages.score import score_plates
    from phirm_scale.synthetic import make_plate

    root = tmp_path_factory.mktemp("report")
    src = make_plate(root / "src.ome.zarr", rows=2, columns=3, fields=1, size=SIZE, seed=11)
    rec = create_plate_like(src, root / "rec.ome.zarr", channel_names=["DAPI"])
    for i, k in enumerate(src.fields):
        img = src.read_field(k, "DAPI_clean").copy()
        img[: 20 * i, : 20 * i] = 0  # progressively larger holes -> worse fields
        rec.write_field(k, img[None])
    ds = score_plates(f"{src.path}:DAPI_clean", f"{rec.path}:DAPI", window=128)
    path = qc.write_qc(ds, root / "QC.zarr")
    return path, ds, root


def test_worst_fields_order_matches_numpy(qc_store):
    _, ds, _ = qc_store
    means = np.nanmean(ds.phirm.values, axis=-1)  # (row, column, field)
    flat = [
        (means[i, j, 0], str(r), str(c))
        for i, r in enumerate(ds.row.values)
        for j, c in enumerate(ds.column.values)
    ]
    got = worst_fields(ds, 3)
    assert [m for *_, m in got] == pytest.approx(sorted(m for m, _, _ in flat)[:3])
    for r, c, f, m in got:
        assert np.nanmean(ds.phirm.sel(row=r, column=c, field=f).values) == pytest.approx(m)
    assert got[0][3] < got[-1][3] or got[0][3] == 0
    assert len(worst_fields(ds, 100)) == 6


def test_report_files(qc_store, tmp_path):
    import matplotlib.image as mpimg

    path, ds, _ = qc_store
    index = write_report(path, tmp_path / "rep", worst=3)
    page = index.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert srcs[:2] == ["heatmap.png", "histogram.png"]
    assert len(srcs) == 5
    for s in srcs:
        img = mpimg.imread(tmp_path / "rep" / s)
        assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0
    worst = worst_fields(ds, 3)
    means = np.nanmean(ds["phirm"].values, axis=-1)  # (row, column, field)
    order = np.argsort(means, axis=None, kind="stable")[:3]
    expect = []
    for flat in order:
        i, j, k = np.unravel_index(flat, means.shape)
        expect.append(f"worst_{ds.row.values[i]}{ds.column.values[j]}_{ds.field.values[k]}.png")
    assert srcs[2:] == expect
    assert f"{worst[0][3]:.4f}" in page
    assert "thumbnail unavailable" not in page
    assert ds.attrs["reference"] in page


def test_report_without_plates_still_written(qc_store, tmp_path):
    _, ds, _ = qc_store
    moved = ds.copy()
    moved.attrs = {**ds.attrs, "reference": str(tmp_path / "gone.ome.zarr")}
    page = write_report(moved, tmp_path / "rep2", worst=2).read_text()
    assert page.count("thumbnail unavailable") == 2
    assert (tmp_path / "rep2" / "heatmap.png").exists()


def test_report_bad_store(tmp_path):
    with pytest.raises(PhirmError, match="not found"):
        write_report(tmp_path / "nope.zarr", tmp_path / "r")


@pytest.mark.slow
def test_cli_report(qc_store, tmp_path):
    path, _, _ = qc_store
    exe = Path(sys.executable).with_name("phirm-scale")
    p = subprocess.run(
        [str(exe), "report", str(path), "-o", str(tmp_path / "r"), "--worst", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "r" / "index.html").exists()
    assert len(list((tmp_path / "r").glob("worst_*.png"))) == 1


def test_thumbnails_contrast_stretched_with_alt_text(qc_store, tmp_path):
    """A dim 16-bit field with one hot pixel: on the field's min/max it is black; stretched
    to the 1-99.5 percentiles of the reference its gradient fills the grey range."""
    import matplotlib.image as mpimg

    from phirm_scale.report import field_thumbnail

    _, ds, _ = qc_store
    r, c, f, _ = worst_fields(ds, 1)[0]
    ref = np.tile(np.linspace(100, 1100, SIZE), (SIZE, 1)).astype(np.uint16)
    ref[0, 0] = 60000
    png = field_thumbnail(ds, r, c, f, tmp_path / "t.png", reference=ref, reconstruction=ref)
    img = mpimg.imread(png)[..., :3].mean(-1)
    left = img[:, : img.shape[1] // 3]
    midtones = float(np.mean((left > 0.3) & (left < 0.7)))
    assert midtones > 0.1, midtones  # min/max scaling would leave < 2 % (text antialiasing)
    page = write_report(qc_store[0], tmp_path / "rep", worst=2).read_text()
    imgs = re.findall(r"<img [^>]*>", page)
    assert len(imgs) == 4
    assert all(re.search(r'alt="[^"]{10,}"', i) for i in imgs), imgs
    assert "1-99.5" in page


def test_standalone_report_lists_reference_free_flags(qc_store, tmp_path):
    """A QC with the reference-free flags (`score --self-check`): the report lists every
    flagged field with why, hand-built flags and values."""
    _, ds, _ = qc_store
    ds = ds.copy()
    dims = ("row", "column", "field")
    shape = tuple(ds.sizes[d] for d in dims)
    flag = np.zeros(shape)
    flag[1, 2, 0] = 2  # B03: residual artefact
    flag[0, 1, 0] = 1  # A02: self-check below threshold
    resid = np.zeros(shape)
    resid[1, 2, 0] = 123
    sc = np.full(shape, 0.97)
    sc[0, 1, 0] = 0.812
    ds["flag"] = (dims, flag, {"selfcheck_threshold": 0.9, "residual_threshold": 50.0})
    ds["residual_artefact_area"] = (dims, resid)
    ds["field_selfcheck_phirm_mean"] = (dims, sc)
    page = write_report(ds, tmp_path / "rep", worst=1).read_text()
    assert "Flagged fields, reference-free QC (2 of 6)" in page
    b03 = page.index("<td>B03</td><td>0</td>")
    a02 = page.index("<td>A02</td><td>0</td>")
    assert "123 px of artefact left" in page[b03 : b03 + 400]
    assert "self-check PhIRM 0.812 &lt; 0.9" in page[a02 : a02 + 400]
    # a QC without flags has no such section
    assert "reference-free QC" not in write_report(qc_store[1], tmp_path / "r2").read_text()


def test_thumbnail_panels_are_block_means_in_full_resolution_coordinates():
    """A large field is averaged over integer blocks before it is drawn (a thumbnail of a
    2160-px field took ~2 s in matplotlib's resampling), in the field's own pixel coordinates."""
    from phirm_scale.report import _display

    img = np.arange(7 * 10, dtype=np.float64).reshape(7, 10) ** 1.5
    shown, extent = _display(img, target=3)  # 7 // 3 = 2: 2x2 blocks, the odd last row dropped
    expected = np.empty((3, 5))
    for i in range(3):
        for j in range(5):
            expected[i, j] = sum(img[2 * i + di, 2 * j + dj] for di in (0, 1) for dj in (0, 1)) / 4
    np.testing.assert_allclose(shown, expected, rtol=1e-12)
    assert extent == (-0.5, 9.5, 5.5, -0.5)
    small = np.eye(5)
    same, extent = _display(small, target=720)
    np.testing.assert_array_equal(same, small)
    assert extent == (-0.5, 4.5, 4.5, -0.5)


def _flag_qc(attrs: dict):
    """One field flagged for 60 px of residual artefact; flag attributes as given."""
    import xarray as xr

    dims = ("row", "column", "field")
    return xr.Dataset(
        {
            "flag": (dims, np.array([[[2.0]]]), attrs),
            "residual_artefact_area": (dims, np.array([[[60.0]]])),
            "expected_hidden_nuclear_area": (dims, np.array([[[9000.0]]])),
        },
        coords={"row": ["A"], "column": ["01"], "field": [0]},
    )


@pytest.mark.parametrize(
    ("hidden", "says"),
    [
        (None, None),  # a store made before flag bit 8: no such rule was applied
        (float("inf"), None),  # a run resumed from before it (recorded inf): none either
        (1234.0, "at least 1234 px of nuclei expected under the holes"),
    ],
)
def test_flag_text_names_the_hidden_rule_only_when_recorded(hidden, says):
    from phirm_scale.report import _flagged_section

    attrs = {"selfcheck_threshold": 0.9, "residual_threshold": 50.0}
    if hidden is not None:
        attrs["hidden_threshold"] = hidden
    text = _flagged_section(_flag_qc(attrs))
    assert "more than 50 px of artefact left" in text
    if says is None:
        assert "nuclei expected" not in text and "8500" not in text and "inf" not in text
    else:
        assert says in text
