"""`phirm-scale run`: a whole screen in one command, on the real BBBC039 fields (split into two
plates by symlinks in tmp folders) and on composite plates with artefacts (OME-Zarr sources)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import composite_plate, copy_store, run_cli, symlink_fields

from phirm_scale.plate import open_plate


def cli(*args, ok=True):
    return run_cli(*args, check=ok)


def _split(files, root: Path) -> dict[str, list[Path]]:
    """Symlink the fields alternately into root/p1 and root/p2 (nothing copied)."""
    files = sorted(files)
    out = {"p1": files[0::2], "p2": files[1::2]}
    for name, fs in out.items():
        symlink_fields(fs, root / name)
    return out


def _wells(files) -> set[str]:
    return {re.search(r"_([A-P]\d\d)_s", f.name).group(1) for f in files}


@pytest.fixture(scope="module")
def real_screen(tmp_path_factory, bbbc039_files):
    root = tmp_path_factory.mktemp("real")
    split = _split(bbbc039_files, root / "screen")
    out = root / "out"
    proc = cli(
        "run",
        root / "screen",
        "-o",
        out,
        "--channel-names",
        "DAPI",
        "--artefact-channel",
        "none",
        "--cluster",
        "threads",
        "--no-progress",
        "--json",
    )
    return root, split, out, proc


@pytest.mark.slow
def test_run_real_fields_two_plates(real_screen):
    root, split, out, proc = real_screen
    summary = json.loads(proc.stdout)  # stdout is one JSON object and nothing else
    rows = {r["plate"]: r for r in summary["plates"]}
    assert set(rows) == {"p1", "p2"}
    for name, files in split.items():
        assert rows[name]["fields"] == len(files)
        assert rows[name]["wells"] == len(_wells(files))
        p = open_plate(out / f"{name}.ome.zarr")
        assert len(p.fields) == len(files) and p.channel_names == ["DAPI"]
        assert {k.row + k.column for k in p.fields} == _wells(files)
        assert len(open_plate(out / f"{name}_inpainted.ome.zarr").fields) == len(files)
    for f in ("qc.zarr", "qc.csv", "qc.parquet", "report/index.html", "run.json"):
        assert (out / f).exists(), f
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "complete" and rec["settings"]["channel"] == "DAPI"
    assert [i["fields"] for i in rec["inputs"]] == [len(split["p1"]), len(split["p2"])]
    for stage in ("convert", "masks", "inpaint", "score", "report"):
        assert rec["stages"][stage]["fields"] == len(split["p1"]) + len(split["p2"])
    ds = xr.open_zarr(out / "qc.zarr")
    assert list(ds["plate"].values) == ["p1", "p2"]
    assert int((~np.isnan(ds["field_phirm_mean"].values)).sum()) == 49


@pytest.mark.slow
def test_run_warns_when_nothing_was_masked(real_screen):
    # clean real fields: saturation masks find no artefact anywhere
    root, split, out, proc = real_screen
    assert "WARNING: no artefact pixels" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["warnings"] and all(r["masked_fraction"] == 0 for r in summary["plates"])
    page = (out / "report" / "index.html").read_text()
    assert page.index("no artefact pixels") < page.index("What was done")
    # nothing was inpainted, so every field is its own reference: said, loudly, at the top
    assert "WARNING: every field is identical to its reference (49 of 49 fields)" in proc.stderr
    assert page.index("every field is identical") < page.index("What was done")


def _qc(phirm, psnr, masked):
    """A hand-built screen QC: one plate, one row, len(phirm) fields of 2 windows."""
    phirm, psnr, masked = (np.asarray(a, float)[None, None, None] for a in (phirm, psnr, masked))
    dims = ("plate", "row", "column", "field", "window")
    return xr.Dataset(
        {
            "phirm": (dims, phirm),
            "psnr": (dims, psnr),
            "masked_fraction": (dims, masked),
            "field_phirm_mean": (dims[:-1], np.nanmean(phirm, axis=-1)),
        }
    )


def test_every_name_of_the_former_run_module_is_importable_from_phirm_scale_run():
    """run.py became a package (issue 21): what it defined is still ``phirm_scale.run.X``,
    the same object as in the module that now holds it, and __all__ is unchanged."""
    import importlib

    import phirm_scale.run as run

    where = {
        "settings": "MASK_LABEL RUN_FILE _WORK DEFAULT_SELFCHECK_DRAWS DEFAULT_RESIDUAL_THRESHOLD "
        "DEFAULT_HIDDEN_THRESHOLD DEFAULT_DILATE PREVIOUS_DILATE RESTORED_AREA ScreenSettings",
        "plan": "PlateSource ScreenPlan _is_zarr_plate _has_tiffs_here _has_tiffs_deep _plate_name "
        "find_plates _inside plan_screen _ADDED_SETTINGS _changed_defaults _upgradable "
        "mask_record _check_zarr_source _remove_previous _write_json _previous_record",
        "stages": "_selfcheck_screen _timed _run_plate _field_file _save_result _load_result _kept "
        "KeptTask _score_and_keep _selfcheck_and_keep _score_kept FieldCheckTask "
        "_fieldchecks_and_keep _fieldchecks_kept _selfcheck_kept",
        "summary": "nothing_done_warnings _finish",
    }
    for module, names in where.items():
        m = importlib.import_module(f"phirm_scale.run.{module}")
        for name in names.split():
            assert getattr(run, name) is getattr(m, name), name
    assert callable(run.run_screen) and run.RUN_FILE == "run.json"
    assert run.MASK_LABEL == "artefacts" and run.DEFAULT_DILATE == 4
    assert sorted(run.__all__) == sorted(
        "PlateSource ScreenPlan ScreenSettings plan_screen run_screen MASK_LABEL RUN_FILE "
        "find_plates".split()
    )
    # the run's log records keep their one name
    assert run.log.name == run.stages.log.name == run.summary.log.name == "phirm_scale.run"


def test_nothing_done_warnings_hand_built():
    from phirm_scale.run import nothing_done_warnings

    inf = np.inf
    # holes, fills that differ: no warning
    assert (
        nothing_done_warnings(
            _qc([[0.9, 1.0], [1.0, 1.0]], [[30, inf], [inf, 40]], [[0.1, 0], [0, 0.2]])
        )
        == []
    )
    # no hole anywhere, nothing changed: both warnings
    w = nothing_done_warnings(
        _qc([[1, 1], [1, 1]], [[inf, inf], [inf, inf]], [[0, 0], [0, 0]]), "CFP"
    )
    assert len(w) == 2 and "no artefact pixels" in w[0] and "'CFP'" in w[0]
    assert "identical to its reference (2 of 2 fields)" in w[1]
    # holes filled, yet every field the same mean PhIRM: the QC cannot tell them apart
    w = nothing_done_warnings(
        _qc([[0.8, 1.0], [0.9, 0.9]], [[30, inf], [35, 35]], [[0.1, 0], [0.1, 0.1]])
    )
    assert len(w) == 1 and "same mean PhIRM (0.9000, 2 fields)" in w[0]
    # an absent field (NaN) does not count
    w = nothing_done_warnings(
        _qc(
            [[0.8, 0.9], [np.nan, np.nan]],
            [[30, 31], [np.nan, np.nan]],
            [[0.1, 0.1], [np.nan, np.nan]],
        )
    )
    assert w == []


@pytest.mark.slow
def test_rerun_same_settings_resumes_other_settings_refused(real_screen):
    root, split, out, proc = real_screen
    before = (out / "qc.csv").read_bytes()
    again = cli(
        "run",
        root / "screen",
        "-o",
        out,
        "--channel-names",
        "DAPI",
        "--artefact-channel",
        "none",
        "--cluster",
        "threads",
        "--no-progress",
    )
    assert (out / "qc.csv").read_bytes() == before
    stamp = (out / "run.json").stat().st_mtime_ns
    tree = _tree(out)
    bad = cli(
        "run",
        root / "screen",
        "-o",
        out,
        "--channel-names",
        "DAPI",
        "--artefact-channel",
        "none",
        "--threshold",
        "0.8",
        "--cluster",
        "threads",
        "--no-progress",
        ok=False,
    )
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "threshold" in lines[0]
    assert (out / "run.json").stat().st_mtime_ns == stamp
    assert _tree(out) == tree  # byte-identical: nothing written, nothing removed
    assert "p1" in again.stdout and "p2" in again.stdout


@pytest.mark.slow
def test_tables_tab_separated_when_not_a_terminal(real_screen):
    root, split, out, proc = real_screen
    again = cli(
        "run",
        root / "screen",
        "-o",
        out,
        "--channel-names",
        "DAPI",
        "--artefact-channel",
        "none",
        "--cluster",
        "threads",
        "--no-progress",
    )
    lines = [ln for ln in again.stdout.splitlines() if "\t" in ln]
    header = lines[0].split("\t")
    assert header[:3] == ["plate", "fields", "wells"]
    body = {ln.split("\t")[0]: ln.split("\t") for ln in lines[1:]}
    assert int(body["p2"][1]) == len(split["p2"])


# ------------------------------------------------------------------- bad input: exit 2
def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (and the lock beside it) -> sha256 of its bytes."""
    out = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and not f.is_symlink():
            out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    out["<lock beside>"] = str(root.with_name(root.name + ".lock").exists())
    return out


