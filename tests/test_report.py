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


# ------------------------------------------------- what the pictures show (issue 22.6)
def _red(png):
    """Pixels of the flagged-well outline colour (pure red; the threshold line is crimson)."""
    import matplotlib.image as mpimg

    img = mpimg.imread(png)[..., :3]
    return (img[..., 0] > 0.8) & (img[..., 1] < 0.2) & (img[..., 2] < 0.15)


def test_heatmap_outlines_wells_with_a_flagged_field(qc_store, tmp_path):
    """Pixels of the saved heatmap: a red square ring around A01 and B03 (flagged by hand),
    none on a plate without a flagged field."""
    from scipy import ndimage

    from phirm_scale.report import flagged_wells, plate_heatmap

    _, ds, _ = qc_store
    ds = ds.copy()
    dims = ("row", "column", "field")
    flag = np.zeros((2, 3, 1))
    ds["flag"] = (dims, flag)
    assert not _red(plate_heatmap(ds, tmp_path / "none.png")).any()
    flag[0, 0, 0] = 1  # A01
    flag[1, 2, 0] = 2  # B03
    ds["flag"] = (dims, flag)
    assert flagged_wells(ds).tolist() == [[True, False, False], [False, False, True]]
    red = _red(plate_heatmap(ds, tmp_path / "two.png"))
    labels, n = ndimage.label(ndimage.binary_closing(red, iterations=2))
    boxes = sorted(ndimage.find_objects(labels), key=lambda b: b[1].start)
    assert n == 2
    (ya, xa), (yb, xb) = ((b[0], b[1]) for b in boxes)
    side = xa.stop - xa.start
    assert side > 30  # a cell, not a speck: at least 30 px a side
    assert abs((ya.stop - ya.start) - side) <= 2 and abs((xb.stop - xb.start) - side) <= 2
    # B03 is one row below and two columns right of A01
    assert yb.start > ya.start + side // 2
    assert (xb.start - xa.start) / (yb.start - ya.start) == pytest.approx(2.0, rel=0.05)
    # a ring: the middle of the cell is not red
    assert not red[(ya.start + ya.stop) // 2, (xa.start + xa.stop) // 2]
    # without `flag`, a field whose mean PhIRM is below the threshold flags its well
    means = ds["field_phirm_mean"].values[..., 0]
    plain = ds.drop_vars("flag")
    plain.attrs["threshold"] = float(np.sort(means.ravel())[1]) + 1e-9  # the two lowest
    expect = means < plain.attrs["threshold"]
    assert expect.sum() == 2
    assert flagged_wells(plain).tolist() == expect.tolist()


def test_heatmap_colour_bar_as_tall_as_the_plate_and_text_readable():
    from matplotlib.text import Text

    from phirm_scale.report import OUTLINE_GID, _heatmap_figure

    for shape in ((1, 2), (2, 3), (8, 12), (16, 24)):
        data = np.linspace(0.5, 1.0, shape[0] * shape[1]).reshape(shape)
        outlined = np.zeros(shape, bool)
        outlined[-1, 0] = True
        fig = _heatmap_figure(
            data,
            [chr(65 + i) for i in range(shape[0])],
            [f"{j + 1:02d}" for j in range(shape[1])],
            threshold=0.9,
            title="t",
            what="mean PhIRM",
            outlined=outlined,
        )
        fig.canvas.draw()
        ax, cax = fig.axes
        a, b = ax.get_window_extent(), cax.get_window_extent()
        assert b.height == pytest.approx(a.height, rel=0.01), shape
        assert (b.y0, b.y1) == pytest.approx((a.y0, a.y1), abs=1), shape
        # square cells
        assert a.width / shape[1] == pytest.approx(a.height / shape[0], rel=0.02)
        sizes = [t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        values = [t for t in ax.texts if isinstance(t, Text)]
        if shape[1] <= 12:
            assert min(sizes) >= 10 and len(values) == data.size
            assert min(t.get_fontsize() for t in values) >= 9
        rings = [p for p in ax.patches if p.get_gid() == OUTLINE_GID]
        assert [(r.get_x(), r.get_y()) for r in rings] == [(-0.5, shape[0] - 1.5)]


@pytest.fixture(scope="module")
def restored_plate(tmp_path_factory):
    """A synthetic plate with artefacts, its masks (label 'artefacts') and a Telea
    restoration made with holes grown 2 px (its `inpaint` provenance records the source)."""
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.masks import make_artefact_masks
    from phirm_scale.synthetic import make_plate

    root = tmp_path_factory.mktemp("restored")
    src = make_plate(
        root / "src.ome.zarr", rows=1, columns=2, fields=2, size=SIZE, seed=5, artefacts=0.04
    )
    make_artefact_masks(src.path, channel="CFP", dilation=0, cluster="threads", progress=False)
    rec = root / "rec.ome.zarr"
    inpaint_plate(
        src.path,
        rec,
        channel="DAPI",
        mask_label="artefacts",
        model="telea",
        dilate=2,
        cluster="threads",
        progress=False,
    )
    return src.path, rec


def _panels(png):
    """Image panels of a thumbnail: runs of non-white columns through its middle rows."""
    import matplotlib.image as mpimg

    img = mpimg.imread(png)[..., :3].mean(-1)
    h = img.shape[0]
    band = img[int(h * 0.45) : int(h * 0.55)]
    ink = (band < 0.97).any(0)
    starts = np.flatnonzero(ink[1:] & ~ink[:-1]) + 1
    runs = [s for s in starts if ink[s : s + 100].all()]  # panels, not text
    return len(runs) + int(ink[0]), img


def test_report_pictures_show_the_damage_against_a_ground_truth(restored_plate, tmp_path):
    """The demo's case: scored against the clean channel. Each picture: the damaged source,
    the holes, the restored image, the reference and the difference (5 panels), captioned
    as such; the source panel differs from the reference panel (the damage is shown)."""
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.score import score_plates

    src, rec = restored_plate
    ds = score_plates(f"{src}:DAPI_clean", f"{rec}:DAPI", window=128, mask_label="artefacts")
    page = write_report(ds, tmp_path / "rep", worst=2).read_text()
    alts = re.findall(r'<img src="(worst_[^"]+)"[^>]*alt="([^"]+)"', page)
    assert len(alts) == 2
    r, c, f = re.match(r"worst_([A-Z])(\d\d)_(\d+)\.png", alts[0][0]).groups()
    holes = int((open_plate(rec).read_label((r, c, int(f)), "artefacts") > 0).sum())
    alt = alts[0][1]
    for caption in (
        "source: the damaged input (DAPI)",
        f"holes filled: {holes:,} px, grown 2 px",
        "restored (same grey scale)",
        "reference (DAPI_clean)",
        "|restored - reference|",
    ):
        assert caption in alt, (caption, alt)
    assert "against the damaged source" not in page
    n, img = _panels(tmp_path / "rep" / alts[0][0])
    assert n == 5
    w = img.shape[1] // 5
    source, reference = img[:, : w - 10], img[:, 3 * w : 4 * w - 10]
    assert source.shape == reference.shape and np.abs(source - reference).max() > 0.3


def test_report_against_the_damaged_source_says_so(restored_plate, tmp_path):
    """No ground truth (the reference is the damaged input): four panels, and every PhIRM
    figure says it is against the damaged source (the issue's 'PhIRM mean 0.376')."""
    from phirm_scale.stages.score import score_plates

    src, rec = restored_plate
    ds = score_plates(f"{src}:DAPI", f"{rec}:DAPI", window=128, mask_label="artefacts")
    page = write_report(ds, tmp_path / "rep", worst=1).read_text()
    assert "<th>PhIRM mean against the damaged source</th>" in page
    assert "<th>PhIRM mean</th>" not in page
    ((name, alt),) = re.findall(r'<img src="(worst_[^"]+)"[^>]*alt="([^"]+)"', page)
    assert "source: the damaged input (DAPI)" in alt and "reference (" not in alt
    assert "|restored - source: what the inpainting changed|" in alt
    assert "reference (" not in alt and "mean PhIRM against the damaged source" in alt
    assert _panels(tmp_path / "rep" / name)[0] == 4


def test_score_summary_says_when_phirm_is_against_the_damaged_source(restored_plate, capsys):
    from phirm_scale.cli.score import print_summary
    from phirm_scale.stages.score import score_plates

    src, rec = restored_plate
    for channel, says in (("DAPI", True), ("DAPI_clean", False)):
        print_summary(score_plates(f"{src}:{channel}", f"{rec}:DAPI", window=128))
        lines = capsys.readouterr().out.splitlines()
        assert any(ln.startswith("PhIRM mean\t") for ln in lines)
        said = [ln for ln in lines if ln.startswith("PhIRM scored against\t")]
        assert said == (
            [
                "PhIRM scored against\tthe damaged source (no ground truth: every "
                "artefact removed counts as damage)"
            ]
            if says
            else []
        )


def _screen(restored_plate, reference_channel, threshold):
    from phirm_scale.screenqc import screen_dataset
    from phirm_scale.stages.score import score_plates

    src, rec = restored_plate
    ds = score_plates(
        f"{src}:{reference_channel}",
        f"{rec}:DAPI",
        window=128,
        mask_label="artefacts",
        threshold=threshold,
    )
    return screen_dataset({"p1": ds})


def test_screen_report_without_flagged_fields_still_shows_a_sample(restored_plate, tmp_path):
    """A screen with no flagged field: pictures of the sample, the fields with the most
    pixels restored first (``field_restored_area`` as `run` records it)."""
    from phirm_scale.plate import open_plate
    from phirm_scale.report import write_screen_report

    ds = _screen(restored_plate, "DAPI_clean", threshold=0.0)  # nothing below 0
    rec = open_plate(restored_plate[1])
    holes = {
        (k.row, k.column, k.field): int((rec.read_label(k, "artefacts") > 0).sum())
        for k in rec.fields
    }
    assert len(set(holes.values())) == 4  # an order without ties
    area = np.full([ds.sizes[d] for d in ("plate", "row", "column", "field")], np.nan)
    for (r, c, f), n in holes.items():
        area[0, list(ds.row.values).index(r), list(ds.column.values).index(c), f] = n
    ds["field_restored_area"] = (("plate", "row", "column", "field"), area)
    page = write_screen_report(ds, tmp_path / "rep", sample=3).read_text()
    assert "<h2>Flagged fields (0)</h2>" in page and "<h2>Sample fields (3)</h2>" in page
    shown = re.findall(r'<img src="(field_[^"]+)"', page)
    by_area = sorted(holes, key=lambda k: -holes[k])[:3]
    assert shown == [f"field_p1_{r}{c}_{f}.png" for r, c, f in by_area]
    for name in shown:
        assert _panels(tmp_path / "rep" / name)[0] == 5
    assert "holes filled" in page and "reference (DAPI_clean)" in page


def test_screen_report_flagged_and_captions_against_the_source(restored_plate, tmp_path):
    from phirm_scale.report import write_screen_report

    ds = _screen(restored_plate, "DAPI", threshold=1.01)  # every field below 1.01
    page = write_screen_report(ds, tmp_path / "rep", thumbnails=2, sample=3).read_text()
    assert "<h2>Flagged fields (4)</h2>" in page and "<h2>Sample fields (2)</h2>" in page
    assert "PhIRM mean against the damaged source</th>" in page
    assert "against the damaged source (no reference channel" in page
    alts = re.findall(r'<img src="field_[^"]+"[^>]*alt="([^"]+)"', page)
    assert len(alts) == 4  # 2 flagged + the 2 fields left for the sample
    assert all("source: the damaged input (DAPI)" in a for a in alts)
    assert not any("reference (" in a for a in alts)
    assert "reference</td>" not in page
    # every well outlined in the heatmap (both hold a flagged field)
    assert _red(tmp_path / "rep" / "heatmap_p1.png").sum() > 100
