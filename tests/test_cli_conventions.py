"""CLI conventions: --version (single-sourced from pyproject), --json on every stage command,
--no-progress, --fail-below (exit 3), tab-separated tables when stdout is not a terminal,
convert's messages."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, ok=True):
    return run_cli(*args, check=ok)


def test_version_from_pyproject():
    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    p = cli("--version")
    assert p.stdout.strip() == f"phirm-scale {want}"
    from phirm_scale import __version__

    assert __version__ == want


@pytest.fixture(scope="module")
def chain(tmp_path_factory, bbbc039_files):
    """Three real fields (one of them in column 02 only... whatever the files say) converted,
    masked (saturation), inpainted, scored, every command with --json."""
    root = tmp_path_factory.mktemp("conv")
    src = root / "tiffs"
    src.mkdir()
    files = sorted(bbbc039_files)[:3]
    for f in files:
        (src / f.name).symlink_to(f)
    plate = root / "p.ome.zarr"
    out = {
        "convert": cli(
            "convert",
            src,
            plate,
            "--channel-names",
            "DAPI",
            "--cluster",
            "threads",
            "--no-progress",
            "--json",
        )
    }
    out["masks"] = cli(
        "masks",
        plate,
        "--method",
        "saturation",
        "--channel",
        "DAPI",
        "--cluster",
        "threads",
        "--no-progress",
        "--json",
    )
    out["inpaint"] = cli("inpaint", plate, "--cluster", "threads", "--no-progress", "--json")
    out["score"] = cli(
        "score",
        "--reference",
        f"{plate}:DAPI",
        "--reconstruction",
        f"{root / 'p_inpainted.ome.zarr'}:DAPI",
        "-o",
        root / "qc.zarr",
        "--cluster",
        "threads",
        "--no-progress",
        "--json",
    )
    return root, src, plate, files, out


@pytest.mark.slow
def test_json_on_every_stage(chain):
    root, src, plate, files, out = chain
    wells = {re.search(r"_([A-P]\d\d)_s", f.name).group(1) for f in files}
    conv = json.loads(out["convert"].stdout)
    assert conv["fields"] == 3 and conv["wells"] == len(wells) and conv["channels"] == ["DAPI"]
    masks = json.loads(out["masks"].stdout)
    assert masks["fields"] == 3 and masks["method"] == "saturation"
    inp = json.loads(out["inpaint"].stdout)
    assert inp["fields"] == 3 and inp["hole_pixels"] == masks["masked_pixels"]
    sc = json.loads(out["score"].stdout)
    assert sc["fields"] == 3 and 0.0 <= sc["phirm_mean"] <= 1.0
    for p in out.values():  # --no-progress: no bars on stderr
        assert "━" not in p.stderr


@pytest.mark.slow
def test_convert_summary_and_rerun_messages(chain):
    root, src, plate, files, out = chain
    cols = sorted(re.search(r"_[A-P](\d\d)_s", f.name).group(1) for f in files)
    summary = out["convert"].stderr
    assert f"columns {cols[0]}-{cols[-1]}" in summary
    again = cli(
        "convert", src, plate, "--channel-names", "DAPI", "--cluster", "threads", "--no-progress"
    )
    assert "nothing to do" in again.stderr and "wrote" not in again.stdout


@pytest.mark.slow
def test_fail_below_exit_3(chain):
    root, src, plate, files, out = chain
    mean = json.loads(out["score"].stdout)["phirm_mean"]
    args = [
        "score",
        "--reference",
        f"{plate}:DAPI",
        "--reconstruction",
        f"{root / 'p_inpainted.ome.zarr'}:DAPI",
        "-o",
        root / "qc2.zarr",
        "--cluster",
        "threads",
        "--no-progress",
        "--overwrite",
    ]
    hi = cli(*args, "--fail-below", mean + 0.01, ok=False)
    assert hi.returncode == 3 and "fail:" in hi.stderr
    assert cli(*args, "--fail-below", max(0.0, mean - 0.01)).returncode == 0


@pytest.mark.slow
def test_tables_not_cut_when_piped(chain, bbbc039_files):
    root, src, plate, files, out = chain
    p = cli(
        "score",
        "--reference",
        f"{plate}:DAPI",
        "--reconstruction",
        f"{root / 'p_inpainted.ome.zarr'}:DAPI",
        "-o",
        root / "qc3.zarr",
        "--cluster",
        "threads",
        "--no-progress",
    )
    lines = p.stdout.splitlines()
    assert "quantity\tvalue" in lines
    assert any(ln.startswith("PhIRM mean\t") for ln in lines)
    m = cli("metric", bbbc039_files[0], bbbc039_files[1])
    header = [ln for ln in m.stdout.splitlines() if ln.startswith("pair\t")]
    assert header and header[0].split("\t")[-3:] == ["PhIRM", "PSNR", "SSIM"]
    row = m.stdout.splitlines()[-1].split("\t")
    assert re.fullmatch(r"\d\.\d{4}", row[-3])  # a real number, not '0.00...'