def _bad(args, out: Path):
    p = cli("run", *args, "-o", out, "--cluster", "threads", "--no-progress", ok=False)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    assert not out.exists()
    return lines[0]


def test_bad_sources(tmp_path, bbbc039_files):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "neither a folder of TIFFs" in _bad([empty], tmp_path / "o1")
    a = symlink_fields(bbbc039_files[:1], tmp_path / "a" / "plate")
    b = symlink_fields(bbbc039_files[1:2], tmp_path / "b" / "plate")
    assert "plate name 'plate'" in _bad([a, b], tmp_path / "o2")
    line = _bad([a], a / "out")
    assert "inside the source" in line
    assert "--channel-names" in _bad([a], tmp_path / "o3")  # channel DAPI vs w1


def test_bad_different_channel_sets(tmp_path, bbbc039_files):
    d = symlink_fields(bbbc039_files[:1], tmp_path / "tiffs")
    z = composite_plate(tmp_path / "z.ome.zarr", columns=1, fields=1, artefacts=0.02)
    line = _bad([d, z, "--channel-names", "DAPI"], tmp_path / "o")
    assert "channel" in line


@pytest.mark.slow
def test_bad_settings_refused_before_anything_is_written(tmp_path, bbbc039_files):
    d = symlink_fields(bbbc039_files[:1], tmp_path / "tiffs")
    base = [d, "--channel-names", "DAPI", "--artefact-channel", "none"]
    assert "--window" in _bad([*base, "--window", "4096"], tmp_path / "o1")
    assert "window" in _bad([*base, "--window", "abc"], tmp_path / "o2")
    assert "--dilate" in _bad([*base, "--dilate", "-1"], tmp_path / "o3")
    assert "checkpoint" in _bad([*base, "--model", "deepfill-v2"], tmp_path / "o4")


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        ({"model": "no-such-model"}, "unknown model"),
        ({"model": "deepfill-v2"}, "checkpoint"),
        ({"window": "abc"}, "window"),
        ({"window": 0}, "window"),
        ({"threshold": float("nan")}, "--threshold"),
        ({"threshold": "0.9"}, "--threshold"),
        ({"dilate": -1}, "--dilate"),
        ({"dilate": 1.5}, "--dilate"),
        ({"mode": "other"}, "mode"),
    ],
)
def test_screen_settings_checked_when_made(kw, named):
    from phirm_scale.errors import PlateError
    from phirm_scale.run import ScreenSettings

    with pytest.raises(PlateError, match=re.escape(named)):
        ScreenSettings(**kw)


def test_screen_settings_are_one_frozen_value():
    import dataclasses

    from phirm_scale.run import ScreenSettings, plan_screen

    s = ScreenSettings(channel_names=["DAPI", "CFP"], artefact_channel=None)
    assert s.channel_names == ("DAPI", "CFP")  # a list given, a tuple kept
    assert s == ScreenSettings(channel_names=("DAPI", "CFP"), artefact_channel=None)
    assert (s.mask_method, s.selfcheck) == ("saturation", True)
    assert ScreenSettings(reference_channel="DAPI_clean").selfcheck is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.channel = "CFP"  # type: ignore[misc]  # frozen: assigning must fail
    with pytest.raises(TypeError, match="ScreenSettings"):
        plan_screen([], "out", {"channel": "DAPI"})  # type: ignore[arg-type]  # a dict refused


