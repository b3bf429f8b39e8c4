"""Score stage on real OME-Zarr plates: Dask (threaded, distributed) == a plain numpy loop."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phirm_scale import metric
from phirm_scale.errors import PlateError
from phirm_scale.stages import score as stage

SIZE = 300  # 2 x 2 windows of 256 per field (edge windows aligned to the border)
REF_CH, REC_CH, MASK = "DAPI_clean", "DAPI", "artefacts_true"


def _degrade(field: np.ndarray, key) -> np.ndarray:
    """A plausible bad reconstruction: a dark hole where nuclei vanish, a bright blob, noise."""
    rng = np.random.default_rng([ord(key[0]), int(key[1]), int(key[2])])
    out = field.astype(np.float64)
    y, x = rng.integers(0, SIZE - 60, 2)
    out[y : y + 50, x : x + 50] = np.median(field)
    y, x = rng.integers(0, SIZE - 30, 2)
    out[y : y + 20, x : x + 20] = field.max() * 0.8
    out += rng.normal(0, 0.01 * field.max(), field.shape)
    return np.clip(np.rint(out), 0, 65535).astype(field.dtype)


@pytest.fixture(scope="module")
def plates(tmp_path_factory):
    from phirm_scale.plate import create_plate_like, open_plate
    from phirm_scale.synthetic import make_plate

    root = tmp_path_factory.mktemp("score")
    src = make_plate(root / "src.ome.zarr", rows=2, columns=2, fields=2, size=SIZE, seed=3)
    rec = create_plate_like(src, root / "rec.ome.zarr", channel_names=[REC_CH])
    for k in src.fields:
        rec.write_field(k, _degrade(src.read_field(k, REF_CH), k)[None])
    return open_plate(src.path), open_plate(rec.path), root


def _starts(n, w):
    s = list(range(0, n - w + 1, w))
    return s + [n - w] if s[-1] + w != n else s


def _numpy_loop(src, rec, *, window=256, params=None):
    """Plain loop over fields calling phirm_scale.metric directly (no qc helpers)."""
    out = {}
    for k in src.fields:
        a = src.read_field(k, REF_CH)
        b = rec.read_field(k, REC_CH)
        m = src.read_label(k, MASK)
        lo, hi = a.min(), a.max()
        a8, b8 = metric.to_uint8(a, lo, hi), metric.to_uint8(b, lo, hi)
        rows = []
        for y in _starts(SIZE, window):
            for x in _starts(SIZE, window):
                sl = np.s_[y : y + window, x : x + window]
                s = metric.score(a8[sl], b8[sl], params)
                d = {
                    "phirm": s.phirm,
                    "ncd": s.ncd,
                    "nad": s.nad,
                    "aad": s.aad,
                    "psnr": s.psnr,
                    "ssim": s.ssim,
                    "masked_fraction": np.count_nonzero(m[sl]) / m[sl].size,
                }
                for c in ("nuclei_count", "nuclei_area", "artefact_count", "artefact_area"):
                    d["ref_" + c] = getattr(s.reference, c)
                    d["rec_" + c] = getattr(s.reconstruction, c)
                rows.append(d)
        out[k] = rows
    return out


def _assert_matches_loop(ds, loop):
    assert set(loop) and ds.sizes["window"] == 4
    for (r, c, f), rows in loop.items():
        sel = ds.sel(row=r, column=c, field=f)
        for v in rows[0]:
            want = np.array([d[v] for d in rows], dtype=float)
            if v in ("ssim", "psnr"):
                np.testing.assert_allclose(sel[v].values, want, rtol=1e-12, err_msg=v)
            else:
                np.testing.assert_array_equal(sel[v].values, want, err_msg=f"{v} {r}{c}/{f}")


@pytest.fixture(scope="module")
def threaded(plates):
    src, rec, _ = plates
    return stage.score_plates(f"{src.path}:{REF_CH}", f"{rec.path}:{REC_CH}", mask_label=MASK)


def test_threaded_equals_numpy_loop(plates, threaded):
    src, rec, _ = plates
    loop = _numpy_loop(src, rec)
    _assert_matches_loop(threaded, loop)
    phirm = threaded.phirm.values
    assert np.nanmin(phirm) < np.nanmax(phirm)  # the degradation shows up somewhere
    assert np.nanmax(threaded.masked_fraction.values) > 0
    assert threaded.attrs["reference"] == str(Path(src.path).resolve())
    assert threaded.attrs["reconstruction_channel"] == REC_CH
    assert threaded.attrs["mask_label"] == MASK


def test_reference_mode_and_field_window(plates):
    src, rec, _ = plates
    params = metric.PhirmParams.reference()
    ds = stage.score_plates(
        src.path, rec.path, reference_channel=REF_CH, window="field", params=params
    )
    assert ds.sizes["window"] == 1 and ds.attrs["mode"] == "reference"
    for k in src.fields:
        a, b = src.read_field(k, REF_CH), rec.read_field(k, REC_CH)  # rec channel by name
        s = metric.score(
            metric.to_uint8(a, a.min(), a.max()), metric.to_uint8(b, a.min(), a.max()), params
        )
        got = ds.sel(row=k.row, column=k.column, field=k.field, window=0)
        assert float(got.phirm) == s.phirm
        assert float(got.rec_nuclei_area) == s.reconstruction.nuclei_area


def test_distributed_inprocess_identical_to_threaded(plates, threaded):
    from distributed import Client, LocalCluster

    src, rec, _ = plates
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        ds = stage.score_plates(
            f"{src.path}:{REF_CH}",
            f"{rec.path}:{REC_CH}",
            mask_label=MASK,
            client=client,
            progress=True,
        )
    xr.testing.assert_identical(ds, threaded)


@pytest.mark.slow
def test_distributed_processes_identical_to_threaded(plates, threaded):
    from distributed import Client, LocalCluster

    src, rec, _ = plates
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        ds = stage.score_plates(
            f"{src.path}:{REF_CH}",
            f"{rec.path}:{REC_CH}",
            mask_label=MASK,
            client=client,
            fields_per_task=3,
        )
    xr.testing.assert_identical(ds, threaded)


@pytest.fixture(scope="module")
def field_arrays(plates):
    src, rec, _ = plates
    return (
        {k: src.read_field(k, REF_CH) for k in src.fields},
        {k: rec.read_field(k, REC_CH) for k in src.fields},
        {k: src.read_label(k, MASK) for k in src.fields},
    )


def _chunks_from(cuts):
    """Turn arbitrary cut lengths into a valid chunking of SIZE."""
    out, total = [], 0
    for c in cuts:
        c = min(c, SIZE - total)
        if c <= 0:
            break
        out.append(c)
        total += c
    if total < SIZE:
        out.append(SIZE - total)
    return tuple(out)


@pytest.mark.slow
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cy=st.lists(st.integers(1, SIZE), min_size=1, max_size=4),
    cx=st.lists(st.integers(1, SIZE), min_size=1, max_size=4),
    cy2=st.lists(st.integers(1, SIZE), min_size=1, max_size=3),
)
def test_any_chunking_same_result(field_arrays, threaded, cy, cx, cy2):
    import dask.array as da

    refs, recs, masks = field_arrays
    chunks_a = (_chunks_from(cy), _chunks_from(cx))
    chunks_b = (_chunks_from(cy2), _chunks_from(cx[::-1]))
    dref = {k: da.from_array(v, chunks=chunks_a) for k, v in refs.items()}
    drec = {k: da.from_array(v, chunks=chunks_b) for k, v in recs.items()}
    dmask = {k: da.from_array(v, chunks=chunks_b).rechunk(chunks_a) for k, v in masks.items()}
    got = stage.score_arrays(dref, drec, masks=dmask, rows=["A", "B"], columns=["01", "02"])
    plain = stage.score_arrays(refs, recs, masks=masks, rows=["A", "B"], columns=["01", "02"])
    xr.testing.assert_identical(got, plain)
    # and the same numbers as the plate path (whose attrs also name the plates)
    xr.testing.assert_equal(got.drop_attrs(), threaded.drop_attrs())


def test_one_task_per_field(plates):
    src, rec, _ = plates
    plan = stage.plan_score(f"{src.path}:{REF_CH}", f"{rec.path}:{REC_CH}", mask_label=MASK)
    tasks = stage.score_tasks(plan)
    assert len(tasks) == len(src.fields) == 8
    assert [t.keys for t in tasks] == [(k,) for k in src.fields]
    grouped = stage.score_tasks(plan, fields_per_task=4)
    assert [len(t.keys) for t in grouped] == [4, 4]


# ------------------------------------------------------------------------------ bad input
@pytest.fixture
def no_work():
    """Fail if any Dask graph starts running inside the block."""
    from dask.callbacks import Callback

    started = []
    with Callback(start=lambda dsk: started.append(len(dsk))):
        yield started
    assert not started, "work was scheduled before the error"


def test_bad_inputs_fail_before_scheduling(plates, no_work, tmp_path):
    import zarr

    from phirm_scale.plate import create_plate_like
    from phirm_scale.synthetic import make_plate

    src, rec, _ = plates
    ref_spec = f"{src.path}:{REF_CH}"
    with pytest.raises(PlateError, match=r"no channel 'GFP'.*channels: DAPI"):
        stage.score_plates(f"{src.path}:GFP", rec.path)
    with pytest.raises(PlateError, match=r"rec.ome.zarr: no channel 'CFP'"):
        stage.score_plates(ref_spec, f"{rec.path}:CFP")
    other = make_plate(tmp_path / "layout.ome.zarr", rows=1, columns=2, fields=2, size=SIZE)
    with pytest.raises(PlateError, match="layout"):
        stage.score_plates(ref_spec, f"{other.path}:DAPI")
    small = make_plate(tmp_path / "small.ome.zarr", rows=2, columns=2, fields=2, size=200)
    with pytest.raises(PlateError, match=r"field shape \(200, 200\) differs"):
        stage.score_plates(ref_spec, f"{small.path}:DAPI")
    fewer = make_plate(tmp_path / "fewer.ome.zarr", rows=2, columns=2, fields=1, size=SIZE)
    with pytest.raises(PlateError, match=r"lacks field A01/1 and 3 more"):
        stage.score_plates(ref_spec, f"{fewer.path}:DAPI")
    part = create_plate_like(src, tmp_path / "part.ome.zarr", channel_names=[REC_CH])
    part.write_field(src.fields[0], src.read_field(src.fields[0], REF_CH)[None])
    with pytest.raises(PlateError, match=r"part.ome.zarr: field A01/1 and 6 more not"):
        stage.score_plates(ref_spec, part.path)
    with pytest.raises(PlateError, match="no label 'nope'"):
        stage.score_plates(ref_spec, rec.path, mask_label="nope")
    empty = tmp_path / "empty.ome.zarr"
    g = zarr.open_group(str(empty), mode="w", zarr_format=3)
    g.attrs["ome"] = {
        "version": "0.5",
        "plate": {
            "rows": [{"name": "A"}],
            "columns": [{"name": "01"}],
            "wells": [],
            "version": "0.5",
        },
    }
    with pytest.raises(PlateError, match="without any field"):
        stage.score_plates(empty, rec.path)
    with pytest.raises(PlateError, match="not found"):
        stage.score_plates(tmp_path / "absent.ome.zarr", rec.path)


def test_score_arrays_bad_input(field_arrays, no_work):
    refs, recs, _ = field_arrays
    k0 = next(iter(refs))
    with pytest.raises(PlateError, match="differ"):
        stage.score_arrays(refs, {k: v for k, v in recs.items() if k != k0})
    with pytest.raises(PlateError, match=r"reconstruction field .* has shape \(10, 10\)"):
        stage.score_arrays(refs, {**recs, k0: np.zeros((10, 10))})
    with pytest.raises(PlateError, match="no reference fields"):
        stage.score_arrays({}, {})


def test_parse_plate_spec(tmp_path):
    assert stage.parse_plate_spec("a/b.ome.zarr:DAPI") == ("a/b.ome.zarr", "DAPI")
    assert stage.parse_plate_spec("a/b.ome.zarr") == ("a/b.ome.zarr", None)
    weird = tmp_path / "x:y"
    weird.mkdir()
    assert stage.parse_plate_spec(str(weird)) == (str(weird), None)


# ------------------------------------------------------------------------------------ CLI
def _cli(*args, cwd):
    exe = Path(sys.executable).with_name("phirm-scale")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "phirm_scale"]
    return subprocess.run(
        cmd + list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )


@pytest.mark.slow
def test_cli_score(plates, threaded, tmp_path):
    src, rec, _ = plates
    out = tmp_path / "QC.zarr"
    p = _cli(
        "score",
        "--reference",
        f"{src.path}:{REF_CH}",
        "--reconstruction",
        str(rec.path),
        "-o",
        str(out),
        "--cluster",
        "threads",
        "--mask-label",
        MASK,
        "--csv",
        str(tmp_path / "w.csv"),
        "--parquet",
        str(tmp_path / "w.parquet"),
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert "PhIRM" in p.stdout and "mean" in p.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(out).load()
    assert ds.attrs.pop("phirm_scale") == {"command": "score"}  # the output marker
    xr.testing.assert_identical(ds, threaded)
    import pandas as pd

    table = pd.read_parquet(tmp_path / "w.parquet")
    assert len(table) == 8 * 4
    np.testing.assert_allclose(np.sort(table.phirm), np.sort(threaded.phirm.values.ravel()))
    again = _cli(
        "score",
        "--reference",
        f"{src.path}:{REF_CH}",
        "--reconstruction",
        str(rec.path),
        "-o",
        str(out),
        "--cluster",
        "threads",
        cwd=tmp_path,
    )
    assert again.returncode == 2 and again.stderr.strip().startswith("error:")
    assert "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_cli_bad_channel_one_line_error(plates, tmp_path):
    src, rec, _ = plates
    p = _cli(
        "score",
        "--reference",
        f"{src.path}:GFP",
        "--reconstruction",
        str(rec.path),
        "-o",
        str(tmp_path / "QC.zarr"),
        "--cluster",
        "threads",
        cwd=tmp_path,
    )
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "GFP" in lines[0]
    assert not (tmp_path / "QC.zarr").exists()
