"""QC kernel, window geometry and xarray reduction against plain calls of phirm_scale.metric."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from phirm_scale import __version__, metric, qc
from phirm_scale.errors import InputError, PhirmError


# ---------------------------------------------------------------------------- test data
def _blobs(shape, *, seed, n=40, dtype=np.uint16, artefact=False):
    """Gaussian-ish nuclei on a noisy background (uint16 like the microscope)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = rng.normal(300, 20, shape)
    for _ in range(n):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        r = rng.uniform(5, 14)
        img += rng.uniform(1500, 3000) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    if artefact:  # a saturated fibre, a little brighter than the brightest nucleus
        img[shape[0] // 3 : shape[0] // 3 + 8, 10 : shape[1] - 10] = img.max() * 1.1
    if dtype == np.uint8:
        img *= 250 / img.max()
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(img), max(info.min, 0), info.max).astype(dtype)
    return img.astype(dtype)


def _starts(n, w):
    """Window starts written out independently of qc.window_starts."""
    if n <= w:
        return [0]
    s = list(range(0, n - w + 1, w))
    return s + [n - w] if s[-1] + w != n else s


def _loop_reference(ref, rec, window, params=None, mask=None):
    """The plain loop: normalise with the reference range, metric.score on every window."""
    lo, hi = ref.min(), ref.max()
    a8 = metric.to_uint8(ref, lo, hi)
    b8 = metric.to_uint8(rec, lo, hi)
    h, w = min(window, ref.shape[0]), min(window, ref.shape[1])
    rows = []
    for y in _starts(ref.shape[0], window):
        for x in _starts(ref.shape[1], window):
            s = metric.score(a8[y : y + h, x : x + w], b8[y : y + h, x : x + w], params)
            d = {
                "y0": y,
                "x0": x,
                "ncd": s.ncd,
                "nad": s.nad,
                "aad": s.aad,
                "phirm": s.phirm,
                "psnr": s.psnr,
                "ssim": s.ssim,
            }
            for c in qc.COMPONENTS:
                d[f"ref_{c}"] = getattr(s.reference, c)
                d[f"rec_{c}"] = getattr(s.reconstruction, c)
            if mask is not None:
                d["masked_fraction"] = float((mask[y : y + h, x : x + w] != 0).mean())
            rows.append(d)
    return rows


# ----------------------------------------------------------------------------- package
def test_every_name_of_the_former_qc_module_is_importable_from_phirm_scale_qc():
    """qc.py became a package (issue 21): what it defined is still ``phirm_scale.qc.X``, the
    same object as in the module that now holds it; __all__ is unchanged; the geometry is
    still grid's."""
    import importlib

    from phirm_scale import flags, grid

    where = {
        "kernel": "WINDOW COMPONENTS KERNEL_VARIABLES WINDOW_VARIABLES SUMMARY_STATISTICS "
        "_DESCRIPTIONS score_field",
        "dataset": "_params_attrs params_from_attrs to_dataset _key_index add_field_results",
        "summaries": "_LEVEL_DIMS level_summary add_summaries summarise_variable "
        "add_selfcheck_summaries summarise",
        "flagging": "flag_fields flagged_fields",
        "store": "COUNT_SUFFIXES _NOT_COUNTS FLAG_DTYPE INT_FILL is_count _is_integer _integral "
        "zarr_encoding _stable_strings _fixed_strings _int_columns _window_names _field_names "
        "to_table field_table write_qc write_tables open_qc",
    }
    for module, names in where.items():
        m = importlib.import_module(f"phirm_scale.qc.{module}")
        for name in names.split():
            assert getattr(qc, name) is getattr(m, name), name
    for name in ("WindowGrid", "window_grid", "window_starts", "parse_window"):
        assert getattr(qc, name) is getattr(grid, name)
    assert qc.flag_codes is flags.flag_codes and qc.FLAG_BITS is flags.FLAG_BITS
    assert qc.summarise is qc.level_summary and qc.WINDOW == 256
    assert sorted(qc.__all__) == sorted(
        "COMPONENTS FLAG_BITS add_field_results params_from_attrs add_selfcheck_summaries "
        "flag_fields flagged_fields summarise_variable KERNEL_VARIABLES SUMMARY_STATISTICS WINDOW "
        "WINDOW_VARIABLES WindowGrid add_summaries COUNT_SUFFIXES field_table is_count open_qc "
        "zarr_encoding parse_window score_field summarise level_summary to_dataset to_table "
        "window_grid window_starts write_qc write_tables".split()
    )