def test_run_json_of_an_earlier_run_is_resumed(tmp_path, bbbc039_files):
    """run.json settings written before ScreenSettings existed (the same dict, written here
    by hand) still resume; one setting changed is refused naming it."""
    from phirm_scale import __version__
    from phirm_scale.errors import OutputError
    from phirm_scale.run import ScreenSettings, plan_screen

    d = symlink_fields(bbbc039_files[:1], tmp_path / "tiffs")
    out = tmp_path / "out"
    out.mkdir()
    earlier = {
        "sources": [str(d.resolve())],
        "plates": ["tiffs"],
        "layout": "auto",
        "pattern": None,
        "channel_names": ["DAPI"],
        "channel": "DAPI",
        "artefact_channel": None,
        "mask_method": "saturation",
        "model": "telea",
        "checkpoint": None,
        "checkpoint_hash": None,
        "dilate": 2,
        # the masks' dilation (a run.json without this key grew the old masks at inpainting
        # and is refused: test_rerun_of_an_output_made_with_the_old_dilate_default_is_refused)
        "dilate_at": "masks",
        "reference_channel": "DAPI",
        "selfcheck": True,
        "selfcheck_draws": 4,
        "residual_threshold": 50.0,
        "window": "field",
        "threshold": 0.8,
        "mode": "paper",
        "version": __version__,
    }
    (out / "run.json").write_text(json.dumps({"status": "running", "settings": earlier}))
    settings = ScreenSettings(
        channel_names=("DAPI",), artefact_channel=None, dilate=2, window="field", threshold=0.8
    )
    plan = plan_screen([d], out, settings)
    assert plan.resume is True
    # resumed with the hidden-nuclei flag added since (its field checks are recomputed)
    assert plan.settings == {**earlier, "hidden_threshold": 8500.0}
    import dataclasses

    with pytest.raises(OutputError, match=r"other settings \(dilate\)"):
        plan_screen([d], out, dataclasses.replace(settings, dilate=1))


def test_output_not_from_run_refused(tmp_path, bbbc039_files):
    d = symlink_fields(bbbc039_files[:1], tmp_path / "tiffs")
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    p = cli(
        "run",
        d,
        "-o",
        out,
        "--channel-names",
        "DAPI",
        "--artefact-channel",
        "DAPI",
        "--cluster",
        "threads",
        "--no-progress",
        ok=False,
    )
    assert p.returncode == 2 and p.stderr.startswith("error:")
    assert sorted(x.name for x in out.iterdir()) == ["notes.txt"]


