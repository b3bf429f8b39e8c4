"""The self-check's one-pass fills (issue 23) against today's definition: whole field per draw.

The reference computations here inpaint the *whole* field once per draw with
:func:`phirm_scale.inpaint.inpaint_field` and score *every* window, as the self-check did
before it filled only around the pseudo-holes and scored only the windows they touch.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phirm_scale import fieldqc, metric, qc
from phirm_scale.inpaint import hole_tiles, inpaint_field
from phirm_scale.masks import saturation_mask
from phirm_scale.selfcheck import (
    components_of,
    fill_reach,
    place_pseudo_holes,
    pseudo_hole_fills,
    selfcheck_field,
)


@pytest.fixture(scope="module")
def field(bbbc039_files):
    """A real BBBC039 field (520 x 696) with composited artefacts and its holes (2 px)."""
    from phirm_scale.plate import FieldKey
    from phirm_scale.synthetic import make_field

    data, _ = make_field(
        FieldKey("B", "03", 1), size=(520, 696), seed=5, artefacts=0.03, source=bbbc039_files[7]
    )
    holes = saturation_mask(data[0], dilation=2) != 0
    assert 0.005 < holes.mean() < 0.2  # real holes to shape pseudo-holes on
    return data[0], holes


class TileMean:
    """A tiled model: each tile's holes get the mean of its known pixels (seams show)."""

    def __init__(self) -> None:
        self.calls = 0
        self.tiles = 0

    def __call__(self, x, m):
        self.calls += 1
        self.tiles += x.shape[0]
        known = 1.0 - m
        mean = (x * known).sum(axis=(2, 3), keepdims=True) / np.maximum(
            known.sum(axis=(2, 3), keepdims=True), 1.0
        )
        return np.where(m > 0, mean, x).astype(np.float32)


class Recorder:
    """A whole-field integer model that zero-fills and records the shapes it was given."""

    whole_field = True

    def __init__(self, reach=None):
        self.shapes = []
        if reach is not None:
            self.fill_reach = reach

    def inpaint_integer(self, image, hole):
        self.shapes.append(image.shape)
        return np.where(hole, 0, image).astype(image.dtype)

    def __call__(self, x, m):  # pragma: no cover - integer fields only
        raise AssertionError("integer fields go through inpaint_integer")


def whole_field_selfcheck(src, hole, model, seed_key, draws, margin, window, kw):
    """Today's definition: per draw, inpaint the whole field, score every window."""
    restored = inpaint_field(src, hole, model, **kw)
    lo, hi = fieldqc.known_range(src, hole)
    forbidden = hole | (saturation_mask(src, dilation=0) != 0)
    own = components_of(hole)
    ref8 = metric.to_uint8(restored, lo=lo, hi=hi)
    grid = qc.window_grid(src.shape, window)
    per_draw = []
    for d in range(draws):
        rng = np.random.default_rng(np.random.SeedSequence([*seed_key, d]))
        pseudo, _ = place_pseudo_holes(src.shape, forbidden, own, rng, margin=margin)
        if not pseudo.any():
            continue
        filled = inpaint_field(src, hole | pseudo, model, **kw)
        rec = restored.copy()
        rec[pseudo] = filled[pseudo]
        rec8 = metric.to_uint8(rec, lo=lo, hi=hi)
        scores = []
        for sl in grid.slices():
            a = metric.components(np.ascontiguousarray(ref8[sl]))
            b = metric.components(np.ascontiguousarray(rec8[sl]))
            *_, ph = metric.phirm_from_components(
                a.nuclei_count,
                a.nuclei_area,
                a.artefact_area,
                b.nuclei_count,
                b.nuclei_area,
                b.artefact_area,
            )
            scores.append(float(ph))
        per_draw.append(scores)
    return restored, np.mean(per_draw, axis=0), len(per_draw)


@pytest.mark.parametrize(
    "name, kw",
    [
        ("telea", {}),
        ("navier-stokes", {}),
        ("tile-mean", {"tile": 128, "overlap": 32, "batch_size": 5}),
    ],
)
def test_same_window_phirm_as_whole_field_per_draw(field, name, kw):
    from phirm_scale.models import get_model

    src, hole = field
    model = TileMean() if name == "tile-mean" else get_model(name)
    restored, expected, n = whole_field_selfcheck(
        src, hole, model, (2, 1, 3, 1), draws=3, margin=4, window=128, kw=kw
    )
    assert n == 3
    assert (expected < 1).sum() >= 3  # the fills are imperfect: a test that can fail
    out = selfcheck_field(
        src,
        hole,
        model,
        restored=restored,
        seed_key=(2, 1, 3, 1),
        draws=3,
        window=128,
        inpaint_kwargs=kw,
    )
    assert out["selfcheck_draws"] == 3
    np.testing.assert_array_equal(out["selfcheck_phirm"], expected)


