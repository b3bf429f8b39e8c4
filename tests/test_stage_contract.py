"""The stage contract: every plate stage takes ``cluster`` as a spec string or an open
``distributed.Client`` (used, never closed), runs through the one runner, and each task opens
only its own field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr
from conftest import GUID, store_files

from phirm_scale.plate import FieldKey, open_plate


def write_ixm(folder: Path, wells_sites, shape=(20, 23), seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for well, site in wells_sites:
        for c in (1, 2):
            a = rng.integers(0, 65535, shape, dtype=np.uint16, endpoint=True)
            tifffile.imwrite(folder / f"P1_{well}_s{site}_w{c}{GUID}.tif", a)


def synthetic(path, rows=2, columns=2, fields=2, size=64):
    from phirm_scale.synthetic import make_plate

    return make_plate(
        path, rows=rows, columns=columns, fields=fields, size=size, seed=3, artefacts=0.05
    )


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster with worker processes, opened by the test, not by the stages."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def assert_open(client):
    assert client.status == "running"
    assert client.submit(sum, [1, 2, 3], pure=False).result() == 6


@pytest.mark.slow
def test_every_stage_with_a_passed_client_equals_threaded_and_leaves_it_open(tmp_path, client):
    from phirm_scale.stages.convert import convert
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.masks import make_artefact_masks
    from phirm_scale.stages.score import score_plates

    # convert: the two stores are byte-identical
    write_ixm(tmp_path / "src", [("A01", 1), ("A01", 2), ("B02", 1), ("C03", 1)])
    kw = dict(channel_names=["DAPI", "CFP"], progress=False)
    convert(tmp_path / "src", tmp_path / "t.ome.zarr", cluster="threads", **kw)
    convert(tmp_path / "src", tmp_path / "c.ome.zarr", cluster=client, **kw)
    assert_open(client)
    a, b = store_files(tmp_path / "t.ome.zarr"), store_files(tmp_path / "c.ome.zarr")
    assert len(a) > 8 and a == b

    # masks: same areas, byte-identical label stores
    pt, pc = synthetic(tmp_path / "pt.ome.zarr"), synthetic(tmp_path / "pc.ome.zarr")
    mt = make_artefact_masks(pt.path, channel="CFP", cluster="threads", progress=False)
    mc = make_artefact_masks(pc.path, channel="CFP", cluster=client, progress=False)
    assert_open(client)
    assert mt == mc and len(mt) == 8 and sum(mt.values()) > 0
    for k in pt.fields:
        lt = store_files(pt.path, f"{k.path}/labels")
        assert lt and lt == store_files(pc.path, f"{k.path}/labels")

    # inpaint: same pixels in every field
    rt = inpaint_plate(
        pt.path,
        tmp_path / "it.ome.zarr",
        channel="DAPI",
        mask_label="artefacts",
        cluster="threads",
        progress=False,
    )
    rc = inpaint_plate(
        pc.path,
        tmp_path / "ic.ome.zarr",
        channel="DAPI",
        mask_label="artefacts",
        cluster=client,
        progress=False,
    )
    assert_open(client)
    assert {k: rt[k] for k in rt if k != "out"} == {k: rc[k] for k in rc if k != "out"}
    it, ic = open_plate(rt["out"]), open_plate(rc["out"])
    assert rt["fields"] == 8 and rt["hole_pixels"] > 0
    for k in it.fields:
        np.testing.assert_array_equal(it.read_field(k), ic.read_field(k))
    # holes were filled: the pixels differ from the source where the mask is set
    k0 = max(pt.fields, key=lambda k: int(pt.read_label(k, "artefacts").sum()))
    hole = pt.read_label(k0, "artefacts") > 0
    assert (it.read_field(k0, "DAPI")[hole] != pt.read_field(k0, "DAPI")[hole]).any()

    # score: identical Dataset values
    st = score_plates(
        f"{pt.path}:DAPI_clean",
        f"{it.path}:DAPI",
        window=32,
        mask_label="artefacts",
        cluster="threads",
    )
    sc = score_plates(
        f"{pc.path}:DAPI_clean",
        f"{ic.path}:DAPI",
        window=32,
        mask_label="artefacts",
        cluster=client,
    )
    assert_open(client)
    assert st.sizes["window"] == 4
    xr.testing.assert_identical(st.drop_attrs(), sc.drop_attrs())


@pytest.mark.slow
@pytest.mark.timeout(300)  # once seen stalled in a full run on an overloaded machine
def test_a_spec_string_opens_and_closes_its_own_cluster(tmp_path):
    """Given 'local', the stage starts a cluster and closes it again."""
    from distributed.core import Status
    from distributed.deploy.spec import SpecCluster

    from phirm_scale.stages.masks import make_artefact_masks

    p = synthetic(tmp_path / "p.ome.zarr", rows=1, columns=2, fields=1)
    before = set(map(id, SpecCluster._instances))
    assert len(make_artefact_masks(p.path, channel="CFP", cluster="local", progress=False)) == 2
    new = [c for c in list(SpecCluster._instances) if id(c) not in before]
    assert len(new) == 1 and new[0].status == Status.closed


# ------------------------------------------------------------------- tasks open only their field
class ReadLog:
    """Every file zarr's local store reads, in this process."""

    def __init__(self, monkeypatch):
        import zarr.storage._local as local

        self.paths: list[Path] = []
        orig = local._get

        def spy(path, prototype, byte_range):
            self.paths.append(Path(path))
            return orig(path, prototype, byte_range)

        monkeypatch.setattr(local, "_get", spy)

    def metadata(self, plate: Path) -> list[str]:
        return sorted(
            str(p.relative_to(plate))
            for p in self.paths
            if p.name == "zarr.json" and p.is_relative_to(plate)
        )


