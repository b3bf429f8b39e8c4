"""Synthetic and composite plates (make_plate, make-plate)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from conftest import BBBC039, skip_without_bbbc039
from hypothesis import given, settings
from hypothesis import strategies as st

from phirm_scale.errors import InputError, PlateError
from phirm_scale.plate import FieldKey, open_plate
from phirm_scale.synthetic import (
    CHANNELS,
    TRUE_LABEL,
    composite,
    fit_to_shape,
    make_field,
    make_plate,
    synthetic_artefacts,
    synthetic_nuclei,
)


def test_make_plate_layout_and_channels(tmp_path):
    p = make_plate(tmp_path / "s.ome.zarr", rows=2, columns=3, fields=2, size=96, seed=1)
    assert p.rows == ["A", "B"] and p.columns == ["01", "02", "03"]
    assert len(p.fields) == 12 and p.channel_names == list(CHANNELS)
    assert p.field_shape == (96, 96) and p.dtype == np.uint16
    assert p.missing_fields() == []
    for k in p.fields:
        dapi, cfp, clean = p.read_field(k)
        mask = p.read_label(k, TRUE_LABEL).astype(bool)
        assert 0 < mask.mean() < 0.2
        # ground truth + artefact: identical outside the artefacts, saturated-bright inside
        np.testing.assert_array_equal(dapi[~mask], clean[~mask])
        assert dapi[mask].min() >= int(0.85 * 65535) and (dapi[mask] == 65535).mean() > 0.5
        assert cfp[mask].min() >= int(0.85 * 65535) and cfp[~mask].max() < 1000


def test_deterministic_and_field_independent(tmp_path):
    a = make_plate(tmp_path / "a.ome.zarr", rows=1, columns=2, fields=2, size=64, seed=7)
    b = make_plate(tmp_path / "b.ome.zarr", rows=2, columns=2, fields=1, size=64, seed=7)
    c = make_plate(tmp_path / "c.ome.zarr", rows=1, columns=2, fields=2, size=64, seed=8)
    k = FieldKey("A", "02", 0)
    # same (seed, row, column, field) -> same field, whatever the plate shape
    np.testing.assert_array_equal(a.read_field(k), b.read_field(k))
    assert not np.array_equal(a.read_field(k), c.read_field(k))
    assert not np.array_equal(a.read_field(k), a.read_field(FieldKey("A", "02", 1)))


def test_same_on_a_cluster(tmp_path):
    a = make_plate(tmp_path / "a.ome.zarr", rows=1, columns=2, fields=1, size=64, seed=3)
    b = make_plate(
        tmp_path / "b.ome.zarr", rows=1, columns=2, fields=1, size=64, seed=3, cluster="threads"
    )
    for k in a.fields:
        np.testing.assert_array_equal(a.read_field(k), b.read_field(k))
        np.testing.assert_array_equal(a.read_label(k, TRUE_LABEL), b.read_label(k, TRUE_LABEL))


def test_phirm_sees_artefacts_and_nuclei(tmp_path):
    from phirm_scale.metric import components, to_uint8

    data, mask = make_field(("A", "01", 0), size=(256, 256), seed=0, artefacts=0.03)
    dapi, _, clean = data
    c_clean = components(to_uint8(clean))
    c_dapi = components(to_uint8(dapi))
    assert c_clean.nuclei_count >= 10 and c_clean.artefact_area == 0
    assert c_dapi.artefact_area >= 0.8 * mask.sum()


def test_clean_plate(tmp_path):
    p = make_plate(tmp_path / "c.ome.zarr", rows=1, columns=1, fields=1, size=64, artefacts=0)
    k = p.fields[0]
    assert p.read_label(k, TRUE_LABEL).sum() == 0
    np.testing.assert_array_equal(p.read_field(k, "DAPI"), p.read_field(k, "DAPI_clean"))


def test_from_fields_real_data(tmp_path):
    skip_without_bbbc039()
    files = sorted(BBBC039.glob("*.tif"))
    p = make_plate(
        tmp_path / "r.ome.zarr", rows=1, columns=2, fields=1, size=600, from_fields=BBBC039, seed=2
    )
    assert p.attrs["phirm_scale"]["synthetic"]["from_fields"] == str(BBBC039.resolve())
    for i, k in enumerate(p.fields):
        src = tifffile.imread(files[i])  # 520 x 696 -> 600 x 600
        clean = p.read_field(k, "DAPI_clean")
        np.testing.assert_array_equal(clean[:520, :600], src[:520, :600])
        np.testing.assert_array_equal(clean[520:, :600], src[519:439:-1, :600])  # mirrored
        mask = p.read_label(k, TRUE_LABEL).astype(bool)
        dapi = p.read_field(k, "DAPI")
        np.testing.assert_array_equal(dapi[~mask], clean[~mask])
        assert mask.any() and (dapi[mask] == 65535).mean() > 0.5


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 30), st.integers(1, 30))
def test_fit_to_shape(h, w, out_h, out_w):
    a = np.arange(h * w).reshape(h, w)
    out = fit_to_shape(a, (out_h, out_w))
    assert out.shape == (out_h, out_w)
    y, x = min(h, out_h), min(w, out_w)
    np.testing.assert_array_equal(out[:y, :x], a[:y, :x])
    assert set(np.unique(out)) <= set(a.ravel())


def test_composite_saturates():
    clean = np.array([[100, 60000], [5, 0]], np.uint16)
    inten = np.array([[0.0, 0.5], [1.0, 0.0]], np.float32)
    np.testing.assert_array_equal(composite(clean, inten), [[100, 65535], [65535, 0]])
    with pytest.raises(InputError, match="shape"):
        composite(clean, inten[:1])


def test_generators():
    rng = np.random.default_rng(0)
    img = synthetic_nuclei((128, 160), rng=rng)
    assert img.dtype == np.uint16 and img.shape == (128, 160) and img.std() > 100
    inten, mask = synthetic_artefacts((200, 200), rng=np.random.default_rng(1), density=0.05)
    assert 0.05 <= mask.mean() < 0.12
    assert (inten[mask == 0] == 0).all() and inten[mask == 1].min() >= 0.85


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="density"):
        make_plate(tmp_path / "x.ome.zarr", artefacts=1.5)
    with pytest.raises(InputError, match="size"):
        make_plate(tmp_path / "x.ome.zarr", size=4)
    with pytest.raises(InputError, match="no TIFF"):
        make_plate(tmp_path / "x.ome.zarr", from_fields=tmp_path)
    make_plate(tmp_path / "x.ome.zarr", rows=1, columns=1, size=32)
    with pytest.raises(PlateError, match="exists"):
        make_plate(tmp_path / "x.ome.zarr", rows=1, columns=1, size=32)
    assert open_plate(tmp_path / "x.ome.zarr").field_shape == (32, 32)
