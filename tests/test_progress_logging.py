"""One progress/logging path (issue 13): ``--quiet``, ``--verbose``, plain progress lines when
stderr is not a terminal, and a library that prints nothing on stdout when called from Python.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import run_cli

PLAIN_PROGRESS = re.compile(r"^convert: (\d+)/(\d+) \((\d+)%\) [\d.]+ s$")


def cli(*args):
    return run_cli(*args)


def tiffs(folder: Path, seed: int = 0, wells=("A01", "A02")) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for well in wells:
        for c in (1, 2):
            a = rng.integers(0, 4000, (24, 31), dtype=np.uint16)
            tifffile.imwrite(folder / f"P1_{well}_s1_w{c}.tif", a)
    return folder


def convert_args(src: Path, out: Path, *extra) -> list:
    return ["convert", src, out, "--channel-names", "DAPI,CFP", "--cluster", "threads", *extra]


def test_default_shows_info_and_plain_progress_lines(tmp_path):
    p = cli(*convert_args(tiffs(tmp_path / "src"), tmp_path / "o.ome.zarr"))
    assert p.returncode == 0, p.stderr
    err = p.stderr.splitlines()
    # the plate takes the folder's name; the file names' plate is said beside it
    assert err[0].startswith("layout imagexpress: plate 'src' (file names say 'P1'), 2 wells"), (
        p.stderr
    )
    # stderr is a pipe: plain lines, no bar; the last one says all fields are done
    assert "━" not in p.stderr
    progress = [m for m in map(PLAIN_PROGRESS.match, err) if m]
    assert progress and progress[-1].groups() == ("2", "2", "100")
    assert p.stdout.startswith("wrote ")
    assert "task(s) on" not in p.stderr  # debug lines only with --verbose


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_only_the_result(tmp_path, where):
    src = tiffs(tmp_path / "src")
    out = tmp_path / "o.ome.zarr"
    args = convert_args(src, out, "--json")
    p = cli("-q", *args) if where == "before" else cli(*args, "--quiet")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert json.loads(p.stdout)["fields"] == 2  # one JSON object, nothing else
    # the table result too: a rerun is up to date, and says nothing but the JSON
    again = cli("-q", *args)
    assert again.stderr == "" and json.loads(again.stdout)["up_to_date"] is True


def test_quiet_keeps_the_error_line(tmp_path):
    out = tmp_path / "o.ome.zarr"
    assert cli("-q", *convert_args(tiffs(tmp_path / "src1", 1), out)).returncode == 0
    p = cli("-q", *convert_args(tiffs(tmp_path / "src2", 2), out, "--json"))
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(out) in lines[0]
    assert "output exists" in lines[0]


def test_verbose_shows_the_stage_debug_lines(tmp_path):
    p = cli("-v", *convert_args(tiffs(tmp_path / "src"), tmp_path / "o.ome.zarr", "--no-progress"))
    assert p.returncode == 0, p.stderr
    debug = [ln for ln in p.stderr.splitlines() if ln.startswith("phirm_scale.stages._runner: ")]
    assert debug == ["phirm_scale.stages._runner: convert: 2 task(s) on the threaded scheduler"]
    assert not any(PLAIN_PROGRESS.match(ln) for ln in p.stderr.splitlines())  # --no-progress


def test_library_calls_print_nothing_on_stdout(tmp_path, capsys, caplog):
    from phirm_scale.qc import write_qc
    from phirm_scale.report import write_report
    from phirm_scale.stages.convert import convert
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.masks import make_artefact_masks
    from phirm_scale.stages.score import score_plates

    src = tiffs(tmp_path / "src")
    plate = tmp_path / "p.ome.zarr"
    with caplog.at_level(logging.DEBUG, logger="phirm_scale"):
        # progress on (the default): bars and lines go to stderr, never stdout
        convert(src, plate, channel_names=["DAPI", "CFP"], cluster="threads")
        convert(src, plate, channel_names=["DAPI", "CFP"], cluster="threads")  # up to date
        make_artefact_masks(plate, channel="CFP", cluster="threads")
        inpaint_plate(plate, tmp_path / "r.ome.zarr", cluster="threads")
        ds = score_plates(f"{plate}:DAPI", f"{tmp_path / 'r.ome.zarr'}:DAPI", window="field")
        write_qc(ds, tmp_path / "qc.zarr", csv=tmp_path / "qc.csv")
        write_report(tmp_path / "qc.zarr", tmp_path / "report")
    assert capsys.readouterr().out == ""
    said = [r.getMessage() for r in caplog.records if r.name == "phirm_scale.stages.convert"]
    assert any("nothing to do" in m for m in said)  # messages went to the logger


def test_library_demo_prints_nothing_on_stdout(tmp_path, capsys, bbbc039_dir):
    from phirm_scale.demo import run_demo

    res = run_demo(
        bbbc039_dir, out=tmp_path / "demo", rows=1, columns=1, fields=1, cluster="threads"
    )
    assert capsys.readouterr().out == ""
    assert set(res) >= {"damaged", "restored"}