# ----------------------------------------------- OME-Zarr sources with artefacts, restart
def _digest(plate_path: Path) -> str:
    """Hash of every image array of a plate (labels excluded)."""
    p = open_plate(plate_path)
    h = hashlib.sha256()
    for k in p.fields:
        h.update(np.ascontiguousarray(p.read_field(k)).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def zarr_sources(tmp_path_factory):
    """Two composite plates (real fields, composited artefacts), 2 wells x 2 fields each."""
    root = tmp_path_factory.mktemp("zsrc")
    for i, name in enumerate(("alpha", "beta")):
        composite_plate(root / f"{name}.ome.zarr", seed=i)
    return root


def _run(src_root, out, **kw):
    from phirm_scale.run import ScreenSettings, run_screen

    return run_screen(
        [src_root / "alpha.ome.zarr", src_root / "beta.ome.zarr"],
        out,
        ScreenSettings(
            channel="DAPI", artefact_channel="CFP", reference_channel="DAPI_clean", dilate=1
        ),
        progress=False,
        **kw,
    )


def _copy_sources(zarr_sources, dest: Path) -> Path:
    return copy_store(zarr_sources, dest)


@pytest.mark.slow
def test_zarr_sources_with_artefacts(zarr_sources, tmp_path):
    src = _copy_sources(zarr_sources, tmp_path / "src")
    before = {n: _digest(src / f"{n}.ome.zarr") for n in ("alpha", "beta")}
    res = _run(src, tmp_path / "out", cluster="threads")
    # sources: image data untouched, only the artefacts label added
    for n in ("alpha", "beta"):
        assert _digest(src / f"{n}.ome.zarr") == before[n]
        p = open_plate(src / f"{n}.ome.zarr")
        assert all(p.has_label(k, "artefacts") for k in p.fields)
        assert not (tmp_path / "out" / f"{n}.ome.zarr").exists()
    assert res["warnings"] == []
    rows = {r["plate"]: r for r in res["plates"]}
    assert all(r["fields"] == 4 and r["wells"] == 2 for r in rows.values())
    # independent check of the masked fraction: the label pixels of the source plates
    for n in ("alpha", "beta"):
        p = open_plate(src / f"{n}.ome.zarr")
        assert rows[n]["masked_fraction"] > 0
        masked = sum(int((p.read_label(k, "artefacts") > 0).sum()) for k in p.fields)
        assert masked > 0
    ds = xr.open_zarr(tmp_path / "out" / "qc.zarr")
    # the restored DAPI differs from the damaged one only inside the masks
    for n in ("alpha", "beta"):
        a = open_plate(src / f"{n}.ome.zarr")
        b = open_plate(tmp_path / "out" / f"{n}_inpainted.ome.zarr")
        k = a.fields[0]
        changed = a.read_field(k, "DAPI") != b.read_field(k, "DAPI")
        assert changed.any()
        assert str(ds["reference"].sel(plate=n).values) == str((src / f"{n}.ome.zarr").resolve())
    flagged = int(sum(r["fields_flagged"] for r in res["plates"]))
    fm = ds["field_phirm_mean"].values
    assert flagged == int(np.sum(fm[~np.isnan(fm)] < 0.9))
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert f"{flagged} of 8 fields are flagged" in page


def test_run_with_reference_channel_prints_its_summary(zarr_sources, tmp_path):
    """docs/cli.md's composite example (``--reference-channel``) ends with exit 0 and a title
    naming the PhIRM rule only: with a reference no residual or hidden-nuclei threshold is
    recorded (None in the summary), and formatting them crashed the end of the run (exit 2
    after all the work was written)."""
    src = _copy_sources(zarr_sources, tmp_path / "src")
    out = tmp_path / "out"
    proc = cli(
        "run",
        src / "alpha.ome.zarr",
        "-o",
        out,
        "--channel",
        "DAPI",
        "--artefact-channel",
        "CFP",
        "--reference-channel",
        "DAPI_clean",
        "--dilate",
        "1",
        "--cluster",
        "threads",
        "--no-progress",
        "--threshold",
        "0.95",
        ok=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stderr
    # independent count: the QC store's field means below the threshold given
    fm = xr.open_zarr(out / "qc.zarr")["field_phirm_mean"].values
    flagged = int(np.sum(fm[~np.isnan(fm)] < 0.95))
    lines = proc.stdout.splitlines()
    assert lines[0] == f"# screen {out}: 4 fields, {flagged} flagged (mean PhIRM < 0.95)"
    header = lines[1].split("\t")
    row = dict(zip(header, lines[2].split("\t"), strict=True))
    assert row["plate"] == "alpha" and row["fields"] == "4" and row["selfcheck_mean"] == ""
    assert lines[-1] == f"report {out / 'report' / 'index.html'}"


@pytest.mark.slow
def test_restart_after_interruption_is_identical(zarr_sources, tmp_path, monkeypatch):
    import phirm_scale.stages.inpaint as stage

    src_a = _copy_sources(zarr_sources, tmp_path / "a")
    src_b = _copy_sources(zarr_sources, tmp_path / "b")
    ref = _run(src_a, tmp_path / "outa", cluster="threads")

    real = stage.inpaint_one_field
    calls = Counter()

    def flaky(task):
        calls["n"] += 1
        if "beta" in task.source and tuple(task.key)[2] == 1:
            raise RuntimeError("node lost")
        return real(task)

    monkeypatch.setattr(stage, "inpaint_one_field", flaky)
    with pytest.raises(RuntimeError, match="node lost"):
        _run(src_b, tmp_path / "outb", cluster="threads")
    assert json.loads((tmp_path / "outb" / "run.json").read_text())["status"] == "running"
    monkeypatch.setattr(stage, "inpaint_one_field", real)
    done_before = open_plate(tmp_path / "outb" / "alpha_inpainted.ome.zarr").missing_fields()
    assert done_before == []  # alpha finished before the failure
    res = _run(src_b, tmp_path / "outb", cluster="threads")
    assert res["plates"] == ref["plates"]
    for n in ("alpha", "beta"):
        assert _digest(tmp_path / "outa" / f"{n}_inpainted.ome.zarr") == _digest(
            tmp_path / "outb" / f"{n}_inpainted.ome.zarr"
        )
    da = xr.open_zarr(tmp_path / "outa" / "qc.zarr").load()
    db = xr.open_zarr(tmp_path / "outb" / "qc.zarr").load()
    drop = ["reference", "reconstruction"]
    xr.testing.assert_equal(da.drop_vars(drop), db.drop_vars(drop))


@pytest.mark.slow
def test_one_cluster_for_every_stage(zarr_sources, tmp_path):
    from distributed import Client, LocalCluster

    src = _copy_sources(zarr_sources, tmp_path / "src")
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as lc,
        Client(lc) as client,
    ):
        _run(src, tmp_path / "out", cluster=client)
        prefixes = client.run_on_scheduler(
            lambda dask_scheduler: sorted(dask_scheduler.task_prefixes)
        )
        assert client.status == "running"
    for p in ("masks", "inpaint", "score"):
        assert any(x.startswith(p) for x in prefixes), (p, prefixes)


# ------------------------------------------------------------- the screen QC dataset
_PLAIN_XARRAY = r"""
import sys
sys.modules["phirm_scale"] = None  # phirm-scale must not be needed to read the store
import csv, json, xarray as xr, pandas as pd, numpy as np
a = xr.open_zarr(sys.argv[1])
b = xr.open_zarr(sys.argv[2])
well = a.sel(plate="alpha", row="A", column="02")
both = xr.concat([a, b.assign_coords(plate=["gamma", "delta"])], dim="plate")
fields = both[[v for v in both.data_vars if v.startswith("field_")]].to_dataframe()
print(json.dumps({
    "well_fields": int((~np.isnan(well["field_phirm_mean"].values)).sum()),
    "plates": [str(p) for p in both["plate"].values],
    "references": [str(r) for r in both["reference"].values],
    "rows_df": int(fields["field_phirm_mean"].notna().sum()),
}))
"""


@pytest.mark.slow
def test_screen_qc_dataset(zarr_sources, tmp_path):
    import csv

    import pandas as pd
    import zarr

    src = _copy_sources(zarr_sources, tmp_path / "src")
    _run(src, tmp_path / "out", cluster="threads")
    store = tmp_path / "out" / "qc.zarr"
    ds = xr.open_zarr(store)
    assert ds["phirm"].dims == ("plate", "row", "column", "field", "window")
    assert ds.attrs["Conventions"].startswith("CF-")
    for name, var in ds.data_vars.items():
        assert var.attrs.get("long_name"), name
        assert var.attrs.get("units") in {"1", "px", "dB"}, name
    assert ds["psnr"].attrs["units"] == "dB" and ds["ref_nuclei_area"].attrs["units"] == "px"
    # counts stored as integers in Zarr (fill value -1 for absent fields)
    g = zarr.open_group(str(store), mode="r")
    for v in ("ref_nuclei_count", "rec_artefact_area", "field_n_windows", "plate_ref_nuclei_count"):
        assert np.dtype(g[v].dtype).kind == "i", v
    assert np.dtype(g["phirm"].dtype).kind == "f"
    # the same row/column labels everywhere
    assert list(ds["column"].values) == ["01", "02"] and list(ds["row"].values) == ["A"]
    with open(tmp_path / "out" / "qc.csv", newline="") as fh:
        text = fh.read()
    assert '"A","01"' in text or '"01"' in text
    first = next(csv.DictReader(text.splitlines()))
    assert first["column"] in {"01", "02"} and first["well"] in {"A01", "A02"}
    pq = pd.read_parquet(tmp_path / "out" / "qc.parquet")
    assert set(pq["column"]) == {"01", "02"} and pq["ref_nuclei_count"].dtype == np.int64
    df = pd.read_csv(tmp_path / "out" / "qc.csv", dtype={"row": str, "column": str})
    assert set(df["column"]) == {"01", "02"}
    assert len(pq) == len(df) == 2 * 4 * ds.sizes["window"]
    # per-plate provenance kept
    refs = [str(r) for r in ds["reference"].values]
    assert refs == [str((src / f"{n}.ome.zarr").resolve()) for n in ("alpha", "beta")]
    # plain xarray: select a well, concatenate two screens, to_dataframe
    p = subprocess.run(
        [sys.executable, "-c", _PLAIN_XARRAY, str(store), str(store)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["well_fields"] == 2
    assert got["plates"] == ["alpha", "beta", "gamma", "delta"]
    assert got["references"][:2] == refs and got["references"][2:] == refs
    assert got["rows_df"] == 16


def test_a_second_run_into_the_same_output_is_refused_naming_the_holder(zarr_sources, tmp_path):
    """Another live process holding OUT's lock: `run` refuses at once, naming it, and writes
    nothing into OUT."""
    import subprocess
    import sys
    import time

    from phirm_scale.errors import PhirmError

    src = _copy_sources(zarr_sources, tmp_path / "src")
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom phirm_scale.outputs import output_lock\n"
            f"with output_lock({str(out)!r}, command='run'):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(PhirmError, match=str(holder.pid)):
            _run(src, out)
        assert time.monotonic() - t0 < 30
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_source_label_of_other_settings_refused_before_anything_is_written(zarr_sources, tmp_path):
    """An OME-Zarr source whose `artefacts` label was made with other settings (saturation
    on DAPI, this run wants Otsu on CFP): one line, exit 2, OUT never created and the
    source's labels untouched (the check used to come after run.json was written)."""
    from phirm_scale.stages.masks import make_artefact_masks

    src = _copy_sources(zarr_sources, tmp_path / "src")
    make_artefact_masks(
        src / "beta.ome.zarr",
        channel="DAPI",
        method="saturation",
        cluster="threads",
        progress=False,
    )
    before = _tree(src)
    out = tmp_path / "out"
    p = cli(
        "run",
        src / "alpha.ome.zarr",
        src / "beta.ome.zarr",
        "-o",
        out,
        "--channel",
        "DAPI",
        "--artefact-channel",
        "CFP",
        "--cluster",
        "threads",
        "--no-progress",
        ok=False,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    assert "beta.ome.zarr" in lines[0] and "saturation" in lines[0]
    assert not out.exists()
    assert _tree(src) == before  # alpha got no label either: nothing was written anywhere


# ------------------------------------------- no reference channel: the self-check in `run`
@pytest.mark.slow
def test_selfcheck_when_no_reference_channel(zarr_sources, tmp_path):
    """Without --reference-channel every plate gets the self-check and the reference-free
    checks in the screen QC, flags come from them (not from PhIRM against the damaged
    source), and the values equal those of `score --self-check`'s code path on the same
    restored plate."""
    from phirm_scale.qc import open_qc
    from phirm_scale.run import ScreenSettings, run_screen
    from phirm_scale.stages.score import score_plates
    from phirm_scale.stages.selfcheck import selfcheck_qc

    src = _copy_sources(zarr_sources, tmp_path / "src")
    out = tmp_path / "out"
    res = run_screen(
        [src / "alpha.ome.zarr", src / "beta.ome.zarr"],
        out,
        ScreenSettings(channel="DAPI", artefact_channel="CFP", dilate=1),
        cluster="threads",
        progress=False,
    )
    ds = xr.open_zarr(out / "qc.zarr").load()
    for v in (
        "selfcheck_phirm",
        "flag",
        "residual_artefact_area",
        "focus_score",
        "expected_hidden_nuclei",
        "expected_hidden_nuclear_area",
    ):
        assert v in ds, v
    assert ds["selfcheck_phirm"].dims == ("plate", "row", "column", "field", "window")
    assert ds["expected_hidden_nuclear_area"].dims == ("plate", "row", "column", "field")
    from phirm_scale.fieldqc import DEFAULT_HIDDEN_THRESHOLD

    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["hidden_threshold"] == DEFAULT_HIDDEN_THRESHOLD
    assert ds["flag"].attrs["hidden_threshold"] == DEFAULT_HIDDEN_THRESHOLD
    assert ds["flag"].attrs["flag_meanings"].startswith("selfcheck_below_threshold")
    assert res["screen"]["flagged_by"] != "PhIRM"
    for row in res["plates"]:
        d = ds.sel(plate=row["plate"])
        assert row["fields_flagged"] == int((np.nan_to_num(d["flag"].values) > 0).sum())
        assert row["selfcheck_mean"] == pytest.approx(
            float(np.nanmean(d["selfcheck_phirm"].values)), abs=1e-6
        )
    # the same numbers through score --self-check's own path (run_selfcheck, no kept files)
    plate = score_plates(
        f"{src / 'beta.ome.zarr'}:DAPI",
        f"{out / 'beta_inpainted.ome.zarr'}:DAPI",
        window=256,
        mask_label="artefacts",
    )
    ref = selfcheck_qc(plate, out / "beta_inpainted.ome.zarr", draws=4, seed=0)
    got = ds.sel(plate="beta")
    np.testing.assert_array_equal(
        got["selfcheck_phirm"].transpose("row", "column", "field", "window").values,
        ref["selfcheck_phirm"].transpose("row", "column", "field", "window").values,
    )
    np.testing.assert_array_equal(
        np.nan_to_num(got["flag"].values, nan=-1), np.nan_to_num(ref["flag"].values, nan=-1)
    )
    page = (out / "report" / "index.html").read_text()
    assert "mean self-check PhIRM" in page and "Without a reference" in page
    assert open_qc is not None


@pytest.mark.slow
def test_selfcheck_skipped_loudly_on_the_shipped_clean_fields(real_screen):
    """docs/cli.md's run on the shipped BBBC039 fields (no reference channel, no artefact
    anywhere): the self-check cannot shape pseudo-holes and says so, never a silent 1.0."""
    root, split, out, proc = real_screen
    summary = json.loads(proc.stdout)
    assert any(w.startswith("self-check not run") for w in summary["warnings"])
    assert "WARNING: self-check not run" in proc.stderr
    assert all(r["selfcheck_mean"] is None for r in summary["plates"])
    ds = xr.open_zarr(out / "qc.zarr")
    assert "selfcheck_phirm" not in ds
    assert int(ds["field_restored_area"].sum()) == 0
    # the reference-free checks were still made on every field: CellProfiler's focus score
    # (variance / mean of the intensities on 0..1 by the dtype maximum) of each TIFF
    import tifffile

    hand = []
    for f in split["p1"] + split["p2"]:
        a = tifffile.imread(f).astype(np.float64) / 65535.0
        hand.append(a.var() / a.mean())
    got = ds["focus_score"].values
    np.testing.assert_allclose(np.sort(got[~np.isnan(got)]), np.sort(hand), rtol=1e-9)
    assert int((ds["flag"].fillna(0) > 0).sum()) == 0  # clean fields: no residual artefact
    assert summary["screen"]["flagged_by"] == "residual artefact and hidden nuclei"
    rec = json.loads((out / "run.json").read_text())
    assert rec["settings"]["selfcheck"] is True


@pytest.mark.slow
def test_area_restored_counts_each_pixel_once(tmp_path):
    """A 40 x 50 hole in the overlap of four 256-px windows (fields 520 x 696: windows at
    y 0/256/264, x 0/256/440): 2,000 px restored per field, not the 8,000 a sum of window
    fractions gives."""
    from phirm_scale.plate import create_plate
    from phirm_scale.run import mask_record

    rng = np.random.default_rng(5)
    p = create_plate(
        tmp_path / "hand.ome.zarr",
        rows=["A"],
        columns=["01"],
        fields=[("A", "01", 0), ("A", "01", 1)],
        shape=(520, 696),
        channel_names=["DAPI", "CFP"],
        dtype=np.uint16,
    )
    hole = np.zeros((520, 696), np.uint8)
    hole[300:340, 450:500] = 1
    for k in p.fields:
        img = rng.integers(100, 4000, size=(2, 520, 696)).astype(np.uint16)
        p.write_label(k, "artefacts", hole, attrs={"mask": mask_record("CFP", "CFP", 4)})
        p.write_field(k, img)
    from phirm_scale.run import ScreenSettings, run_screen

    res = run_screen(
        [p.path],
        tmp_path / "out",
        ScreenSettings(channel="DAPI", artefact_channel="CFP", reference_channel="CFP"),
        cluster="threads",
        progress=False,
    )
    assert res["plates"][0]["restored_px"] == 2 * 2000
    ds = xr.open_zarr(tmp_path / "out" / "qc.zarr")
    assert ds["field_restored_area"].values.ravel().tolist() == [2000, 2000]
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "4,000 px (about 2,000 px per field)" in page


@pytest.mark.slow
def test_interrupted_scoring_resumes_per_field(zarr_sources, tmp_path, monkeypatch):
    """Scoring fails on beta's last field; the rerun scores only the fields whose results
    were not kept (alpha's and beta's finished ones are not recomputed) and ends identical
    to an uninterrupted run."""
    import phirm_scale.stages.score as stage

    src_a = _copy_sources(zarr_sources, tmp_path / "a")
    src_b = _copy_sources(zarr_sources, tmp_path / "b")
    ref = _run(src_a, tmp_path / "outa", cluster="threads")

    real = stage._score_plate_fields
    scored: list[tuple[str, tuple]] = []

    others = {
        ("beta_inpainted.ome.zarr", ("A", c, f)) for c, f in (("01", 0), ("01", 1), ("02", 0))
    }

    def flaky(task):
        for k in task.keys:
            if "beta" in task.reconstruction and tuple(k) == ("A", "02", 1):
                # fail once beta's other fields are scored (they run first on one thread;
                # on several, wait for them), so the rerun has kept fields of beta too
                import time

                for _ in range(2400):
                    if others <= set(scored):
                        break
                    time.sleep(0.05)
                raise RuntimeError("node lost")
        out = real(task)
        scored.extend((Path(task.reconstruction).name, tuple(k)) for k in task.keys)
        return out

    monkeypatch.setattr(stage, "_score_plate_fields", flaky)
    with pytest.raises(RuntimeError, match="node lost"):
        _run(src_b, tmp_path / "outb", cluster="threads")
    first = set(scored)
    assert others <= first  # beta's three finished fields ...
    assert {k for n, k in first if n.startswith("alpha")} == {
        ("A", c, f) for c in ("01", "02") for f in (0, 1)
    }
    scored.clear()
    monkeypatch.setattr(
        stage,
        "_score_plate_fields",
        lambda t: scored.extend((Path(t.reconstruction).name, tuple(k)) for k in t.keys) or real(t),
    )
    res = _run(src_b, tmp_path / "outb", cluster="threads")
    every = {
        (f"{n}_inpainted.ome.zarr", ("A", c, f))
        for n in ("alpha", "beta")
        for c in ("01", "02")
        for f in (0, 1)
    }
    assert set(scored) == every - first  # ... are not recomputed: only what was missing
    assert len(scored) == len(set(scored))
    assert ("beta_inpainted.ome.zarr", ("A", "02", 1)) in set(scored)
    assert res["plates"] == ref["plates"]
    da = xr.open_zarr(tmp_path / "outa" / "qc.zarr").load()
    db = xr.open_zarr(tmp_path / "outb" / "qc.zarr").load()
    drop = ["reference", "reconstruction"]
    xr.testing.assert_equal(da.drop_vars(drop), db.drop_vars(drop))


@pytest.mark.slow
def test_rerun_of_an_output_made_with_the_old_dilate_default_is_refused(tmp_path, bbbc039_files):
    """--dilate's default changed from 0 (the paper's recipe, grown at the inpaint stage) to
    4 (the masks' dilation, measured best): an output recorded before (no ``dilate_at``) is
    refused by a rerun, with one error line naming the changed default and --overwrite;
    --overwrite replaces it. An explicit --dilate is recorded as given."""
    from phirm_scale.errors import OutputError
    from phirm_scale.run import ScreenSettings, plan_screen

    d = symlink_fields(bbbc039_files[:1], tmp_path / "tiffs")
    out = tmp_path / "out"
    paper = ScreenSettings(channel_names=("DAPI",), artefact_channel=None, dilate=0)
    new = plan_screen([d], out, paper).settings  # nothing written
    assert new["dilate"] == 0 and new["dilate_at"] == "masks"
    # what a run before the change recorded: the same keys without dilate_at
    old = {k: v for k, v in new.items() if k != "dilate_at"}
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"status": "complete", "settings": old}))
    tree = _tree(out)
    for extra in ((), ("--dilate", "0")):
        bad = cli(
            "run",
            d,
            "-o",
            out,
            "--channel-names",
            "DAPI",
            "--artefact-channel",
            "none",
            "--no-progress",
            *extra,
            ok=False,
        )
        assert bad.returncode == 2
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), bad.stderr
        assert "dilate_at" in lines[0]
        assert "default changed from 0" in lines[0] and "to 4 px masks" in lines[0]
        assert "--overwrite" in lines[0]
        assert _tree(out) == tree  # nothing written
    assert (
        plan_screen(
            [d], out, ScreenSettings(channel_names=("DAPI",), artefact_channel=None), overwrite=True
        ).settings["dilate"]
        == 4
    )
    # a run made after the change with --dilate 0 resumes with it; another value is refused
    # without the default's explanation
    (out / "run.json").write_text(json.dumps({"status": "complete", "settings": new}))
    assert plan_screen([d], out, paper).resume is True
    with pytest.raises(OutputError) as exc:
        plan_screen(
            [d], out, ScreenSettings(channel_names=("DAPI",), artefact_channel=None, dilate=2)
        )
    assert "dilate" in str(exc.value) and "default" not in str(exc.value)