def test_params_read_back_from_a_qc_dataset_are_the_ones_it_was_made_with():
    """qc.params_from_attrs inverts the ``param_*`` attributes to_dataset writes (the
    self-check stage reads the QC's PhIRM parameters through it), defaults where absent."""
    from phirm_scale.metric import PhirmParams

    made = PhirmParams.for_mode("reference")
    assert made != PhirmParams()
    assert qc.params_from_attrs(qc._params_attrs(made)) == made
    assert qc.params_from_attrs({"window": 256}) == PhirmParams()


# ------------------------------------------------------------------------------ geometry
def test_window_starts_literal():
    assert qc.window_starts(600, 256).tolist() == [0, 256, 344]
    assert qc.window_starts(512, 256).tolist() == [0, 256]
    assert qc.window_starts(256, 256).tolist() == [0]
    assert qc.window_starts(100, 256).tolist() == [0]
    assert qc.window_starts(2160, 256).tolist() == [0, 256, 512, 768, 1024, 1280, 1536, 1792, 1904]
    assert qc.window_starts(2160, None).tolist() == [0]


@given(length=st.integers(1, 3000), size=st.integers(7, 700))
def test_window_starts_cover_with_full_windows(length, size):
    starts = qc.window_starts(length, size)
    w = min(size, length)
    assert np.all(np.diff(starts) > 0)
    assert starts[0] == 0 and starts[-1] + w == length
    assert np.all(starts + w <= length)
    assert np.all(np.diff(starts) <= w)  # no gap
    assert len(starts) == math.ceil(length / w)


def test_window_grid_small_dimension_uses_full_extent():
    g = qc.window_grid((100, 600), 256)
    assert (g.height, g.width) == (100, 256)
    assert g.y0.tolist() == [0, 0, 0]
    assert g.x0.tolist() == [0, 256, 344]
    g = qc.window_grid((300, 520), "field")
    assert (g.height, g.width, len(g)) == (300, 520, 1)


@pytest.mark.parametrize("bad", [3, 0, -5, "abc", 12.5])
def test_bad_window_is_input_error(bad):
    with pytest.raises(InputError, match="window"):
        qc.parse_window(bad)


# -------------------------------------------------------------------------------- kernel
@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.int32, np.float32, np.float64])
def test_score_field_equals_metric_loop(dtype):
    ref = _blobs((300, 520), seed=1, dtype=dtype, artefact=True)
    rec = _blobs((300, 520), seed=2, dtype=dtype)
    out = qc.score_field(ref, rec, window=256)
    expected = _loop_reference(ref, rec, 256)
    assert len(expected) == 6 == len(out["ssim"])
    for v in qc.KERNEL_VARIABLES[:-1]:
        got = out[v]
        want = np.array([e[v] for e in expected])
        if v in ("psnr", "ssim"):
            np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=v)
        else:
            np.testing.assert_array_equal(got, want, err_msg=v)
    # something was actually found
    assert sum(e["ref_nuclei_count"] for e in expected) > 10
    assert sum(e["ref_artefact_area"] for e in expected) > 0


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_untouched_windows_equal_metric_loop(mode):
    """Inpainting leaves most windows bit-identical: those take the shortcut, same numbers."""
    params = metric.PhirmParams.for_mode(mode)
    ref = _blobs((600, 600), seed=9, artefact=True)
    rec = ref.copy()
    rec[300:340, 280:330] = np.median(ref)  # one hole, only in the window at (256, 256)
    out = qc.score_field(ref, rec, params=params)
    expected = _loop_reference(ref, rec, 256, params)
    for v in qc.KERNEL_VARIABLES[:-1]:
        want = np.array([e[v] for e in expected])
        if v == "ssim":
            np.testing.assert_allclose(out[v], want, rtol=1e-12)
        else:
            np.testing.assert_array_equal(out[v], want, err_msg=v)
    assert np.isinf(out["psnr"]).sum() == 8 and (out["ssim"] == 1.0).sum() == 8
    assert not np.isinf(out["psnr"][4])


