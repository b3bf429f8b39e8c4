"""Inpainting a plate: derived plate, source untouched, only holes change, equal to the plain
numpy loop, resumable, GPU resource routing on a real distributed cluster."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from phirm_scale.errors import PlateError
from phirm_scale.inpaint import inpaint_field
from phirm_scale.models import get_model
from phirm_scale.plate import open_plate
from phirm_scale.stages.inpaint import default_output, inpaint_plate
from phirm_scale.synthetic import make_plate


@pytest.fixture()
def plate(tmp_path):
    p = make_plate(
        tmp_path / "src.ome.zarr", rows=1, columns=2, fields=2, size=192, seed=3, artefacts=0.03
    )
    return p


def _checksums(p):
    return {
        k: (p.read_field(k).tobytes(), p.read_label(k, "artefacts_true").tobytes())
        for k in p.fields
    }


def test_plate_inpainting_equals_the_numpy_loop(plate, tmp_path):
    before = _checksums(plate)
    res = inpaint_plate(
        plate.path,
        tmp_path / "out.ome.zarr",
        channel="DAPI",
        mask_label="artefacts_true",
        model="telea",
        tile=128,
        overlap=16,
        cluster="threads",
        progress=False,
    )
    assert res["fields"] == 4 and res["skipped"] == 0 and res["hole_pixels"] > 0
    assert _checksums(open_plate(plate.path)) == before  # source untouched
    out = open_plate(tmp_path / "out.ome.zarr")
    assert out.attrs["phirm_scale"]["inpaint"]["model"] == "telea"
    telea = get_model("telea")
    c = plate.channel_index("DAPI")
    for k in plate.fields:
        src = plate.read_field(k)
        mask = plate.read_label(k, "artefacts_true")
        got = out.read_field(k)
        expect = inpaint_field(src[c], mask, telea, tile=128, overlap=16)
        np.testing.assert_array_equal(got[c], expect)
        # and independently: Telea on the raw uint16 field is OpenCV's own result
        np.testing.assert_array_equal(
            got[c], cv2.inpaint(src[c], (mask > 0).astype(np.uint8), 3.0, cv2.INPAINT_TELEA)
        )
        for other in range(src.shape[0]):
            if other != c:
                np.testing.assert_array_equal(got[other], src[other])
        np.testing.assert_array_equal(got[c][mask == 0], src[c][mask == 0])
    # the restoration is closer to the ground truth than the damaged field
    k = plate.fields[0]
    clean = plate.read_field(k, "DAPI_clean").astype(float)
    damaged = plate.read_field(k, "DAPI").astype(float)
    restored = out.read_field(k, "DAPI").astype(float)
    assert np.abs(restored - clean).mean() < np.abs(damaged - clean).mean()


def test_rerun_resumes_and_other_settings_are_refused(plate, tmp_path):
    out = tmp_path / "o.ome.zarr"
    kw = dict(
        channel="DAPI",
        mask_label="artefacts_true",
        model="telea",
        tile=128,
        cluster="threads",
        progress=False,
    )
    inpaint_plate(plate.path, out, **kw)
    first = {k: open_plate(out).read_field(k).tobytes() for k in plate.fields}
    again = inpaint_plate(plate.path, out, **kw)
    assert again["fields"] == 0 and again["skipped"] == 4
    with pytest.raises(PlateError, match="--overwrite"):
        inpaint_plate(plate.path, out, **{**kw, "model": "navier-stokes"})
    assert {k: open_plate(out).read_field(k).tobytes() for k in plate.fields} == first


def test_missing_label_and_same_output_are_refused(plate):
    with pytest.raises(PlateError, match="no label 'artefacts'"):
        inpaint_plate(plate.path, None, mask_label="artefacts", cluster="threads", progress=False)
    with pytest.raises(PlateError, match="the output is an input of this run"):
        inpaint_plate(
            plate.path, plate.path, mask_label="artefacts_true", cluster="threads", progress=False
        )
    assert default_output(plate.path).name == "src_inpainted.ome.zarr"


def test_gpu_tasks_run_only_on_the_gpu_worker(plate, tmp_path):
    from distributed import Client, Scheduler, SpecCluster, Worker, get_task_stream

    spec = {
        "cpu": {"cls": Worker, "options": {"nthreads": 1}},
        "gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
    }
    with (
        SpecCluster(
            workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        gpu_addr = [
            a
            for a, w in client.scheduler_info()["workers"].items()
            if w.get("resources", {}).get("GPU")
        ][0]
        with get_task_stream(client) as ts:
            res = inpaint_plate(
                plate.path,
                tmp_path / "g.ome.zarr",
                mask_label="artefacts_true",
                model="telea",
                tile=128,
                gpu=True,
                cluster=cluster.scheduler_address,
                progress=False,
            )
        assert res["fields"] == 4
        ran = [t["worker"] for t in ts.data if str(t["key"]).startswith("inpaint-")]
        assert len(ran) == 4 and set(ran) == {gpu_addr}


@pytest.mark.slow
def test_cli_inpaint(plate, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cli.ome.zarr"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "phirm_scale",
            "inpaint",
            str(plate.path),
            "-o",
            str(out),
            "--mask-label",
            "artefacts_true",
            "--tile",
            "128",
            "--cluster",
            "threads",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 fields inpainted" in proc.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "phirm_scale",
            "inpaint",
            str(plate.path),
            "--channel",
            "GFP",
            "--mask-label",
            "artefacts_true",
            "--cluster",
            "threads",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "GFP" in bad.stderr


@pytest.mark.parametrize("r", [1, 2, 3, 5])
def test_dilate_grows_the_holes_by_the_masks_disk(plate, tmp_path, r):
    """``inpaint --dilate r`` fills exactly the holes grown by a disk of radius r (the masks
    stage's footprint, hand-written here), recorded as such; OpenCV's ellipse, which it was,
    is wider from r = 2 on (issue 21: one hole dilation)."""
    from conftest import hand_dilate

    out = tmp_path / "out.ome.zarr"
    inpaint_plate(
        plate.path,
        out,
        channel="DAPI",
        mask_label="artefacts_true",
        model="telea",
        dilate=r,
        cluster="threads",
        progress=False,
    )
    dst = open_plate(out)
    prov = dst.attrs["phirm_scale"]["inpaint"]
    assert (prov["dilate"], prov["dilate_footprint"]) == (r, "disk")
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    for k in plate.fields:
        hole = plate.read_label(k, "artefacts_true") != 0
        grown = hand_dilate(hole, r)
        changed = plate.read_field(k, "DAPI") != dst.read_field(k, "DAPI")
        assert not (changed & ~grown).any()  # nothing outside the disk-grown holes
        assert changed.sum() >= 0.9 * grown.sum()  # Telea rewrites (nearly) all of them
        wider = cv2.dilate(hole.astype(np.uint8), ellipse).astype(bool) & ~grown
        if r >= 2:
            assert wider.any()  # the old footprint would have filled these too
