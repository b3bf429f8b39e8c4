"""The README's shell examples run verbatim (issue 21).

Every ```bash block of README.md is split into commands (``\\``-continued lines joined) and
each is run with bash, in README order, in a fresh folder laid out as the README assumes:
``../shared`` beside it is the repository's ``../shared`` (the shipped BBBC039 fields in
``../shared/data``), and the virtual environment's ``bin`` is first on ``PATH`` (so
``phirm-scale`` is the one under test). Each must exit 0. The screen run's printed output must
be the one the README shows, word for word (whitespace aside: the README aligns the
tab-separated table by hand).

Skipped, each named below with why, and each must match exactly one README command (a new
command that cannot run here shows up as a failure, not as a silent skip).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import skip_without_bbbc039

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: (start of the command, why it is not run here)
SKIPPED = [
    ("make demo", "make: installs into .venv and runs the demo (tests/test_demo.py runs it)"),
    ("make test", "make: the whole test suite, which this test is part of"),
    ("phirm-scale run composite.ome.zarr -o composite_slurm", "--cluster slurm-cpu: a SLURM site"),
]


def _bash_commands(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)  # continuation lines, as bash joins them
        commands += [ln.strip() for ln in joined.splitlines() if ln.strip()]
    return [c for c in commands if not c.startswith("#")]


def _shown_output(text: str, command_start: str) -> list[list[str]]:
    """The plain ``` block right after the ```bash block holding ``command_start``."""
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)
    for i, (lang, body) in enumerate(blocks):
        if lang == "bash" and command_start in re.sub(r"\\\n\s*", "", body):
            lang_next, shown = blocks[i + 1]
            assert lang_next == "", "the README shows the output right after the command"
            return [ln.split() for ln in shown.splitlines() if ln.strip()]
    raise AssertionError(f"no ```bash block with {command_start!r} in the README")


def test_readme_commands_are_split_and_skipped_as_listed():
    commands = _bash_commands(README.read_text())
    for start, _why in SKIPPED:
        assert sum(c.startswith(start) for c in commands) == 1, start
    run = [c for c in commands if not any(c.startswith(s) for s, _ in SKIPPED)]
    assert run and all(c.startswith("phirm-scale ") for c in run)
    # continuation lines were joined: no command ends in a backslash or starts with an option
    assert not any(c.endswith("\\") or c.startswith("--") for c in commands)


def test_readme_shell_examples_run_verbatim(tmp_path):
    skip_without_bbbc039()
    text = README.read_text()
    work = tmp_path / "main"
    work.mkdir()
    (tmp_path / "shared").symlink_to((REPO.parent / "shared").resolve())
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "home"),  # nothing the examples write lands in the real home
    }
    ran = []
    for cmd in _bash_commands(text):
        if any(cmd.startswith(s) for s, _ in SKIPPED):
            continue
        proc = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", cmd],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-2000:])
        ran.append((cmd, proc))
    assert len(ran) >= 3
    # the one screen run prints what the README shows
    start = "phirm-scale run composite.ome.zarr -o composite_qc"
    ((_, screen),) = [(c, p) for c, p in ran if c.startswith(start)]
    printed = [ln.split() for ln in screen.stdout.splitlines() if ln.strip()]
    assert printed == _shown_output(text, start)
    # and wrote the outputs the README lists
    out = work / "composite_qc"
    for name in ("composite_inpainted.ome.zarr", "qc.zarr", "qc.csv", "qc.parquet"):
        assert (out / name).exists(), name
    for name in ("qc_fields.csv", "qc_fields.parquet", "report/index.html", "run.json"):
        assert (out / name).exists(), name