def test_score_field_reference_mode_and_whole_field():
    params = metric.PhirmParams.reference()
    ref = _blobs((280, 280), seed=3, artefact=True)
    rec = _blobs((280, 280), seed=4)
    out = qc.score_field(ref, rec, window="field", params=params)
    (e,) = _loop_reference(ref, rec, 10_000, params)
    for c in qc.COMPONENTS:
        assert out[f"ref_{c}"].tolist() == [e[f"ref_{c}"]]
        assert out[f"rec_{c}"].tolist() == [e[f"rec_{c}"]]


def test_normalisation_uses_reference_range_for_both():
    # reconstruction 4x brighter than the reference: with its own range it would look the
    # same; with the reference range it saturates.
    ref = _blobs((64, 64), seed=5)
    rec = ref.astype(np.float64) * 4
    lo, hi = float(ref.min()), float(ref.max())
    b8 = np.clip(np.rint((rec - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    a8 = np.clip(np.rint((ref - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    out = qc.score_field(ref, rec, window="field")
    assert out["psnr"][0] == pytest.approx(metric.psnr(a8, b8), rel=1e-12)
    assert out["psnr"][0] < 20
    same = qc.score_field(ref, ref, window="field")
    assert same["psnr"][0] == math.inf and same["ssim"][0] == pytest.approx(1.0)


def test_masked_fraction_literal():
    ref = _blobs((300, 300), seed=6)
    mask = np.zeros((300, 300), np.uint8)
    mask[0:64, 0:64] = 1  # window (0,0) only
    mask[290:300, 290:300] = 7  # only in window (44, 44)
    out = qc.score_field(ref, ref, window=256, mask=mask)
    # windows: (0,0) (0,44) (44,0) (44,44)
    np.testing.assert_array_equal(
        out["masked_fraction"],
        [
            (64 * 64) / 65536,
            (64 - 44) * 64 / 65536,
            64 * (64 - 44) / 65536,
            (20 * 20 + 100) / 65536,
        ],
    )


def test_kernel_input_errors_name_the_field():
    a = _blobs((64, 64), seed=7)
    with pytest.raises(InputError, match="A/01/0.*shape"):
        qc.score_field(a, a[:60], name="A/01/0")
    nan = a.astype(float)
    nan[3, 3] = np.nan
    with pytest.raises(InputError, match="B/02/1.*NaN"):
        qc.score_field(nan, a, name="B/02/1")
    with pytest.raises(InputError, match="C/03/2: reference field is constant"):
        qc.score_field(np.full((64, 64), 7, np.uint16), a, name="C/03/2")
    with pytest.raises(InputError, match="mask shape"):
        qc.score_field(a, a, mask=np.zeros((3, 3)))


# ----------------------------------------------------------------------------- reduction
@pytest.fixture(scope="module")
def small_results():
    """Three fields of a 2x2 plate layout (well B/02 absent, field 1 only in A/01)."""
    fields = {("A", "01", 0): (1, 2), ("A", "01", 1): (3, 3), ("B", "01", 0): (4, 5)}
    res, loops = {}, {}
    for k, (s1, s2) in fields.items():
        ref = _blobs((300, 300), seed=s1, artefact=s1 == 4)
        rec = _blobs((300, 300), seed=s2)
        res[k] = qc.score_field(ref, rec)
        loops[k] = _loop_reference(ref, rec, 256)
    grid = qc.window_grid((300, 300), 256)
    ds = qc.to_dataset(
        res,
        grid,
        rows=["A", "B"],
        columns=["01", "02"],
        threshold=0.95,
        attrs={"reference": "ref.ome.zarr"},
    )
    return ds, loops


def test_to_dataset_matches_loop(small_results):
    ds, loops = small_results
    assert dict(ds.sizes) == {"row": 2, "column": 2, "field": 2, "window": 4}
    assert ds.y0.values.tolist() == [0, 0, 44, 44] and ds.x0.values.tolist() == [0, 44, 0, 44]
    for (r, c, f), rows in loops.items():
        sel = ds.sel(row=r, column=c, field=f)
        for v in ("ncd", "nad", "aad", "phirm") + qc.KERNEL_VARIABLES[:-1]:
            want = np.array([e[v] for e in rows], dtype=float)
            np.testing.assert_allclose(sel[v].values, want, rtol=1e-12, err_msg=v)
    assert np.isnan(ds.phirm.sel(row="B", column="02")).all()  # absent well
    assert np.isnan(ds.phirm.sel(row="B", column="01", field=1)).all()  # absent field
    assert ds.attrs["software_version"] == __version__
    assert ds.attrs["reference"] == "ref.ome.zarr"
    assert ds.attrs["param_min_area"] == 50 and ds.attrs["mode"] == "paper"
    assert ds.attrs["threshold"] == 0.95
    assert "masked_fraction" not in ds


def test_summaries_match_numpy(small_results):
    ds, loops = small_results
    thr = 0.95
    for (r, c, f), rows in loops.items():
        p = np.array([e["phirm"] for e in rows])
        assert ds.field_phirm_mean.sel(row=r, column=c, field=f) == pytest.approx(p.mean())
        assert ds.field_phirm_min.sel(row=r, column=c, field=f) == p.min()
        assert ds.field_phirm_p05.sel(row=r, column=c, field=f) == pytest.approx(
            np.percentile(p, 5)
        )
        assert ds.field_phirm_frac_below.sel(row=r, column=c, field=f) == np.mean(p < thr)
        assert ds.field_ref_nuclei_area.sel(row=r, column=c, field=f) == sum(
            e["ref_nuclei_area"] for e in rows
        )
    well = np.array([e["phirm"] for k in [("A", "01", 0), ("A", "01", 1)] for e in loops[k]])
    assert ds.well_phirm_mean.sel(row="A", column="01") == pytest.approx(well.mean())
    assert ds.well_phirm_p05.sel(row="A", column="01") == pytest.approx(np.percentile(well, 5))
    assert int(ds.well_n_windows.sel(row="A", column="01")) == 8
    assert np.isnan(ds.well_phirm_mean.sel(row="B", column="02"))
    assert int(ds.well_n_windows.sel(row="B", column="02")) == 0
    allp = np.array([e["phirm"] for rows in loops.values() for e in rows])
    assert float(ds.plate_phirm_mean) == pytest.approx(allp.mean())
    assert float(ds.plate_phirm_min) == allp.min()
    assert float(ds.plate_phirm_frac_below) == pytest.approx(np.mean(allp < thr))
    assert float(ds.plate_rec_nuclei_count) == sum(
        e["rec_nuclei_count"] for rows in loops.values() for e in rows
    )
    assert int(ds.plate_n_windows) == 12
    # level_summary() with another threshold
    s = qc.level_summary(ds, "plate", threshold=1.01)
    assert float(s.phirm_frac_below) == 1.0


def test_table_and_zarr_roundtrip(small_results, tmp_path):
    ds, loops = small_results
    table = qc.to_table(ds)
    assert len(table) == 12
    assert list(table.columns[:6]) == ["row", "column", "field", "window", "y0", "x0"]
    assert table["ref_nuclei_count"].dtype == np.int64
    first = table[(table.row == "A") & (table.column == "01") & (table.field == 1)]
    np.testing.assert_allclose(first.phirm, [e["phirm"] for e in loops[("A", "01", 1)]])
    out = qc.write_qc(
        ds, tmp_path / "QC.zarr", csv=tmp_path / "w.csv", parquet=tmp_path / "w.parquet"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = xr.open_zarr(out).load()
        assert opened.attrs.pop("phirm_scale") == {"command": "score"}  # output marker
        xr.testing.assert_identical(opened, ds)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "w.parquet"), table)
    csv = pd.read_csv(tmp_path / "w.csv", dtype={"column": str})
    np.testing.assert_allclose(csv.phirm, table.phirm)
    with pytest.raises(PhirmError, match="exists"):
        qc.write_qc(ds, out)
    xr.testing.assert_identical(qc.open_qc(out), ds)
    smaller = ds.isel(window=[0, 1])
    qc.write_qc(smaller, out, overwrite=True)
    xr.testing.assert_identical(qc.open_qc(out), smaller)
    assert not (tmp_path / "QC.zarr.partial").exists()


def test_to_dataset_with_mask_and_errors():
    a = _blobs((64, 64), seed=8)
    m = np.zeros((64, 64), bool)
    m[:32] = True
    res = {("A", "01", 0): qc.score_field(a, a, mask=m)}
    ds = qc.to_dataset(res, qc.window_grid((64, 64)))
    assert float(ds.masked_fraction.squeeze()) == 0.5
    assert float(ds.plate_masked_fraction_mean) == 0.5
    with pytest.raises(InputError, match="no field"):
        qc.to_dataset({}, qc.window_grid((64, 64)))
    with pytest.raises(InputError, match="outside the plate layout"):
        qc.to_dataset(res, qc.window_grid((64, 64)), rows=["B"])


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    window=st.integers(7, 30),
    seed=st.integers(0, 2**16),
    levels=st.sampled_from([2, 8, 256]),
)
def test_window_psnr_ssim_equal_metric_per_window(h, w, window, seed, levels):
    rng = np.random.default_rng(seed)
    a = (rng.integers(0, levels, (h, w)) * (255 // (levels - 1))).astype(np.uint8)
    b = a.copy()
    if seed % 3:  # a third of the cases: identical images (the shortcut path)
        b[rng.random((h, w)) < 0.3] = rng.integers(0, 256)
    grid = qc.window_grid((h, w), window)
    psnr, ssim = metric.window_psnr_ssim(a, b, grid.y0, grid.x0, grid.height, grid.width)
    for i, (sy, sx) in enumerate(grid.slices()):
        assert psnr[i] == metric.psnr(a[sy, sx], b[sy, sx])  # exact
        want = metric.ssim(a[sy, sx], b[sy, sx])
        if math.isnan(want):
            assert math.isnan(ssim[i])
        elif np.array_equal(a[sy, sx], b[sy, sx]):
            assert ssim[i] == want == 1.0  # exactly
        else:
            assert ssim[i] == pytest.approx(want, rel=1e-10, abs=1e-12)


# ------------------------------------------------ types of the store and tables (issue 22.5)
def _with_selfcheck(ds, pool="src.ome.zarr:artefacts"):
    """The QC of ``small_results`` with made-up self-check results of known flags."""
    nwin = ds.sizes["window"]
    made = {  # field -> (self-check PhIRM, residual artefact px): flags 1, 0, 2
        ("A", "01", 0): (0.5, 0.0),
        ("A", "01", 1): (0.95, 10.0),
        ("B", "01", 0): (0.97, 100.0),
    }
    results = {
        k: {
            "selfcheck_phirm": np.full(nwin, sc),
            "selfcheck_draws": 4.0,
            "masked_fraction_field": 0.1,
            "residual_artefact_area": res,
        }
        for k, (sc, res) in made.items()
    }
    variables = {
        "selfcheck_phirm": ("self-check PhIRM", "1"),
        "selfcheck_draws": ("self-check draws", "1"),
        "masked_fraction_field": ("masked fraction of the field", "1"),
        "residual_artefact_area": ("residual artefact area", "px"),
    }
    out = qc.add_field_results(ds, results, variables, attrs={"selfcheck_pool": pool})
    return qc.flag_fields(out)


def _no_unstable_spec():
    import zarr.errors

    warnings.simplefilter("error", zarr.errors.UnstableSpecificationWarning)


def test_store_types_survive_zarr_with_a_second_reader(small_results, tmp_path):
    import zarr

    ds = _with_selfcheck(small_results[0])
    with warnings.catch_warnings():
        _no_unstable_spec()
        out = qc.write_qc(ds, tmp_path / "QC.zarr")
        # a second reader: plain zarr, no xarray, every array read
        group = zarr.open_group(str(out), mode="r")
        arrays = {name: (a.dtype, a[...], a.attrs) for name, a in group.arrays()}
    assert arrays["ref_nuclei_count"][0] == np.int64
    assert arrays["field_rec_nuclei_area"][0] == np.int64
    assert arrays["selfcheck_draws"][0] == np.int64
    assert arrays["flag"][0] == np.int8
    assert arrays["phirm"][0] == np.float64
    # absent well B/02 and absent field B/01/1 hold the fill value -1
    flag = arrays["flag"][1]  # dims row, column, field
    assert flag.tolist() == [[[1, 0], [-1, -1]], [[2, -1], [-1, -1]]]
    assert arrays["ref_nuclei_count"][1][1, 1].tolist() == [[-1] * 4] * 2
    assert arrays["row"][1].tolist() == ["A", "B"] and arrays["column"][1].tolist() == ["01", "02"]
    assert arrays["flag"][2]["flag_masks"] == [1, 2, 4, 8]
    assert arrays["flag"][2]["flag_meanings"].split() == [
        "selfcheck_below_threshold",
        "residual_artefact_above_threshold",
        "selfcheck_not_run",
        "hidden_nuclei_above_threshold",
    ]
    assert arrays["flag"][2]["long_name"] != "flag"
    with warnings.catch_warnings():
        _no_unstable_spec()
        back = qc.open_qc(out)
        raw = xr.open_zarr(out, mask_and_scale=False).load()
    assert raw["ref_nuclei_count"].dtype == np.int64 and raw["flag"].dtype == np.int8
    assert back["flag"].encoding["dtype"] == np.int8
    assert back["well_n_flagged"].dtype == np.int64
    assert back["well_n_flagged"].sel(row="A", column="01") == 1
    xr.testing.assert_identical(back, ds)
    # a Dataset read back writes the same types again
    with warnings.catch_warnings():
        _no_unstable_spec()
        qc.write_qc(back, tmp_path / "again.zarr")
        assert zarr.open_group(str(tmp_path / "again.zarr"))["flag"].dtype == np.int8


def test_field_table_has_flag_checks_and_selfcheck(small_results, tmp_path):
    ds = _with_selfcheck(small_results[0])
    paths = {k: tmp_path / f"t.{k.split('_')[-1]}" for k in ("csv", "parquet")}
    paths.update({f"field_{k}": tmp_path / f"f.{k}" for k in ("csv", "parquet")})
    qc.write_qc(ds, tmp_path / "QC.zarr", **paths)
    for table in (
        pd.read_parquet(tmp_path / "f.parquet"),
        pd.read_csv(tmp_path / "f.csv", dtype={"column": str}),
    ):
        assert len(table) == 3  # the three scored fields
        got = {(r.row, r.column, r.field): r.flag for r in table.itertuples()}
        assert got == {("A", "01", 0): 1, ("A", "01", 1): 0, ("B", "01", 0): 2}
        assert table["flag"].dtype == np.int64
        assert table["selfcheck_draws"].dtype == np.int64
        assert table["field_n_windows"].dtype == np.int64
        assert table["field_ref_nuclei_count"].dtype == np.int64
        assert set(table["selfcheck_draws"]) == {4}
        sc = dict(
            zip(table.field.astype(str) + table.row, table.field_selfcheck_phirm_mean, strict=True)
        )
        assert sc == pytest.approx({"0A": 0.5, "1A": 0.95, "0B": 0.97})
        assert set(table["residual_artefact_area"]) == {0.0, 10.0, 100.0}
    windows = pd.read_parquet(tmp_path / "t.parquet")
    assert len(windows) == 12 and "selfcheck_phirm" in windows
    assert windows["ref_nuclei_count"].dtype == np.int64


def test_screen_types_and_concat_keep_each_plate(small_results, tmp_path):
    import zarr

    from phirm_scale import screenqc

    base = small_results[0]
    plates = {}
    for name, n in (("p1", 3), ("p2", 5), ("p3", 7), ("p4", 9)):
        d = _with_selfcheck(base, pool=f"{name}.ome.zarr:artefacts")
        d.attrs["n_fields"] = n
        plates[name] = d
    one = screenqc.screen_dataset({k: plates[k] for k in ("p1", "p2")})
    two = screenqc.screen_dataset({k: plates[k] for k in ("p3", "p4")})
    assert one["n_fields"].dtype == np.int64 and one["n_fields"].values.tolist() == [3, 5]
    assert "plates" not in one.attrs
    assert one["flag"].attrs["long_name"] != "flag" and "flag_masks" in one["flag"].attrs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        both = xr.concat([one, two], dim="plate")
    assert both["plate"].values.tolist() == ["p1", "p2", "p3", "p4"]
    assert both["n_fields"].values.tolist() == [3, 5, 7, 9]
    pools = both["selfcheck_pool"].values.tolist()
    assert pools == [f"p{i}.ome.zarr:artefacts" for i in (1, 2, 3, 4)]
    # nothing in the attributes names or counts the plates of one screen only
    assert not any("p1" in str(v) or "p2" in str(v) for v in both.attrs.values())
    with warnings.catch_warnings():
        _no_unstable_spec()
        screenqc.write_screen_qc(
            one,
            tmp_path / "qc.zarr",
            csv=tmp_path / "qc.csv",
            field_csv=tmp_path / "qc_fields.csv",
            field_parquet=tmp_path / "qc_fields.parquet",
        )
        group = zarr.open_group(str(tmp_path / "qc.zarr"), mode="r")
        dtypes = {name: a.dtype for name, a in group.arrays()}
        _ = [a[...] for _, a in group.arrays()]
    assert dtypes["n_fields"] == np.int64 and dtypes["flag"] == np.int8
    assert dtypes["well_n_flagged"] == np.int64
    back = screenqc.open_screen_qc(tmp_path / "qc.zarr")
    assert back["n_fields"].dtype == np.int64
    fields = pd.read_parquet(tmp_path / "qc_fields.parquet")
    assert len(fields) == 6 and fields["flag"].dtype == np.int64
    assert fields["flag"].tolist() == [1, 0, 2] * 2
    assert list(fields.columns[:5]) == ["plate", "row", "column", "well", "field"]


# ---------------------- one test per sub-item of issue 22.5, each failing on the old code
def test_counts_and_flag_read_back_as_integers_from_zarr(small_results, tmp_path):
    """No warning filter here: only the stored types (old code: every count float64)."""
    import zarr

    ds, loops = small_results
    out = qc.write_qc(_with_selfcheck(ds), tmp_path / "QC.zarr")
    group = zarr.open_group(str(out), mode="r")
    for name in ("ref_nuclei_count", "rec_artefact_area", "field_n_windows", "plate_n_windows"):
        assert group[name].dtype == np.int64, name
    assert group["flag"].dtype == np.int8
    # per window: B/01 field 0 (the one with an artefact) as the plain metric loop counts
    counts = group["ref_artefact_count"][...]  # (row, column, field, window)
    assert counts[1, 0, 0].tolist() == [e["ref_artefact_count"] for e in loops[("B", "01", 0)]]
    assert counts[1, 0, 0].max() >= 1
    raw = xr.open_zarr(out, mask_and_scale=False)
    assert raw["ref_nuclei_count"].dtype == np.int64


def test_score_store_has_no_unstable_zarr_types(small_results, tmp_path):
    """Strings (row / column labels) in a type with a Zarr v3 specification: no
    UnstableSpecificationWarning on writing, and zarr's own reader reads them as text."""
    import zarr
    import zarr.errors

    ds = _with_selfcheck(small_results[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", zarr.errors.UnstableSpecificationWarning)
        out = qc.write_qc(ds, tmp_path / "QC.zarr")
    meta = json.loads((out / "row" / "zarr.json").read_text())
    assert meta["data_type"] == "string"  # core v3 type, not zarr-python's fixed_length_utf32
    assert zarr.open_array(str(out / "column"), mode="r")[...].tolist() == ["01", "02"]


def test_screen_flag_keeps_its_cf_flag_attributes(small_results):
    from phirm_scale import screenqc

    one = screenqc.screen_dataset({"p1": _with_selfcheck(small_results[0])})
    attrs = one["flag"].attrs
    assert attrs["long_name"] == "quality flag of the restored field (0 = trusted)"
    assert attrs["flag_masks"] == [1, 2, 4, 8]
    assert len(attrs["flag_meanings"].split()) == 4 and attrs["units"] == "1"


def test_screen_n_fields_is_an_integer(small_results):
    from phirm_scale import screenqc

    d = small_results[0].copy()
    d.attrs["n_fields"] = 3
    one = screenqc.screen_dataset({"p1": d, "p2": d})
    assert one["n_fields"].dtype.kind == "i" and one["n_fields"].values.tolist() == [3, 3]


def test_screen_attributes_do_not_go_stale_after_concat(small_results):
    from phirm_scale import screenqc

    base = small_results[0]
    parts = [
        screenqc.screen_dataset({"p1": base, "p2": base}),
        screenqc.screen_dataset({"p3": base}),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        both = xr.concat(parts, dim="plate")
    assert both["plate"].values.tolist() == ["p1", "p2", "p3"]
    # no attribute lists a subset of the plates (the old 'plates' attribute said p1, p2)
    assert not any("p1" in json.dumps(v, default=str) for v in both.attrs.values())


def test_score_cli_writes_both_tables_and_no_warning(tmp_path):
    """`score --field-csv --field-parquet`: the per-field table beside the per-window one,
    nothing on stderr (old code: no such option, and zarr's UnstableSpecificationWarning)."""
    from conftest import run_cli

    from phirm_scale.plate import create_plate_like
    from phirm_scale.synthetic import make_plate

    src = make_plate(tmp_path / "src.ome.zarr", rows=1, columns=2, fields=1, size=200, seed=3)
    rec = create_plate_like(src, tmp_path / "rec.ome.zarr", channel_names=["DAPI"])
    for k in src.fields:
        rec.write_field(k, src.read_field(k, "DAPI_clean")[None])
    out = {n: tmp_path / n for n in ("w.csv", "w.parquet", "f.csv", "f.parquet")}
    proc = run_cli(
        "score",
        "--reference",
        f"{src.path}:DAPI_clean",
        "--reconstruction",
        f"{rec.path}:DAPI",
        "-o",
        tmp_path / "QC.zarr",
        "--window",
        "100",
        "--cluster",
        "threads",
        "--no-progress",
        "--csv",
        out["w.csv"],
        "--parquet",
        out["w.parquet"],
        "--field-csv",
        out["f.csv"],
        "--field-parquet",
        out["f.parquet"],
        fresh=True,  # a new interpreter: its warnings shown as a user sees them
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    fields = pd.read_parquet(out["f.parquet"])
    assert len(fields) == 2 and list(fields["column"]) == ["01", "02"]
    assert fields["field_n_windows"].tolist() == [4, 4]  # 200 px, window 100: 2 x 2
    assert fields["field_phirm_mean"].tolist() == [1.0, 1.0]  # restored == reference
    assert fields["field_ref_nuclei_count"].dtype == np.int64
    assert len(pd.read_csv(out["f.csv"])) == 2 and len(pd.read_parquet(out["w.parquet"])) == 8
