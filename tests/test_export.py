"""`phirm-scale export`: a plate's fields back as TIFFs in the source's naming, with a
CellProfiler LoadData CSV. Real BBBC039 fields (ImageXpress names with GUIDs), a Cellomics
folder written here, synthetic plates; every TIFF read back with tifffile and compared with
the plate's arrays, the CSV read with pandas."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from conftest import restore_plate, run_cli, symlink_fields

from phirm_scale.plate import open_plate
from phirm_scale.stages.convert import convert
from phirm_scale.stages.export import LOAD_FILE, export_plate
from phirm_scale.synthetic import make_plate


def _tiffs(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.suffix == ".tif"}


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _check_against_plate(out: Path, plate_path: Path) -> pd.DataFrame:
    """Every channel of every field is a TIFF equal to the plate's array, listed once in the
    load file with an existing path; returns the load file."""
    p = open_plate(plate_path)
    df = pd.read_csv(out / LOAD_FILE)
    assert len(df) == len(p.fields)
    assert list(df.columns) == [
        *(f"{x}_{c}" for c in p.channel_names for x in ("FileName", "PathName")),
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Row",
        "Metadata_Column",
        "Metadata_Site",
    ]
    listed = set()
    for k, (_, r) in zip(p.fields, df.iterrows(), strict=True):
        assert r["Metadata_Well"] == f"{k.row}{int(k.column):02d}"
        assert r["Metadata_Row"] == k.row and r["Metadata_Column"] == int(k.column)
        data = p.read_field(k)
        for c, ch in enumerate(p.channel_names):
            f = Path(r[f"PathName_{ch}"]) / r[f"FileName_{ch}"]
            assert f.is_file() and f.parent == out.resolve(), f
            assert r["Metadata_Well"] in f.name
            img = tifffile.imread(f)
            assert img.dtype == p.dtype and img.shape == p.field_shape
            np.testing.assert_array_equal(img, data[c])
            listed.add(f.name)
    assert listed == _tiffs(out)  # nothing else exported, nothing listed twice
    return df


@pytest.fixture(scope="module")
def ixm(tmp_path_factory, bbbc039_files):
    """Four real ImageXpress fields (symlinks), converted, then restored (saturation masks,
    Telea)."""
    root = tmp_path_factory.mktemp("ixm")
    files = sorted(bbbc039_files)[:4]
    src = symlink_fields(files, root / "tiffs")
    plate = root / "p.ome.zarr"
    convert(src, plate, channel_names=["DAPI"], cluster="threads", progress=False)
    restored = restore_plate(plate, root / "p_inpainted.ome.zarr")
    return root, src, files, plate, restored


def test_imagexpress_in_imagexpress_out(ixm, tmp_path):
    """The converted and the restored plate export under the source's own file names (GUIDs
    included); the converted plate's TIFFs hold the source's pixels; the restored plate's
    its own."""
    root, src, files, plate, restored = ixm
    before = _tree(src)
    for p, name in ((plate, "conv"), (restored, "rest")):
        out = tmp_path / name
        res = export_plate(p, out, cluster="threads", progress=False)
        assert res["layout"] == "imagexpress" and res["fields"] == 4 and res["files"] == 4
        assert _tiffs(out) == {f.name for f in files}
        df = _check_against_plate(out, p)
        assert set(df["Metadata_Site"]) == {
            int(re.search(r"_s(\d+)_w", f.name).group(1)) for f in files
        }
        assert (df["Metadata_Plate"] == open_plate(plate).name).all()
    for f in files:  # the converted plate's export is the source, pixel for pixel
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "conv" / f.name), tifffile.imread(f)
        )
        # and the pixel size travels: MetaMorph calibration in, OME-XML PhysicalSizeX out
        with tifffile.TiffFile(f) as tf:
            want = float(tf.pages.first.tags["UIC1tag"].value["XCalibration"])
        for d in ("conv", "rest"):
            with tifffile.TiffFile(tmp_path / d / f.name) as tf:
                got = re.search(r'PhysicalSizeX="([^"]+)"', tf.ome_metadata).group(1)
            assert float(got) == pytest.approx(want), (f, got, want)
    assert _tree(src) == before


def test_cellomics_in_cellomics_out(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "cello"
    src.mkdir()
    names = []
    for well in ("B03", "B04"):
        for field in (0, 1):
            for ch in (0, 1):
                n = f"MyPlate_{well}f{field:02d}d{ch}.tif"
                tifffile.imwrite(src / n, rng.integers(0, 60000, (24, 32), dtype=np.uint16))
                names.append(n)
    plate = tmp_path / "c.ome.zarr"
    convert(src, plate, channel_names=["DAPI", "GFP"], cluster="threads", progress=False)
    out = tmp_path / "out"
    res = export_plate(plate, out, cluster="threads", progress=False)
    assert res["layout"] == "cellomics" and res["files"] == 8
    assert _tiffs(out) == set(names)
    for n in names:
        np.testing.assert_array_equal(tifffile.imread(out / n), tifffile.imread(src / n))
    df = _check_against_plate(out, plate)
    assert sorted(df["Metadata_Site"]) == [0, 0, 1, 1]


def test_synthetic_plate_gets_imagexpress_names_and_converts_back(tmp_path):
    """A plate with no source folder: ImageXpress names {plate}_{well}_s{site}_w{n}.tif
    (channels numbered from 1, sites from 1); converting the export gives the plate back."""
    plate = make_plate(
        tmp_path / "syn.ome.zarr", rows=2, columns=2, fields=2, size=40, seed=4, artefacts=0.05
    )
    out = tmp_path / "out"
    res = export_plate(plate.path, out, cluster="threads", progress=False)
    want = {
        f"{plate.name}_{r}{c:02d}_s{s}_w{w}.tif"
        for r in "AB"
        for c in (1, 2)
        for s in (1, 2)
        for w in range(1, plate.n_channels + 1)
    }
    assert res["layout"] == "imagexpress" and _tiffs(out) == want
    _check_against_plate(out, plate.path)
    with tifffile.TiffFile(next(out.glob("*.tif"))) as tf:  # no pixel size: plain TIFFs
        assert not tf.is_ome
    back = tmp_path / "back.ome.zarr"
    convert(out, back, channel_names=plate.channel_names, cluster="threads", progress=False)
    b = open_plate(back)
    assert b.fields == plate.fields and b.channel_names == plate.channel_names
    for k in plate.fields:
        np.testing.assert_array_equal(b.read_field(k), plate.read_field(k))


def _one_error(proc, *needles):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_cli_refuses_what_it_must_not_write(ixm, tmp_path):
    root, src, files, plate, restored = ixm
    before_src, before_plate = _tree(src), _tree(plate)
    # a foreign non-empty folder: refused, --overwrite or not, left as it was
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    for extra in ((), ("--overwrite",)):
        _one_error(run_cli("export", restored, "-o", foreign, *extra), str(foreign), "refusing")
        assert _tree(foreign) == {"notes.txt": hashlib.sha256(b"keep").hexdigest()}
    # the source folder, a folder inside the plate, the plate itself
    _one_error(run_cli("export", restored, "-o", src), str(src))
    _one_error(run_cli("export", plate, "-o", plate / "x"), "inside the input")
    _one_error(run_cli("export", plate, "-o", plate, "--overwrite"), str(plate))
    _one_error(run_cli("export", tmp_path / "nope.ome.zarr", "-o", tmp_path / "o"), "nope.ome.zarr")
    assert _tree(src) == before_src and _tree(plate) == before_plate
    assert not (tmp_path / "o").exists()
    # an earlier export: refused without --overwrite, replaced with it
    out = tmp_path / "exp"
    ok = run_cli("export", restored, "-o", out, "--no-progress", check=True)
    assert ok.stdout.strip() == (
        f"wrote 4 TIFFs of 4 fields (imagexpress naming) to {out}; load file {out / LOAD_FILE}"
    )
    (out / "stray.txt").write_text("old")
    _one_error(run_cli("export", restored, "-o", out), str(out), "--overwrite")
    assert (out / "stray.txt").exists()
    run_cli("export", restored, "-o", out, "--overwrite", "--no-progress", check=True)
    assert not (out / "stray.txt").exists()
    _check_against_plate(out, restored)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "mine"]  # no lock, no partial


def test_load_data_column_names_are_cellprofiler_names():
    """CellProfiler image names: letters, digits, underscores, not starting with a digit,
    unique whatever the case."""
    from phirm_scale.stages.export import _column_name

    used: set[str] = set()
    got = [_column_name(c, used) for c in ("GFP-488", "gfp 488", "1st", "DAPI_clean", "?")]
    assert got == ["GFP_488", "gfp_488_2", "C1st", "DAPI_clean", "channel"]
