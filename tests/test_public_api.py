"""One name per concept in the public API (issue 13).

The renamed functions keep their results (checked against hand-computed values and against
scikit-image, never against the code under test), the old clashing names are gone, and every
writer refuses an existing output with the one exception class :class:`OutputError`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

import phirm_scale.evaluate as evaluate
import phirm_scale.inpaint as inpaint
import phirm_scale.masks as masks
import phirm_scale.metric as metric
import phirm_scale.tiles as tiles
import phirm_scale.validate_metric as validate_metric
from phirm_scale.errors import InputError, OutputError

# --------------------------------------------------------------------------- the renames


def _two_level(lo: int, hi: int, dtype=np.uint8) -> np.ndarray:
    img = np.full((20, 20), lo, dtype)
    img[5:15, 5:15] = hi
    return img


def test_the_two_otsu_thresholds_differ_only_in_the_gap_rule():
    # a two-level image: every split in the empty gap 10..199 is optimal. skimage (and the
    # metric's 8-bit threshold) take the lowest level, the masks' threshold the middle.
    from skimage.filters import threshold_otsu

    img = _two_level(10, 200)
    assert metric.otsu_threshold_u8(img) == 10 == threshold_otsu(img)
    assert masks.otsu_threshold_midgap(img) == pytest.approx(105.0)
    # both split the image the same way
    np.testing.assert_array_equal(
        img > metric.otsu_threshold_u8(img), img > masks.otsu_threshold_midgap(img)
    )
    # the masks' threshold works in image units for any dtype: middle of 100..60000
    img16 = _two_level(100, 60000, np.uint16)
    assert masks.otsu_threshold_midgap(img16) == pytest.approx(30050.0)


def test_otsu_u8_equals_skimage_on_noise():
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(4)
    img = (
        np.concatenate([rng.normal(60, 12, 3000), rng.normal(170, 20, 1000)])
        .clip(0, 255)
        .astype(np.uint8)
        .reshape(40, 100)
    )
    assert metric.otsu_threshold_u8(img) == threshold_otsu(img)


def test_overlap_tile_starts_and_tile_starts_say_their_difference():
    # inpainting tiles: 256 px with >= 32 px overlap over 520 px -> step 224, last at 264
    assert inpaint.overlap_tile_starts(520, 256, 32) == [0, 224, 264]
    # a short axis is one (padded) tile for inpainting ...
    assert inpaint.overlap_tile_starts(100, 256, 32) == [0]
    # ... but training tiles refuse it
    with pytest.raises(InputError, match="larger than the field side"):
        tiles.tile_starts(100, 256)
    # training tiles by stride: 520 px, size 256 stride 128 -> 0, 128, 256, last at 264
    assert tiles.tile_starts(520, 256, 128) == [0, 128, 256, 264]


def test_validate_metric_summarise_means_and_stds():
    df = pd.DataFrame(
        {
            "manipulation": ["nuclei_removed"] * 3,
            "strength": [0.1] * 3,
            "phirm": [1.0, 0.5, 0.0],
            "phirm_reference": [1.0, 1.0, 1.0],
            "psnr": [np.inf, 30.0, 20.0],  # inf (identical images) is left out of the mean
            "ssim": [1.0, 0.9, 0.8],
            "ncd": [0.0, 2.0, 4.0],
            "nad": [0.0, 0.0, 0.0],
            "aad": [0.0, 0.0, 0.0],
        }
    )
    s = validate_metric.validation_table(df).loc[("nuclei_removed", 0.1)]
    assert s[("phirm", "mean")] == pytest.approx(0.5)
    assert s[("phirm", "std")] == pytest.approx(0.5)  # sample std of 1, 0.5, 0
    assert s[("psnr", "mean")] == pytest.approx(25.0)
    assert s[("ncd", "mean")] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "module, old",
    [
        (metric, "otsu_threshold"),
        (masks, "otsu_threshold"),
        (inpaint, "tile_starts"),
        (evaluate, "summarize"),
        (validate_metric, "summary"),
    ],
)
def test_clashing_old_names_are_gone(module, old):
    assert not hasattr(module, old)
    assert old not in getattr(module, "__all__", [])


def test_the_three_summaries_have_distinct_names_and_the_old_one_still_imports():
    """Issue 21: qc, evaluate and validate_metric each had a ``summarise`` (three concepts, one
    name); each now has its own name, and ``summarise`` stays importable as that function."""
    from phirm_scale import qc

    names = {qc: "level_summary", evaluate: "evaluation_table", validate_metric: "validation_table"}
    assert len(set(names.values())) == 3
    for module, name in names.items():
        assert name in module.__all__ and callable(getattr(module, name))
        assert module.summarise is getattr(module, name)


def test_cli_has_one_mode_enum_and_no_cli_error():
    import phirm_scale.cli._app as app
    import phirm_scale.cli.metric as cli_metric
    import phirm_scale.cli.score as cli_score

    assert cli_metric.Mode is cli_score.Mode is app.Mode
    assert [m.value for m in app.Mode] == ["paper", "reference"]
    assert not hasattr(app, "CliError")


@pytest.mark.parametrize(
    "module",
    [
        "metric",
        "masks",
        "inpaint",
        "tiles",
        "qc",
        "evaluate",
        "validate_metric",
        "outputs",
        "plate",
        "errors",
        "run",
        "report",
        "screenqc",
        "synthetic",
        "progress",
        "validation",
    ],
)
def test_all_names_exist_and_are_public(module):
    import importlib

    mod = importlib.import_module(f"phirm_scale.{module}")
    for name in mod.__all__:
        assert hasattr(mod, name), (module, name)
        assert not name.startswith("_"), (module, name)


# --------------------------------------------------------------------------- output exists


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    from phirm_scale.stages.masks import make_artefact_masks
    from phirm_scale.synthetic import make_plate

    p = tmp_path_factory.mktemp("plates") / "P.ome.zarr"
    make_plate(p, rows=1, columns=1, fields=1, size=64, seed=3, artefacts=0.05)
    make_artefact_masks(p, channel="CFP", cluster="threads", progress=False)
    return p


def _tiff_folder(folder: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for c in (1, 2):
        a = rng.integers(0, 4000, (24, 31), dtype=np.uint16)
        tifffile.imwrite(folder / f"P1_A01_s1_w{c}.tif", a)
    return folder


def _convert(tmp: Path, plate: Path) -> None:
    from phirm_scale.stages.convert import convert

    out = tmp / "o.ome.zarr"
    convert(_tiff_folder(tmp / "src1", 1), out, cluster="threads", progress=False)
    convert(_tiff_folder(tmp / "src2", 2), out, cluster="threads", progress=False)


def _make_plate(tmp: Path, plate: Path) -> None:
    from phirm_scale.synthetic import make_plate

    make_plate(tmp / "S.ome.zarr", rows=1, columns=1, size=32)
    make_plate(tmp / "S.ome.zarr", rows=1, columns=1, size=32)


def _inpaint(tmp: Path, plate: Path) -> None:
    from phirm_scale.stages.inpaint import inpaint_plate

    out = tmp / "R.ome.zarr"
    inpaint_plate(plate, out, cluster="threads", progress=False)
    inpaint_plate(plate, out, dilate=2, cluster="threads", progress=False)


def _score_table(tmp: Path, plate: Path) -> None:
    from phirm_scale.qc import write_qc
    from phirm_scale.stages.score import plan_score, score_plan

    ds = score_plan(plan_score(f"{plate}:DAPI_clean", f"{plate}:DAPI", window="field"))
    (tmp / "qc.csv").write_text("not ours\n")
    write_qc(ds, tmp / "QC.zarr", csv=tmp / "qc.csv")


def _score_store(tmp: Path, plate: Path) -> None:
    from phirm_scale.qc import write_qc
    from phirm_scale.stages.score import plan_score, score_plan

    ds = score_plan(plan_score(f"{plate}:DAPI_clean", f"{plate}:DAPI", window="field"))
    write_qc(ds, tmp / "QC.zarr")
    write_qc(ds, tmp / "QC.zarr")


def _tiles(tmp: Path, plate: Path) -> None:
    tiles.write_tiles(plate, tmp / "T.zarr", channel="DAPI", size=32)
    tiles.write_tiles(plate, tmp / "T.zarr", channel="CFP", size=32)


def _report(tmp: Path, plate: Path) -> None:
    from phirm_scale.report import write_report
    from phirm_scale.stages.score import plan_score, score_plan

    ds = score_plan(plan_score(f"{plate}:DAPI_clean", f"{plate}:DAPI", window="field"))
    (tmp / "report").write_text("a file where the report folder goes\n")
    write_report(ds, tmp / "report")


def _screen_report(tmp: Path, plate: Path) -> None:
    from phirm_scale.report import write_screen_report

    (tmp / "report").write_text("a file where the report folder goes\n")
    write_screen_report(None, tmp / "report")  # refused before the data is looked at


def _run(tmp: Path, plate: Path) -> None:
    from phirm_scale.run import RUN_FILE, ScreenSettings, plan_screen

    out = tmp / "screen"
    out.mkdir()
    (out / RUN_FILE).write_text(json.dumps({"settings": {"threshold": 0.5}}))
    plan_screen([plate], out, ScreenSettings(window="field"))


def _export(tmp: Path, plate: Path) -> None:
    from phirm_scale.stages.export import export_plate

    (tmp / "tiffs").mkdir()
    (tmp / "tiffs" / "notes.txt").write_text("a folder that is not an export\n")
    export_plate(plate, tmp / "tiffs", overwrite=True, progress=False)


@pytest.mark.parametrize(
    "write",
    [
        _convert,
        _make_plate,
        _inpaint,
        _score_table,
        _score_store,
        _tiles,
        _report,
        _screen_report,
        _run,
        _export,
    ],
    ids=[
        "convert",
        "make-plate",
        "inpaint",
        "score-csv",
        "score",
        "tiles",
        "report",
        "screen-report",
        "run",
        "export",
    ],
)
def test_every_writer_refuses_an_existing_output_with_output_error(tmp_path, plate, write):
    with pytest.raises(OutputError):
        write(tmp_path, plate)


# --------------------------------------------------------------------------- input checks


def _funcs():
    from phirm_scale import fieldqc, qc
    from phirm_scale.masks import saturation_mask
    from phirm_scale.models.classical import inpaint_telea

    ok = np.zeros((8, 8), np.uint8)
    return [
        ("metric.components", lambda a: metric.components(a)),
        ("masks.artefact_mask", lambda a: masks.artefact_mask(a)),
        ("masks.saturation_mask", lambda a: saturation_mask(a)),
        ("inpaint.inpaint_field", lambda a: inpaint.inpaint_field(a, ok, inpaint_telea)),
        ("qc.score_field", lambda a: qc.score_field(a, a, window="field")),
        ("fieldqc.focus_score", lambda a: fieldqc.focus_score(a)),
        ("tiles.cut_tiles", lambda a: tiles.cut_tiles(a, size=4)),
        ("validate_metric.remove_nuclei", lambda a: validate_metric.remove_nuclei(a, 1)),
    ]


@pytest.mark.parametrize("i", range(8))
def test_every_array_function_refuses_a_3d_image_in_one_wording(i):
    name, f = _funcs()[i]
    with pytest.raises(InputError, match=r": expected a 2-D [\w -]*, got shape \(2, 8, 8\)"):
        f(np.zeros((2, 8, 8), np.uint8))


def test_one_wording_for_nan_and_empty():
    from phirm_scale import fieldqc, qc
    from phirm_scale.validation import check_image, check_same_shape

    nan = np.full((8, 8), np.nan)
    for f in (
        lambda: qc.score_field(nan, nan, window="field"),
        lambda: fieldqc.focus_score(nan),
        lambda: masks.artefact_mask(nan),
    ):
        with pytest.raises(InputError, match="contains NaN or infinite values"):
            f()
    with pytest.raises(InputError, match=r"^x\.tif: empty image of shape \(0, 3\)$"):
        check_image(np.zeros((0, 3)), "x.tif")
    with pytest.raises(ValueError, match=r"^f: mask shape \(2, 2\) differs from image shape"):
        check_same_shape(np.zeros((3, 3)), np.zeros((2, 2)), "f")
    with pytest.raises(OutputError):  # the caller chooses the class
        check_image(np.zeros(3), "y", error=OutputError)


def test_the_package_exports_the_names_a_user_needs():
    """``from phirm_scale import ...`` gives the same objects as their modules (issue 21: a
    small public API), and ``import phirm_scale`` alone loads none of them (the CLI's start
    stays fast): checked in a fresh interpreter."""
    import importlib
    import subprocess
    import sys

    import phirm_scale

    where = {
        "score": "phirm_scale.metric",
        "components": "phirm_scale.metric",
        "PhirmParams": "phirm_scale.metric",
        "artefact_mask": "phirm_scale.masks",
        "saturation_mask": "phirm_scale.masks",
        "inpaint_field": "phirm_scale.inpaint",
        "get_model": "phirm_scale.models",
        "open_plate": "phirm_scale.plate",
        "convert": "phirm_scale.stages.convert",
        "make_artefact_masks": "phirm_scale.stages.masks",
        "inpaint_plate": "phirm_scale.stages.inpaint",
        "score_plates": "phirm_scale.stages.score",
        "run_screen": "phirm_scale.run",
        "ScreenSettings": "phirm_scale.run",
        "open_qc": "phirm_scale.qc",
    }
    assert set(phirm_scale.__all__) == {"__version__", *where}
    for name, module in where.items():
        assert getattr(phirm_scale, name) is getattr(importlib.import_module(module), name)
        assert name in dir(phirm_scale)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        phirm_scale.nope  # noqa: B018
    code = (
        "import sys, phirm_scale; "
        "print(sorted(m for m in ('numpy', 'dask', 'zarr', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