def test_run_masks_are_the_masks_stage_defaults():
    """`run --dilate N` makes the masks `masks --dilation N` makes: by default 4 px (a disk)
    for both methods, so labels made by `phirm-scale masks` with its defaults are run's."""
    from phirm_scale.run import ScreenSettings, mask_record
    from phirm_scale.stages.masks import MaskSettings

    assert ScreenSettings().dilate is None and ScreenSettings().dilate_px == 4
    assert ScreenSettings(dilate=0).dilate_px == 0
    assert mask_record("CFP", "CFP", 4)["dilation"] == 4
    assert mask_record("DAPI", None, 0)["dilation"] == 0
    for method, channel, art in (("otsu", "CFP", "CFP"), ("saturation", "DAPI", None)):
        assert mask_record(channel, art, 4) == {
            "channel": channel,
            **MaskSettings(method=method).as_attrs(),
        }


def test_fail_below_uses_the_estimate_without_reference(zarr_sources, tmp_path):
    """Without a reference channel the plate figure of --fail-below is the estimated PhIRM:
    not the PhIRM against the damaged source (~0.4 here, it would fail every good
    restoration), nor the self-check alone (blind to what the masks left: 1 px masks here)."""
    src = _copy_sources(zarr_sources, tmp_path / "src")
    args = [
        "run",
        src / "alpha.ome.zarr",
        "-o",
        tmp_path / "out",
        "--channel",
        "DAPI",
        "--artefact-channel",
        "CFP",
        "--dilate",
        "1",
        "--cluster",
        "threads",
        "--no-progress",
        "--json",
    ]
    row = json.loads(cli(*args).stdout)["plates"][0]
    est, sc = row["estimated_phirm"], row["selfcheck_mean"]
    assert row["phirm_mean"] + 0.02 < est < sc - 0.02
    ok = cli(*args, "--fail-below", f"{est - 0.01:.4f}")  # resumes: nothing recomputed
    assert ok.returncode == 0
    between = (est + sc) / 2  # passes on the self-check, fails on the estimate
    bad = cli(*args, "--fail-below", f"{between:.4f}", ok=False)
    assert bad.returncode == 3
    assert f"estimated PhIRM {est:.4f} < {between:.4f}" in bad.stderr


