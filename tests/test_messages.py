"""What the commands say (issue 22, item 9): the hint for a screen without an artefact
channel, masks on a labelled plate, flags shown as flags in --help, --debug's exit status,
the Python snippets of README and the docs pages it moved into (docs/cli.md, ...) complete as
pasted, no reference to a document the repo lacks."""

from __future__ import annotations

import ast
import builtins
import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, skip_without_bbbc039, symlink_fields

from phirm_scale.errors import PlateError

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# the README and the pages its sections moved to (issue 21): their Python snippets are checked
README_PAGES = [
    README,
    *(
        REPO / "docs" / f"{p}.md"
        for p in ("cli", "qc", "metric", "clusters", "reliability", "benchmarks", "development")
    ),
]


def test_missing_artefact_channel_suggests_none(tmp_path, bbbc039_files):
    from phirm_scale.run import ScreenSettings, plan_screen

    src = symlink_fields(sorted(bbbc039_files)[:2], tmp_path / "plate1")
    settings = ScreenSettings(channel="DAPI", channel_names=("DAPI",))  # CFP by default
    with pytest.raises(PlateError) as err:
        plan_screen([src], tmp_path / "out", settings)
    msg = str(err.value)
    assert "--artefact-channel 'CFP' is not a channel" in msg
    assert "--artefact-channel none" in msg
    # the advice works: the same screen without an artefact channel plans
    ok = ScreenSettings(channel="DAPI", channel_names=("DAPI",), artefact_channel=None)
    assert plan_screen([src], tmp_path / "out", ok) is not None
    assert not (tmp_path / "out").exists()  # planning writes nothing


def test_masks_without_artefact_channel_suggests_saturation(tmp_path):
    from phirm_scale.plate import create_plate

    p = create_plate(
        tmp_path / "dapi.ome.zarr",
        rows=["A"],
        columns=["01"],
        fields=[("A", "01", 0)],
        channel_names=["DAPI"],
        shape=(32, 32),
        dtype=np.uint16,
    )
    p.write_field(p.fields[0], np.zeros((1, 32, 32), np.uint16))
    r = run_cli("masks", p.path, "--cluster", "threads", "--no-progress")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and "no channel 'CFP'" in line
    assert "--method saturation --channel" in line


def test_masks_on_a_labelled_plate_says_skipped(tmp_path):
    from phirm_scale.synthetic import make_plate

    plate = make_plate(tmp_path / "s.ome.zarr", rows=1, columns=2, fields=2, size=64).path
    args = ("masks", plate, "--cluster", "threads", "--no-progress")
    first = run_cli(*args, check=True)
    assert "written for 4 fields" in first.stdout and "skipped" not in first.stdout
    again = run_cli(*args, check=True)
    assert "skipped 4 fields (already labelled)" in again.stdout
    assert "written for 0 fields" not in again.stdout
    js = run_cli(*args, "--json", check=True)
    import json

    assert json.loads(js.stdout)["skipped"] == 4 and json.loads(js.stdout)["fields"] == 0


def test_flags_shown_without_a_value_in_help():
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
    for cmd in ((), ("convert",), ("masks",), ("run",)):
        out = run_cli(*cmd, "--help", env=env, check=True).stdout
        assert "--help" in out and "<bool>" not in out, cmd
    top = run_cli("--help", env=env, check=True).stdout
    (quiet,) = [ln for ln in top.splitlines() if "--quiet" in ln]
    assert "<" not in quiet.split("Print")[0]  # nothing between the flag and its help
    (verbose,) = [ln for ln in top.splitlines() if "--verbose" in ln]
    assert "<int>" not in verbose
    # still plain flags: they take no value
    assert run_cli("--quiet", "true", "--help", env=env).returncode == 2


def test_debug_exit_status_is_2_with_the_traceback(tmp_path):
    import tifffile

    const = tmp_path / "const.tif"
    tifffile.imwrite(const, np.zeros((16, 16), np.uint8))
    plain = run_cli("metric", const, const)
    debug = run_cli("--debug", "metric", const, const)
    assert plain.returncode == debug.returncode == 2  # the README: exit 2, --debug adds the
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr  # traceback
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _undefined_names(code: str) -> set[str]:
    tree = ast.parse(code)
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - bound


def _readme_python_blocks() -> list[str]:
    return [b for page in README_PAGES for b in _python_blocks(page.read_text())]


def test_readme_python_snippets_define_every_name():
    blocks = _readme_python_blocks()
    assert len(blocks) >= 4
    for code in blocks:
        assert not _undefined_names(code), code


def test_readme_python_snippets_run_as_pasted(tmp_path, bbbc039_files):
    """The metric and masks snippets, verbatim, in a folder laid out as the README's commands
    expect (``../shared/data`` beside it, ``bbbc039.ome.zarr`` converted as above)."""
    from phirm_scale.stages.convert import convert

    skip_without_bbbc039()
    work = tmp_path / "main"
    work.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(REPO.parent / "shared" / "data")
    fields = symlink_fields(sorted(bbbc039_files)[:3], tmp_path / "few")
    convert(
        fields, work / "bbbc039.ome.zarr", channel_names=["DAPI"], cluster="threads", progress=False
    )
    blocks = [b for b in _readme_python_blocks() if "tifffile.imread" in b]
    assert len(blocks) == 2  # docs/metric.md (PhIRM) and docs/cli.md (artefact masks)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        for code in blocks:
            exec(compile(code, "README-snippet", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
    from phirm_scale.plate import open_plate

    p = open_plate(work / "bbbc039.ome.zarr")
    assert all(p.has_label(k, "sat1") for k in p.fields)


def test_docs_cite_only_documents_the_repo_has():
    for doc in [README, *sorted((REPO / "docs").glob("*.md")), REPO / "CHANGELOG.md"]:
        for name in re.findall(r"[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b", doc.read_text()):
            assert (REPO / name).is_file() or (doc.parent / name).is_file(), (doc.name, name)
