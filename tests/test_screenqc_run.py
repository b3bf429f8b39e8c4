"""What `run` writes for the screen QC: the per-field table beside the per-window one, types
that survive Zarr, CSV and Parquet, no unstable Zarr types, and the report's pictures
(issue 22, items 5 and 6), on one composite plate (real BBBC039 fields) without a
reference channel."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import composite_plate


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    import zarr.errors

    from phirm_scale.run import ScreenSettings, run_screen

    root = tmp_path_factory.mktemp("screenqc")
    composite_plate(root / "src" / "alpha.ome.zarr", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", zarr.errors.UnstableSpecificationWarning)
        run_screen(
            [root / "src" / "alpha.ome.zarr"],
            root / "out",
            ScreenSettings(channel="DAPI", artefact_channel="CFP", dilate=1),
            cluster="threads",
            progress=False,
        )
    return root / "out"


@pytest.mark.slow
def test_run_writes_the_per_field_table_with_the_stores_types(screen):
    import zarr

    ds = xr.open_zarr(screen / "qc.zarr", mask_and_scale=False).load()
    flags = ds["flag"].sel(plate="alpha").transpose("row", "column", "field").values
    assert ds["flag"].dtype == np.int8 and ds["n_fields"].dtype == np.int64
    assert ds["flag"].attrs["flag_masks"] == [1, 2, 4, 8]
    group = zarr.open_group(str(screen / "qc.zarr"), mode="r")
    assert group["selfcheck_draws"].dtype == np.int64
    want = {
        ("A", str(c), int(f)): int(flags[0, j, k])
        for j, c in enumerate(ds["column"].values)
        for k, f in enumerate(ds["field"].values)
    }
    parquet = pd.read_parquet(screen / "qc_fields.parquet")
    csv = pd.read_csv(screen / "qc_fields.csv", dtype={"row": str, "column": str})
    for table in (parquet, csv):
        assert len(table) == 4  # 1 row x 2 columns x 2 fields
        assert table["flag"].dtype == np.int64 and table["field_n_windows"].dtype == np.int64
        got = {(r.row, r.column, r.field): r.flag for r in table.itertuples()}
        assert got == want
        for v in ("field_selfcheck_phirm_mean", "residual_artefact_area", "well"):
            assert v in table, v
    assert set(parquet["well"]) == {"A01", "A02"}
    windows = pd.read_parquet(screen / "qc.parquet")
    assert len(windows) == 4 * ds.sizes["window"] and "selfcheck_phirm" in windows


@pytest.mark.slow
def test_run_report_pictures_the_source_and_outlines_flagged_wells(screen):
    page = (screen / "report" / "index.html").read_text()
    alts = re.findall(r'<img src="field_[^"]+"[^>]*alt="([^"]+)"', page)
    assert len(alts) >= 3  # flagged ones and the sample: every field of this small screen
    assert all("source: the damaged input (DAPI)" in a and "holes filled" in a for a in alts)
    assert not any("reference (" in a for a in alts)  # the reference is the source
    assert "PhIRM mean against the damaged source</th>" in page
    # every table run wrote is linked, and each link resolves from the report's folder
    links = set(re.findall(r'<a href="\.\./([^"]+)"', page))
    want = {"qc.csv", "qc.zarr", "qc.parquet", "qc_fields.csv", "qc_fields.parquet", "run.json"}
    assert want <= links
    assert all((screen / name).exists() for name in links)
    import matplotlib.image as mpimg

    ds = xr.open_zarr(screen / "qc.zarr").load()
    assert (np.nan_to_num(ds["flag"].values) > 0).any()  # seed 0: 3 of 4 fields flagged
    img = mpimg.imread(screen / "report" / "heatmap_alpha.png")[..., :3]
    red = (img[..., 0] > 0.8) & (img[..., 1] < 0.2) & (img[..., 2] < 0.15)
    assert red.sum() > 100  # the flagged wells' outlines


@pytest.mark.slow
def test_screen_heatmap_colours_wells_by_the_estimated_phirm(screen):
    """Without a reference the heatmap shows the estimated PhIRM (the self-check alone cannot
    see rims the masks left; issue 20), and says so in its alt text and title."""
    from phirm_scale.report import heatmap_variable

    ds = xr.open_zarr(screen / "qc.zarr").load()
    assert heatmap_variable(ds) == ("well_estimated_phirm_mean", "estimated PhIRM")
    page = (screen / "report" / "index.html").read_text()
    assert "mean estimated PhIRM per well as a heatmap" in page
    no_estimate = ds.drop_vars([v for v in ds.data_vars if "estimated" in v])
    assert heatmap_variable(no_estimate) == ("well_selfcheck_phirm_mean", "self-check PhIRM")
    bare = no_estimate.drop_vars([v for v in no_estimate.data_vars if "selfcheck" in v])
    assert heatmap_variable(bare) == ("well_phirm_mean", "PhIRM")