@pytest.mark.slow
def test_interrupted_selfcheck_resumes_per_field(zarr_sources, tmp_path, monkeypatch):
    """The self-check (no reference channel) fails on beta's last field: the rerun
    self-checks only that field and ends identical to an uninterrupted run."""
    import time

    import phirm_scale.stages.selfcheck as sc

    def run(src, out):
        from phirm_scale.run import ScreenSettings, run_screen

        return run_screen(
            [src / "alpha.ome.zarr", src / "beta.ome.zarr"],
            out,
            ScreenSettings(channel="DAPI", artefact_channel="CFP", dilate=1),
            cluster="threads",
            progress=False,
        )

    ref = run(_copy_sources(zarr_sources, tmp_path / "a"), tmp_path / "outa")
    src_b = _copy_sources(zarr_sources, tmp_path / "b")
    real = sc._task
    done: list[tuple[str, tuple]] = []
    last = ("A", "02", 1)
    others = {("beta", ("A", c, f)) for c, f in (("01", 0), ("01", 1), ("02", 0))}

    def flaky(t):
        plate = "beta" if "beta" in t.rec_path else "alpha"
        if plate == "beta" and last in [tuple(k) for k in t.keys]:
            for _ in range(2400):  # let beta's other fields finish first (several threads)
                if others <= set(done):
                    break
                time.sleep(0.05)
            raise RuntimeError("node lost")
        out = real(t)
        done.extend((plate, tuple(k)) for k in t.keys)
        return out

    monkeypatch.setattr(sc, "_task", flaky)
    with pytest.raises(RuntimeError, match="node lost"):
        run(src_b, tmp_path / "outb")
    assert others <= set(done) and len({k for p, k in done if p == "alpha"}) == 4
    done.clear()
    monkeypatch.setattr(
        sc,
        "_task",
        lambda t: (
            done.extend(("beta" if "beta" in t.rec_path else "alpha", tuple(k)) for k in t.keys)
            or real(t)
        ),
    )
    res = run(src_b, tmp_path / "outb")
    assert done == [("beta", last)]  # only the missing field
    assert res["plates"] == ref["plates"]
    da = xr.open_zarr(tmp_path / "outa" / "qc.zarr").load()
    db = xr.open_zarr(tmp_path / "outb" / "qc.zarr").load()
    # the paths of the two copies of the sources differ (a/ and b/), nothing else may
    drop = ["reference", "reconstruction", "selfcheck_source", "selfcheck_pool"]
    assert all(str(tmp_path / "b") in str(v) for v in db["selfcheck_source"].values)
    xr.testing.assert_equal(da.drop_vars(drop), db.drop_vars(drop))