def _tasks(small, big_plate_paths, key):
    """One task of each stage for field ``key`` of plate paths ``small`` (dict of names)."""
    from phirm_scale.stages.inpaint import InpaintTask
    from phirm_scale.stages.masks import MaskSettings, MaskTask
    from phirm_scale.stages.score import ScoreTask

    p, out = str(small["plate"]), str(small["out"])
    return {
        "masks": MaskTask(p, tuple(key), 1, "artefacts", MaskSettings(), {"method": "otsu"}),
        "inpaint": InpaintTask(
            p,
            out,
            tuple(key),
            0,
            "artefacts_true",
            {"name": "telea", "device": "cpu"},
            256,
            32,
            16,
            0,
        ),
        "score": ScoreTask(p, out, (key,), 2, 0, "artefacts_true", (p,), 32, None),
    }


@pytest.mark.parametrize("stage", ["masks", "inpaint", "score"])
def test_task_startup_reads_only_its_own_field(tmp_path, monkeypatch, stage):
    """A task of a 4-field plate and one of a 32-field plate read the same number of metadata
    documents: the plate root and documents of their own field, none of any other field."""
    from phirm_scale.plate import create_plate_like
    from phirm_scale.stages.inpaint import inpaint_one_field
    from phirm_scale.stages.masks import mask_field
    from phirm_scale.stages.score import _score_plate_fields

    funcs = {"masks": mask_field, "inpaint": inpaint_one_field, "score": _score_plate_fields}
    counts = {}
    for name, (rows, cols, fields) in {"small": (1, 2, 2), "big": (2, 4, 4)}.items():
        plate = synthetic(
            tmp_path / f"{name}.ome.zarr", rows=rows, columns=cols, fields=fields, size=32
        )
        out = create_plate_like(plate, tmp_path / f"{name}_out.ome.zarr")
        if stage == "score":  # the reconstruction must be written first
            for k in plate.fields:
                out.write_field(k, plate.read_field(k))
        key = plate.fields[-1]
        task = _tasks({"plate": plate.path, "out": out.path}, None, key)[stage]
        log = ReadLog(monkeypatch)
        funcs[stage](task)
        monkeypatch.undo()
        docs = log.metadata(plate.path) + log.metadata(out.path)
        own = [d for d in docs if d == "zarr.json" or d.startswith(key.path + "/")]
        assert docs and own == docs, (
            f"{stage} read other fields' metadata: {sorted(set(docs) - set(own))}"
        )
        counts[name] = len(docs)
    assert counts["small"] == counts["big"]


def test_convert_task_writes_only_its_field(tmp_path, monkeypatch):
    """A convert task reads its TIFFs and, of the store, only its own field's metadata."""
    from phirm_scale.stages.convert import ConvertTask, _convert_field

    write_ixm(tmp_path / "src", [("A01", 1)], shape=(8, 8))
    files = tuple(str(p) for p in sorted((tmp_path / "src").glob("*.tif")))
    out = tmp_path / "o.ome.zarr"
    log = ReadLog(monkeypatch)
    key = FieldKey("A", "01", 0)
    assert _convert_field(
        ConvertTask(str(out), tuple(key), files, (8, 8), "<u2", ("a", "b"), 1, ("x", "y"), 1)
    ) == tuple(key)
    docs = log.metadata(out)
    assert all(d.startswith(key.path + "/") for d in docs), docs
    got = [p.relative_to(out) for p in out.rglob("zarr.json")]
    assert got and all(str(p).startswith(key.path) for p in got)