def test_tiled_model_runs_only_pseudo_tiles_in_one_pass(field):
    """All draws' pseudo-hole tiles in one run of batches, fewer than per draw whole-field."""
    src, hole = field
    kw = {"tile": 128, "overlap": 32}
    rng = np.random.default_rng(3)
    forbidden = hole | (saturation_mask(src, dilation=0) != 0)
    own = components_of(hole)
    pseudos = [place_pseudo_holes(src.shape, forbidden, own[:3], rng)[0] for _ in range(4)]
    big = TileMean()
    fills = pseudo_hole_fills(src, hole, pseudos, big, batch_size=1 << 16, **kw)
    assert big.calls == 1  # one call for the four draws
    small = TileMean()
    again = pseudo_hole_fills(src, hole, pseudos, small, batch_size=2, **kw)
    per_draw = TileMean()
    for p, f, g in zip(pseudos, fills, again, strict=True):
        whole = inpaint_field(src, hole | p, per_draw, batch_size=1 << 16, **kw)
        np.testing.assert_array_equal(f[p], whole[p])
        np.testing.assert_array_equal(g, f)  # batching changes nothing
        assert not f[~p].any()
    assert per_draw.calls == 4
    # only the tiles holding pseudo pixels ran: 3 shapes per draw, not all the real holes
    assert big.tiles == sum(len(hole_tiles(p, 128, 32)) for p in pseudos)
    assert big.tiles < per_draw.tiles


def test_telea_reach_and_crops(field):
    from phirm_scale.models import get_model

    assert fill_reach(get_model("telea")) == 16  # 4 * (radius 3 + 1)
    assert fill_reach(get_model("navier-stokes")) == 16
    assert fill_reach(get_model("biharmonic")) is None
    src, hole = field
    crop = Recorder(reach=2)
    out = selfcheck_field(src, hole, crop, seed_key=(4,), draws=2, window=128)
    whole = Recorder()
    ref = selfcheck_field(src, hole, whole, seed_key=(4,), draws=2, window=128)
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k])
    assert whole.shapes == [src.shape] * 3  # the restoration, then one field per draw
    assert crop.shapes[0] == src.shape  # the restoration
    assert len(crop.shapes) > 3
    assert all(s[0] < src.shape[0] or s[1] < src.shape[1] for s in crop.shapes[1:])
    # crops are boxes of pseudo-holes grown by the reach: far less than two fields
    assert sum(a * b for a, b in crop.shapes[1:]) < src.size
    # without a placement gap a pseudo-hole may touch a real one: the whole field per draw
    gapless = Recorder(reach=2)
    selfcheck_field(src, hole, gapless, seed_key=(4,), draws=2, margin=0, window=128)
    assert gapless.shapes == [src.shape] * 3


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 520 - 200),
    st.integers(0, 696 - 240),
    st.integers(1, 5),
    st.sampled_from(["telea", "navier-stokes"]),
)
def test_crop_fills_equal_whole_field_fills(field, seed, y, x, gap, name):
    """Any crop of a real field, any seed and gap: crops fill as the whole field does."""
    from phirm_scale.models import get_model

    src, hole = field
    src, hole = src[y : y + 200, x : x + 240], hole[y : y + 200, x : x + 240]
    model = get_model(name)
    rng = np.random.default_rng(seed)
    shapes = [c for c in components_of(field[1]) if max(c.shape) < 60][:12]
    forbidden = hole | (saturation_mask(src, dilation=0) != 0)
    pseudos = [place_pseudo_holes(src.shape, forbidden, shapes, rng, margin=gap)[0]]
    pseudos = [p for p in pseudos if p.any()]
    fills = pseudo_hole_fills(src, hole, pseudos, model, gap=gap)
    for p, f in zip(pseudos, fills, strict=True):
        whole = inpaint_field(src, hole | p, model)
        np.testing.assert_array_equal(f[p], whole[p])
        assert not f[~p].any()


def test_placements_must_match_the_masks(field):
    from phirm_scale.errors import InputError
    from phirm_scale.models import get_model

    src, hole = field
    p = np.zeros_like(hole)
    p[10:14, 10:14] = True
    assert pseudo_hole_fills(src, hole, [], get_model("telea")) == []
    with pytest.raises(InputError, match="2 placements for 1 pseudo-hole masks"):
        pseudo_hole_fills(
            src, hole, [p], get_model("telea"), placements=[[(10, 10, p[10:14, 10:14])]] * 2
        )


def test_masks_of_another_shape_refused(field):
    from phirm_scale.errors import InputError
    from phirm_scale.models import get_model

    src, hole = field
    with pytest.raises(InputError, match=r"mask of shape \(10, 10\), field \(520, 696\)"):
        pseudo_hole_fills(src, hole, [np.ones((10, 10), bool)], get_model("telea"))