# ------------------------------------- resuming a run made before the hidden-nuclei flag
_HIDDEN = ("expected_hidden_nuclei", "expected_hidden_nuclear_area")


def _as_before_the_hidden_flag(out: Path, folder: str) -> dict:
    """Make a run's output what 36adfb8 left: its kept per-field checks (``folder``_*)
    without the two hidden-nuclei measures, run.json's settings without hidden_threshold.
    Returns the doctored run.json."""
    files = sorted((out / ".phirm-run").glob(f"{folder}_*/*.npz"))
    assert files
    for f in files:
        with np.load(f) as z:
            kept = {k: z[k] for k in z.files if k not in _HIDDEN}
            assert len(kept) == len(z.files) - 2
        with open(f, "wb") as fh:
            np.savez(fh, **kept)
    rec = json.loads((out / "run.json").read_text())
    rec["settings"].pop("hidden_threshold", None)
    (out / "run.json").write_text(json.dumps(rec))
    return rec


def _resumed_with_the_flag(out: Path, folder: str, before: xr.Dataset, rerun) -> None:
    """Rerun on the doctored output: every field's checks recomputed, bit 8 for all of
    them, run.json's settings say so, the QC equals a run made with the flag."""
    from phirm_scale.fieldqc import DEFAULT_HIDDEN_THRESHOLD

    old = _as_before_the_hidden_flag(out, folder)
    summary = rerun()
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "complete" and "previous" not in rec
    assert rec["settings"] == {**old["settings"], "hidden_threshold": DEFAULT_HIDDEN_THRESHOLD}
    assert rec["plates"] == summary["plates"] == old["plates"]
    after = xr.open_zarr(out / "qc.zarr").load()
    assert after["flag"].attrs["hidden_threshold"] == DEFAULT_HIDDEN_THRESHOLD
    xr.testing.assert_identical(before, after)
    for f in (out / ".phirm-run").glob(f"{folder}_*/*.npz"):
        with np.load(f) as z:
            assert set(_HIDDEN) <= set(z.files), f


