"""The documented command chain through the real CLI on real fields: make-plate --from-fields,
masks, inpaint, score, report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import xarray as xr
from conftest import run_cli

from phirm_scale.plate import open_plate


def cli(*args):
    return run_cli(*args, check=True)


@pytest.mark.slow
def test_cli_chain_on_real_fields(tmp_path, bbbc039_files):
    plate = tmp_path / "p.ome.zarr"
    cli(
        "make-plate",
        plate,
        "--rows",
        1,
        "--columns",
        2,
        "--fields",
        1,
        "--size",
        512,
        "--from-fields",
        bbbc039_files[0].parent,
        "--artefacts",
        0.03,
        "--cluster",
        "threads",
        "--no-progress",
    )
    p = open_plate(plate)
    assert p.field_shape == (512, 512) and p.channel_names == ["DAPI", "CFP", "DAPI_clean"]
    # ground truth = the real field (sorted, reused in order), cropped to 512 x 512
    first = tifffile.imread(sorted(bbbc039_files)[0])
    np.testing.assert_array_equal(
        p.read_field(p.fields[0], "DAPI_clean")[:512, :512], first[:512, :512]
    )
    cli("masks", plate, "--channel", "CFP", "--cluster", "threads", "--no-progress")
    cli("inpaint", plate, "--cluster", "threads", "--dilate", 1)
    restored = tmp_path / "p_inpainted.ome.zarr"
    qc = tmp_path / "qc.zarr"
    cli(
        "score",
        "--reference",
        f"{plate}:DAPI_clean",
        "--reconstruction",
        f"{restored}:DAPI",
        "-o",
        qc,
        "--mask-label",
        "artefacts",
        "--cluster",
        "threads",
        "--no-progress",
    )
    ds = xr.open_zarr(qc)
    assert ds.sizes["field"] == 1 and ds.sizes["window"] == 4
    assert float(ds["masked_fraction"].max()) > 0
    cli("report", qc, "-o", tmp_path / "report")
    assert (tmp_path / "report" / "index.html").exists()
    # the damaged plate scores lower than the restored one
    qc2 = tmp_path / "qc_damaged.zarr"
    cli(
        "score",
        "--reference",
        f"{plate}:DAPI_clean",
        "--reconstruction",
        f"{plate}:DAPI",
        "-o",
        qc2,
        "--cluster",
        "threads",
        "--no-progress",
    )
    assert float(xr.open_zarr(qc2)["phirm"].mean()) < float(ds["phirm"].mean())
    out = json.loads(cli("metric", bbbc039_files[0], bbbc039_files[0], "--json").stdout)
    assert out["phirm"] == 1.0
