"""The demo end to end on real fields: restoration raises PhIRM against the ground truth."""

from __future__ import annotations

import pytest
import xarray as xr

from phirm_scale.demo import run_demo


@pytest.mark.slow
def test_demo_pipeline_restores_real_fields(tmp_path, bbbc039_dir):
    res = run_demo(
        bbbc039_dir, out=tmp_path, rows=1, columns=2, fields=1, cluster="threads", progress=False
    )
    assert res["mask_iou"] > 0.9
    assert res["restored"]["mean"] > res["damaged"]["mean"] + 0.3
    assert res["restored"]["frac_below"] < res["damaged"]["frac_below"]
    ds = xr.open_zarr(tmp_path / "qc_restored.zarr")
    assert dict(ds.sizes)["field"] == 1 and "phirm" in ds
    assert (tmp_path / "report" / "index.html").exists()