def test_run_made_before_the_hidden_flag_resumes_with_it(tmp_path, bbbc039_files, monkeypatch):
    """A run of 36adfb8 (no artefact anywhere: the field checks without the self-check)
    resumed by this version: no KeyError, the field checks recomputed with the flag; a
    resume interrupted before it completes keeps the finished run's summary in run.json."""
    from phirm_scale import run as run_mod
    from phirm_scale.run import ScreenSettings, run_screen

    d = symlink_fields(bbbc039_files[:1], tmp_path / "tiffs")
    out = tmp_path / "out"

    def rerun():
        return run_screen(
            [d],
            out,
            ScreenSettings(channel_names=("DAPI",), artefact_channel=None, window="field"),
            cluster="threads",
            progress=False,
        )

    rerun()
    before = xr.open_zarr(out / "qc.zarr").load()
    assert before["expected_hidden_nuclear_area"].notnull().sum() == 1
    old = _as_before_the_hidden_flag(out, "fieldqc")

    def lost(*a, **kw):
        raise RuntimeError("node lost")

    with monkeypatch.context() as m:
        m.setattr(run_mod, "_finish", lost)
        with pytest.raises(RuntimeError, match="node lost"):
            rerun()
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "running" and rec["previous"] == old
    (out / "run.json").write_text(json.dumps(old))
    _resumed_with_the_flag(out, "fieldqc", before, rerun)


@pytest.mark.slow
def test_selfchecked_run_made_before_the_hidden_flag_resumes_with_it(
    zarr_sources, tmp_path, monkeypatch
):
    """The same with holes (the self-check path): every field self-checked again."""
    import phirm_scale.stages.selfcheck as sc
    from phirm_scale.run import ScreenSettings, run_screen

    src = copy_store(zarr_sources / "alpha.ome.zarr", tmp_path / "alpha.ome.zarr")
    out = tmp_path / "out"

    def rerun():
        return run_screen(
            [src],
            out,
            ScreenSettings(channel="DAPI", artefact_channel="CFP", dilate=1),
            cluster="threads",
            progress=False,
        )

    rerun()
    before = xr.open_zarr(out / "qc.zarr").load()
    assert float(before["expected_hidden_nuclear_area"].sum()) > 0
    real = sc._task
    done: list = []
    monkeypatch.setattr(sc, "_task", lambda t: done.extend(t.keys) or real(t))
    _resumed_with_the_flag(out, "selfcheck", before, rerun)
    assert len(done) == 4


def test_run_hidden_threshold_recorded_and_printed(tmp_path, bbbc039_files):
    """`run --hidden-threshold 4321`: run.json, the QC's flag attributes, the printed title
    and the report all say 4321 (not the default 8500)."""
    d = symlink_fields(bbbc039_files[:1], tmp_path / "tiffs")
    out = tmp_path / "out"
    p = cli(
        "run",
        d,
        "-o",
        out,
        "--channel-names",
        "DAPI",
        "--artefact-channel",
        "none",
        "--window",
        "field",
        "--hidden-threshold",
        "4321",
        "--cluster",
        "threads",
        "--no-progress",
    )
    assert "(residual artefact > 50 px or >= 4321 nuclear px expected under the holes)" in (
        p.stdout
    )
    assert "8500" not in p.stdout
    assert json.loads((out / "run.json").read_text())["settings"]["hidden_threshold"] == 4321
    assert xr.open_zarr(out / "qc.zarr")["flag"].attrs["hidden_threshold"] == 4321
    page = (out / "report" / "index.html").read_text()
    assert "at least 4321 px of nuclei expected under the holes" in page
