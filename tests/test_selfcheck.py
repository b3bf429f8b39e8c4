"""Self-check PhIRM: pseudo-holes on clean pixels, inpainted, scored against the true pixels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import composite_plate, hand_dilate, restore_plate, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from phirm_scale.errors import InputError, PlateError
from phirm_scale.selfcheck import MaskPool, components_of, place_pseudo_holes, selfcheck_field


class Oracle:
    """Returns the true pixels: the field as it came in, holes included."""

    whole_field = True

    def inpaint_integer(self, image, hole):
        return image.copy()

    def __call__(self, x, m):  # pragma: no cover - never used on integer fields
        raise AssertionError("the oracle works on whole integer fields")


class ZeroFill(Oracle):
    def inpaint_integer(self, image, hole):
        return np.where(hole, 0, image).astype(image.dtype)


class Recorder(Oracle):
    def __init__(self):
        self.holes = []

    def inpaint_integer(self, image, hole):
        self.holes.append(np.asarray(hole, bool).copy())
        return image.copy()


@pytest.fixture(scope="module")
def field(bbbc039_files):
    """A real field with composited artefacts, its saturation holes (dilated 2 px)."""
    from phirm_scale.masks import saturation_mask
    from phirm_scale.plate import FieldKey
    from phirm_scale.synthetic import make_field

    data, true = make_field(
        FieldKey("A", "01", 0), size=(520, 696), seed=11, artefacts=0.02, source=bbbc039_files[3]
    )
    holes = saturation_mask(data[0], dilation=2)
    return data[0], holes, data[2]


def test_oracle_scores_one_everywhere(field):
    src, holes, _ = field
    out = selfcheck_field(src, holes, Oracle(), seed_key=(0, 1), draws=3)
    assert out["selfcheck_draws"] == 3
    assert out["selfcheck_pseudo_area_field"] > 0.5 * holes.sum()
    np.testing.assert_array_equal(out["selfcheck_phirm"], 1.0)
    for k in ("selfcheck_ncd", "selfcheck_nad", "selfcheck_aad"):
        np.testing.assert_array_equal(out[k], 0.0)


def test_zero_fill_scores_lower_and_telea_between(field):
    from phirm_scale.models import get_model

    src, holes, _ = field
    zero = selfcheck_field(src, holes, ZeroFill(), seed_key=(0, 1), draws=3)
    telea = selfcheck_field(src, holes, get_model("telea"), seed_key=(0, 1), draws=3)
    touched = zero["selfcheck_pseudo_area"] > 0
    assert touched.any()
    z, t = zero["selfcheck_phirm"], telea["selfcheck_phirm"]
    # same seed, same pseudo-holes: the same windows are touched
    np.testing.assert_array_equal(telea["selfcheck_pseudo_area"], zero["selfcheck_pseudo_area"])
    assert z[touched].mean() < t[touched].mean() <= 1.0
    # a zero fill erases the nuclei under the pseudo-holes: more nuclei area lost than Telea
    assert zero["selfcheck_nad"][touched].sum() > 2 * telea["selfcheck_nad"][touched].sum()
    np.testing.assert_array_equal(z[~touched], 1.0)  # untouched windows are identical


def test_pseudo_holes_avoid_holes_and_artefacts(field):
    from phirm_scale.masks import saturation_mask

    src, holes, _ = field
    rec = Recorder()
    selfcheck_field(src, holes, rec, seed_key=(5,), draws=4, margin=3)
    real = holes.astype(bool)
    artefacts = saturation_mask(src, dilation=0).astype(bool)
    assert len(rec.holes) == 1 + 4  # the real restoration, then one per draw
    np.testing.assert_array_equal(rec.holes[0], real)
    for h in rec.holes[1:]:
        assert (h & real).sum() == real.sum()  # the real holes are filled too
        pseudo = h & ~real
        assert pseudo.sum() > 0
        assert not (hand_dilate(pseudo, 3) & (real | artefacts)).any()  # >= margin px away


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 5))
def test_placement_invariants(seed, margin):
    rng = np.random.default_rng(seed)
    forbidden = rng.random((80, 90)) < 0.01
    forbidden[rng.integers(0, 60) :, : rng.integers(5, 40)] = True
    shapes = [rng.random((rng.integers(2, 15), rng.integers(2, 15))) < 0.7 for _ in range(6)]
    shapes = [s for s in shapes if s.any()]
    pseudo, skipped = place_pseudo_holes(
        (80, 90), forbidden, shapes, np.random.default_rng(seed), margin=margin
    )
    assert not (hand_dilate(pseudo, margin) & forbidden).any()
    assert 0 <= skipped <= len(shapes)
    # every placed shape keeps its pixel count (components may merge only via margin 0)
    placed = sum(int(s.sum()) for s in shapes)
    assert pseudo.sum() <= placed
    again, _ = place_pseudo_holes(
        (80, 90), forbidden, shapes, np.random.default_rng(seed), margin=margin
    )
    np.testing.assert_array_equal(pseudo, again)


def test_components_and_rotation_keep_shapes():
    m = np.zeros((30, 30), np.uint8)
    m[2:5, 3:10] = 1  # 3 x 7 bar
    m[20:28, 20:22] = 1  # 8 x 2 bar
    m[21, 22] = 1  # joins the second bar (8-connected)
    comps = components_of(m)
    assert sorted(c.shape for c in comps) == [(3, 7), (8, 3)]
    assert sorted(int(c.sum()) for c in comps) == [17, 21]
    pseudo, skipped = place_pseudo_holes(
        (30, 30), np.zeros((30, 30), bool), comps[:1], np.random.default_rng(0), margin=0
    )
    assert skipped == 0 and pseudo.sum() == comps[0].sum()
    ys, xs = np.nonzero(pseudo)
    assert sorted((np.ptp(ys) + 1, np.ptp(xs) + 1)) == sorted(comps[0].shape)


def test_seeded_and_pool_rules(field):
    src, holes, _ = field
    a = selfcheck_field(src, holes, ZeroFill(), seed_key=(1, 2, 3), draws=2)
    b = selfcheck_field(src, holes, ZeroFill(), seed_key=(1, 2, 3), draws=2)
    c = selfcheck_field(src, holes, ZeroFill(), seed_key=(1, 2, 4), draws=2)
    np.testing.assert_array_equal(a["selfcheck_pseudo_area"], b["selfcheck_pseudo_area"])
    assert not np.array_equal(a["selfcheck_pseudo_area"], c["selfcheck_pseudo_area"])
    empty = np.zeros_like(holes)
    with pytest.raises(InputError, match="no real holes .* give a mask pool"):
        selfcheck_field(src, empty, Oracle())
    pool = MaskPool(src.shape, (components_of(holes),), "test")
    out = selfcheck_field(src, empty, Oracle(), pool=pool, draws=2)
    assert out["selfcheck_draws"] == 2 and np.all(out["selfcheck_phirm"] == 1.0)
    with pytest.raises(InputError, match="mask pool .* shape"):
        selfcheck_field(src, holes, Oracle(), pool=MaskPool((64, 64), (), "small"))
    # a field too small for any shape: a recorded skip, NaN, never a silent 1.0
    tiny = src[:12, :12]
    big = MaskPool((12, 12), ((np.ones((20, 20), bool),),), "big")
    out = selfcheck_field(tiny, np.zeros((12, 12)), Oracle(), pool=big, draws=2, window="field")
    assert out["selfcheck_draws"] == 0 and np.isnan(out["selfcheck_phirm"]).all()
    assert out["selfcheck_skipped_shapes"] == 1


# --------------------------------------------------------------------------- plate level
@pytest.fixture(scope="module")
def restored_plate(tmp_path_factory):
    d = tmp_path_factory.mktemp("sc")
    src = composite_plate(
        d / "comp.ome.zarr", rows=2, columns=2, fields=2, size=300, seed=3, artefacts=0.02
    )
    return src, restore_plate(src, d / "rest.ome.zarr"), d


def _qc(ref, rec, **kw):
    from phirm_scale.stages.score import score_plates

    return score_plates(f"{ref}:DAPI_clean", f"{rec}:DAPI", mask_label="artefacts", **kw)


@pytest.mark.slow
def test_plate_selfcheck_variables_and_independence(restored_plate):
    from distributed import Client, LocalCluster

    from phirm_scale.stages.selfcheck import selfcheck_qc

    src, rec, _ = restored_plate
    ds = _qc(src, rec)
    a = selfcheck_qc(ds, rec, draws=2)
    for v in (
        "selfcheck_phirm",
        "selfcheck_ncd",
        "selfcheck_nad",
        "selfcheck_aad",
        "selfcheck_pseudo_area",
    ):
        assert a[v].dims == ("row", "column", "field", "window")
        assert a[v].attrs["long_name"] and "units" in a[v].attrs
    for v in (
        "selfcheck_draws",
        "selfcheck_n_windows",
        "residual_artefact_area",
        "nuclei_in_holes",
        "focus_score",
        "power_log_log_slope",
        "flag",
    ):
        assert a[v].dims == ("row", "column", "field"), v
        assert "long_name" in a[v].attrs and "units" in a[v].attrs
    assert a.flag.attrs["flag_meanings"].split() == [
        "selfcheck_below_threshold",
        "residual_artefact_above_threshold",
        "selfcheck_not_run",
        "hidden_nuclei_above_threshold",
    ]
    assert (a.selfcheck_draws == 2).all()
    m = float(a.plate_selfcheck_phirm_mean)
    assert 0.5 < m <= 1.0
    # the field summary is the window mean, computed here by hand
    np.testing.assert_allclose(
        a.field_selfcheck_phirm_mean.values, a.selfcheck_phirm.values.mean(axis=-1)
    )
    # same numbers with other task grouping and on a distributed cluster with 2 workers
    b = selfcheck_qc(ds, rec, draws=2, fields_per_task=3)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cl,
        Client(cl) as client,
    ):
        c = selfcheck_qc(ds, rec, draws=2, client=client)
    for other in (b, c):
        for v in (
            "selfcheck_phirm",
            "selfcheck_pseudo_area",
            "residual_artefact_area",
            "expected_hidden_nuclear_area",
            "expected_hidden_nuclei",
            "flag",
        ):
            np.testing.assert_array_equal(a[v].values, other[v].values)


def test_plate_oracle_and_zero_fill(restored_plate):
    from phirm_scale.stages.selfcheck import selfcheck_qc

    src, rec, _ = restored_plate
    ds = _qc(src, rec)
    o = selfcheck_qc(ds, rec, draws=2, model=Oracle())
    assert int(o.selfcheck_draws.min()) == 2
    np.testing.assert_array_equal(o.selfcheck_phirm.values, 1.0)
    z = selfcheck_qc(ds, rec, draws=2, model=ZeroFill(), selfcheck_threshold=0.99)
    assert float(z.plate_selfcheck_phirm_mean) < 0.99
    # zero filling drops windows below the threshold: those fields are flagged with bit 1
    f = z.flag.values
    below = z.field_selfcheck_phirm_mean.values < 0.99
    assert below.any()
    np.testing.assert_array_equal(
        (f.astype(int) & 1) > 0, below & (z.masked_fraction_field.values > 0)
    )


def test_no_holes_anywhere_needs_a_pool(restored_plate, tmp_path):
    from phirm_scale.stages.selfcheck import selfcheck_qc
    from phirm_scale.synthetic import make_plate

    src, rec, _ = restored_plate
    clean = make_plate(
        tmp_path / "clean.ome.zarr",
        rows=1,
        columns=2,
        fields=1,
        size=300,
        seed=1,
        artefacts=0.0,
        cluster="threads",
        progress=False,
    )
    restore_plate(clean.path, tmp_path / "clean_r.ome.zarr")
    ds = _qc(clean.path, tmp_path / "clean_r.ome.zarr")
    with pytest.raises(PlateError, match="no field has a hole .*--mask-pool"):
        selfcheck_qc(ds, tmp_path / "clean_r.ome.zarr")
    out = selfcheck_qc(
        ds, tmp_path / "clean_r.ome.zarr", mask_pool=f"{src}:artefacts", draws=2, model=Oracle()
    )
    assert (out.selfcheck_draws == 2).all()
    np.testing.assert_array_equal(out.selfcheck_phirm.values, 1.0)
    assert out.attrs["selfcheck_pool"].endswith(":artefacts")
    assert (out.flag == 0).all()  # no holes, nothing restored: trusted
    small = make_plate(
        tmp_path / "small.ome.zarr",
        rows=1,
        columns=1,
        fields=1,
        size=128,
        seed=1,
        artefacts=0.05,
        cluster="threads",
        progress=False,
    )
    with pytest.raises(PlateError, match="mask pool fields are .*same size"):
        selfcheck_qc(ds, tmp_path / "clean_r.ome.zarr", mask_pool=f"{small.path}:artefacts_true")


def test_cli_score_self_check(restored_plate):
    import xarray as xr
    from typer.testing import CliRunner

    from phirm_scale.cli import app

    src, rec, d = restored_plate
    out = d / "qc_sc.zarr"
    r = CliRunner().invoke(
        app,
        [
            "score",
            "--reference",
            f"{src}:DAPI",
            "--reconstruction",
            f"{rec}:DAPI",
            "--mask-label",
            "artefacts",
            "-o",
            str(out),
            "--self-check",
            "--self-check-draws",
            "2",
            "--cluster",
            "threads",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "self-check PhIRM mean" in r.output and "flagged fields" in r.output
    ds = xr.open_zarr(out)
    assert ds.attrs["selfcheck_model"] == "telea" and ds.attrs["selfcheck_draws"] == 2
    assert "selfcheck_phirm" in ds and "flag" in ds
    # a plate that inpainting did not make cannot be self-checked: one line
    r = CliRunner().invoke(
        app,
        [
            "score",
            "--reference",
            f"{src}:DAPI",
            "--reconstruction",
            f"{src}:DAPI_clean",
            "-o",
            str(d / "x.zarr"),
            "--self-check",
            "--cluster",
            "threads",
            "--no-progress",
        ],
    )
    assert isinstance(r.exception, PlateError)
    assert "needs a plate made by `phirm-scale inpaint`" in str(r.exception)
    assert not (d / "x.zarr").exists()


# --------------------------------------------------------------------- restore, then verify
def test_flag_code_by_hand():
    from phirm_scale.fieldqc import flag_code

    assert flag_code(0.95, 10, True) == 0
    assert flag_code(0.85, 10, True) == 1
    assert flag_code(0.85, 51, True) == 1 + 2
    assert flag_code(float("nan"), 0, True) == 4
    assert flag_code(float("nan"), 60, False) == 2  # no holes: the self-check is moot
    assert flag_code(0.95, 50, True) == 0  # 'more than' the threshold
    assert flag_code(0.95, 0, True, hidden_area=900.0, hidden_threshold=900.0) == 8  # 'at least'
    assert flag_code(0.95, 0, True, hidden_area=899.9, hidden_threshold=900.0) == 0
    assert flag_code(0.85, 60, True, hidden_area=9000.0) == 1 + 2 + 8  # default threshold 8500
    assert flag_code(0.95, 0, True, hidden_area=8499.0) == 0


_BAD_HIDDEN = (0, 0.0, -5.0, float("nan"), float("inf"), True, "8500")


def test_hidden_bit_only_with_holes_and_threshold_checked():
    """Bit 8 needs holes (a field without hid nothing); a hidden threshold <= 0 (every field
    with holes flagged), NaN (the flag silently off), inf or not a number is refused by
    flag_code, flag_fields, VerifySpec, selfcheck_qc and ScreenSettings."""
    import xarray as xr

    from phirm_scale.fieldqc import flag_code
    from phirm_scale.qc import flag_fields
    from phirm_scale.run import ScreenSettings
    from phirm_scale.stages.selfcheck import VerifySpec, selfcheck_qc

    assert flag_code(float("nan"), 0, False, hidden_area=0.0, hidden_threshold=1e-9) == 0
    assert flag_code(0.95, 0, False, hidden_area=1e6) == 0
    # two fields, both 9000 px expected hidden; only the first has holes
    ds = xr.Dataset(
        {
            "phirm": (("row", "column", "field", "window"), np.ones((1, 1, 2, 1))),
            "masked_fraction_field": (("row", "column", "field"), np.array([[[0.1, 0.0]]])),
            "expected_hidden_nuclear_area": (
                ("row", "column", "field"),
                np.array([[[9000.0, 9000.0]]]),
            ),
        },
        coords={"row": ["A"], "column": ["01"], "field": [0, 1], "window": [0]},
    )
    assert flag_fields(ds)["flag"].values.ravel().tolist() == [8.0, 0.0]
    for bad in _BAD_HIDDEN:
        with pytest.raises(InputError, match="--hidden-threshold"):
            flag_code(0.95, 0, True, hidden_threshold=bad)
        with pytest.raises(InputError, match="--hidden-threshold"):
            flag_fields(ds, hidden_threshold=bad)
        with pytest.raises(InputError, match="--hidden-threshold"):
            VerifySpec(hidden_threshold=bad)
        with pytest.raises(InputError, match="--hidden-threshold"):  # before any file is read
            selfcheck_qc(ds, "no-such-plate.ome.zarr", hidden_threshold=bad)
        with pytest.raises(PlateError, match="--hidden-threshold"):
            ScreenSettings(hidden_threshold=bad)


@pytest.mark.parametrize("bad", ["nan", "0", "-1"])
def test_cli_bad_hidden_threshold_one_line_nothing_written(restored_plate, tmp_path, bad):
    src, rec, _ = restored_plate
    out = tmp_path / "o"
    for args in (
        (
            "score",
            "--reference",
            f"{src}:DAPI",
            "--reconstruction",
            f"{rec}:DAPI",
            "-o",
            out,
            "--self-check",
        ),
        ("inpaint", src, "-o", out, "--channel", "DAPI", "--verify"),
        ("run", src, "-o", out, "--artefact-channel", "CFP"),
    ):
        p = run_cli(*args, "--hidden-threshold", bad, "--cluster", "threads", "--no-progress")
        assert p.returncode == 2, (args[0], p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (args[0], p.stderr)
        assert "--hidden-threshold" in lines[0]
        assert not out.exists()


def test_inpaint_verify_actions(restored_plate, tmp_path):
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.models import get_model
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.selfcheck import VerifySpec

    src, rec, _ = restored_plate
    p = open_plate(src)
    # nothing below a threshold of 0: unflagged, identical to the plain restoration
    r = inpaint_plate(
        src,
        tmp_path / "keep.ome.zarr",
        channel="DAPI",
        model="telea",
        cluster="threads",
        progress=False,
        verify=VerifySpec(selfcheck_threshold=0.0, residual_threshold=1e9, draws=1),
    )
    assert r["flagged"] == []
    plain, kept = open_plate(rec), open_plate(tmp_path / "keep.ome.zarr")
    for k in p.fields:
        np.testing.assert_array_equal(kept.read_field(k), plain.read_field(k))
        assert kept.field_attrs(k)["phirm_scale"]["verify"]["flag"] == 0
    assert kept.attrs["phirm_scale"]["inpaint"]["verify"]["selfcheck_threshold"] == 0.0
    # a threshold above 1 flags every field with holes (self-check PhIRM <= 1)
    for action in ("leave-masked", "fallback:navier-stokes"):
        out = tmp_path / f"{action.replace(':', '_')}.ome.zarr"
        r = inpaint_plate(
            src,
            out,
            channel="DAPI",
            model="telea",
            cluster="threads",
            progress=False,
            verify=VerifySpec(on_flag=action, draws=1, selfcheck_threshold=1.01),
        )
        q = open_plate(out)
        assert {x["field"] for x in r["flagged"]} == {f"{k[0]}{k[1]}/{k[2]}" for k in p.fields}
        for k in p.fields:
            source = p.read_field(k, "DAPI")
            holes = p.read_label(k, "artefacts") > 0
            got = q.read_field(k, "DAPI")
            if action == "leave-masked":
                expected = np.where(holes, 0, source)
            else:
                expected = inpaint_field(source, holes, get_model("navier-stokes"))
            np.testing.assert_array_equal(got, expected)
            rec_ = q.field_attrs(k)["phirm_scale"]["verify"]
            assert rec_["flag"] & 1 and rec_["action"] == action
            np.testing.assert_array_equal(q.read_field(k, "CFP"), p.read_field(k, "CFP"))
    with pytest.raises(PlateError, match="--on-flag must be"):
        VerifySpec(on_flag="delete")
    with pytest.raises(PlateError, match="unknown model 'nope'"):
        VerifySpec(on_flag="fallback:nope")


def test_qc_flags_agree_with_flag_code(restored_plate):
    from phirm_scale.fieldqc import flag_code
    from phirm_scale.stages.selfcheck import selfcheck_qc

    src, rec, _ = restored_plate
    ds = selfcheck_qc(
        _qc(src, rec),
        rec,
        draws=2,
        model=ZeroFill(),
        selfcheck_threshold=0.97,
        residual_threshold=20,
        hidden_threshold=50.0,
    )
    for r in ds.row.values:
        for c in ds.column.values:
            for f in ds.field.values:
                x = ds.sel(row=r, column=c, field=f)
                expected = flag_code(
                    float(x.selfcheck_phirm.mean()),
                    float(x.residual_artefact_area),
                    float(x.masked_fraction_field) > 0,
                    selfcheck_threshold=0.97,
                    residual_threshold=20,
                    hidden_area=float(x.expected_hidden_nuclear_area),
                    hidden_threshold=50.0,
                )
                assert int(x.flag) == expected


def test_hidden_nuclei_flag_is_the_fields_measure_whatever_the_model(restored_plate):
    """Bit 8 comes from what the holes hide, not from the model: the oracle and the zero
    fill get the same bit 8, set exactly where expected_hidden_nuclear_area (recomputed here
    from the source field and its holes) reaches the threshold."""
    from phirm_scale import fieldqc
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.selfcheck import selfcheck_qc

    src, rec, _ = restored_plate
    p = open_plate(src)
    hidden = {}
    for k in p.fields:
        holes = p.read_label(k, "artefacts") > 0
        hidden[tuple(k)] = fieldqc.expected_hidden_nuclear_area(p.read_field(k, "DAPI"), holes)
    vals = sorted(v for v in hidden.values() if v > 0)
    assert len(vals) >= 2
    thr = vals[len(vals) // 2]  # about half the fields with holes reach it
    ds = _qc(src, rec)
    flags = []
    for model in (Oracle(), ZeroFill()):
        q = selfcheck_qc(ds, rec, draws=1, model=model, hidden_threshold=thr)
        assert q.flag.attrs["hidden_threshold"] == thr
        bits = {}
        for k, v in hidden.items():
            x = q.sel(row=k[0], column=k[1], field=int(k[2]))
            assert float(x.expected_hidden_nuclear_area) == pytest.approx(v)
            bits[k] = bool(int(x.flag) & 8)
            assert bits[k] == (v >= thr)
        flags.append(bits)
    assert flags[0] == flags[1]
    assert any(flags[0].values()) and not all(flags[0].values())


@pytest.mark.parametrize("on_flag", ["keep", "leave-masked"])
def test_inpaint_verify_flags_hidden_nuclei(restored_plate, tmp_path, on_flag):
    """Bit 8 is recorded; --on-flag does not act on it alone (the restoration is kept, the
    same pixels as without --verify)."""
    from phirm_scale import fieldqc
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.selfcheck import VerifySpec

    src, _, _ = restored_plate
    p = open_plate(src)
    assert VerifySpec().hidden_threshold == fieldqc.DEFAULT_HIDDEN_THRESHOLD
    out = tmp_path / "v.ome.zarr"
    r = inpaint_plate(
        src,
        out,
        channel="DAPI",
        model="telea",
        cluster="threads",
        progress=False,
        verify=VerifySpec(
            on_flag=on_flag,
            draws=1,
            selfcheck_threshold=0.0,
            residual_threshold=1e9,
            hidden_threshold=1e-6,
        ),
    )
    plain = tmp_path / "plain.ome.zarr"
    inpaint_plate(src, plain, channel="DAPI", model="telea", cluster="threads", progress=False)
    q = open_plate(out)
    for k in p.fields:
        np.testing.assert_array_equal(
            q.read_field(k, "DAPI"), open_plate(plain).read_field(k, "DAPI")
        )
    expected = {
        f"{k[0]}{k[1]}/{k[2]}": fieldqc.expected_hidden_nuclear_area(
            p.read_field(k, "DAPI"), p.read_label(k, "artefacts") > 0
        )
        for k in p.fields
        if p.read_label(k, "artefacts").any()
    }
    hiding = {f for f, v in expected.items() if v >= 1e-6}
    assert hiding and {x["field"] for x in r["flagged"]} == hiding
    for k in p.fields:
        rec_ = q.field_attrs(k)["phirm_scale"]["verify"]
        if f"{k[0]}{k[1]}/{k[2]}" in hiding:
            assert rec_["flag"] == 8 and rec_["action"] == "keep"
            want = expected[f"{k[0]}{k[1]}/{k[2]}"]
            assert rec_["expected_hidden_nuclear_area"] == pytest.approx(want, abs=1e-3)
    assert q.attrs["phirm_scale"]["inpaint"]["verify"]["hidden_threshold"] == 1e-6


def test_cli_hidden_threshold_defaults_are_fieldqc_default():
    import inspect

    from phirm_scale import fieldqc, run
    from phirm_scale.cli.inpaint import inpaint_command
    from phirm_scale.cli.run import run_cmd
    from phirm_scale.cli.score import score_command

    assert run.ScreenSettings().hidden_threshold == fieldqc.DEFAULT_HIDDEN_THRESHOLD
    for fn in (score_command, inpaint_command, run_cmd):
        assert inspect.signature(fn).parameters["hidden_threshold"].default.default == (
            fieldqc.DEFAULT_HIDDEN_THRESHOLD
        )
    assert run.DEFAULT_HIDDEN_THRESHOLD == fieldqc.DEFAULT_HIDDEN_THRESHOLD


def test_stage_plate_handle_never_outlives_a_rewritten_store(tmp_path):
    """The self-check stage keeps open plates per process; a store rewritten at the same path
    (``--overwrite``) is opened again (issue 21: the lru_cache by path alone read the old
    store's fields)."""
    import shutil

    from phirm_scale.stages import selfcheck as stage
    from phirm_scale.synthetic import make_plate

    path = tmp_path / "p.ome.zarr"
    make_plate(path, rows=1, columns=1, fields=1, size=(64, 64), progress=False)
    first = stage._plate(str(path))
    assert len(first.fields) == 1
    assert stage._plate(str(path)) is first  # unchanged: the same handle
    shutil.rmtree(path)
    make_plate(path, rows=1, columns=2, fields=1, size=(64, 64), progress=False)
    assert len(stage._plate(str(path)).fields) == 2
