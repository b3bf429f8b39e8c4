"""The flag rule has one home (phirm_scale.flags, issue 21): the QC's vectorised flags and
restore-then-verify's per-field flag are the same rule, and no module keeps its own copy of
the default thresholds."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import phirm_scale
from phirm_scale import flags
from phirm_scale.errors import InputError
from phirm_scale.fieldqc import flag_code
from phirm_scale.qc import flag_fields

PACKAGE = Path(phirm_scale.__file__).parent

_sc = st.one_of(st.just(math.nan), st.floats(0.0, 1.0))
_area = st.one_of(st.just(math.nan), st.floats(0.0, 20000.0))


@settings(max_examples=60, deadline=None)
@given(
    fields=st.lists(
        st.tuples(_sc, st.floats(0.0, 200.0), st.booleans(), _area), min_size=1, max_size=6
    ),
    sc_thr=st.floats(0.5, 0.99),
    res_thr=st.floats(1.0, 100.0),
    hid_thr=st.floats(1.0, 10000.0),
)
def test_qc_flags_are_the_per_field_rule(fields, sc_thr, res_thr, hid_thr):
    """flag_fields (a plate's Dataset) gives every field the code flag_code gives it alone."""
    n = len(fields)
    sc, res, holes, hid = (np.array(v, dtype=np.float64) for v in zip(*fields, strict=True))
    ds = xr.Dataset(
        {
            "phirm": (("row", "column", "field", "window"), np.ones((1, 1, n, 2))),
            "selfcheck_phirm": (
                ("row", "column", "field", "window"),
                np.repeat(sc[None, None, :, None], 2, axis=3),
            ),
            "masked_fraction_field": (("row", "column", "field"), (0.1 * holes)[None, None]),
            "residual_artefact_area": (("row", "column", "field"), res[None, None]),
            "expected_hidden_nuclear_area": (("row", "column", "field"), hid[None, None]),
        },
        coords={"row": ["A"], "column": ["01"], "field": np.arange(n), "window": [0, 1]},
    )
    got = flag_fields(
        ds, selfcheck_threshold=sc_thr, residual_threshold=res_thr, hidden_threshold=hid_thr
    )["flag"].values.ravel()
    want = [
        flag_code(
            s,
            r,
            bool(h),
            hidden_area=0.0 if math.isnan(a) else a,
            selfcheck_threshold=sc_thr,
            residual_threshold=res_thr,
            hidden_threshold=hid_thr,
        )
        for s, r, h, a in fields
    ]
    assert got.tolist() == [float(w) for w in want]


def test_flag_codes_by_hand():
    holes = np.array([True, True, True, False, True])
    code = flags.flag_codes(
        holes,
        selfcheck_phirm=np.array([0.95, 0.5, np.nan, 0.1, 0.95]),
        residual_area=np.array([0.0, 51.0, 0.0, 60.0, 50.0]),
        hidden_area=np.array([8500.0, 0.0, 0.0, 9e9, 8499.0]),
    )
    # 8 at least 8500; 1 + 2; 4 (no pseudo-hole); 2 only (no holes: nothing else); nothing
    assert code.tolist() == [8, 3, 4, 2, 0]
    # a measure not made sets none of its bits
    assert flags.flag_codes(holes).tolist() == [0] * 5
    assert flags.flag_names(11) == [
        "selfcheck_below_threshold",
        "residual_artefact_above_threshold",
        "hidden_nuclei_above_threshold",
    ]
    for bad in (0, -1.0, math.nan, math.inf, True, "8500"):
        with pytest.raises(InputError, match="--hidden-threshold"):
            flags.flag_codes(holes, hidden_threshold=bad)


def _threshold_literals() -> list[str]:
    """``file:line name=value`` of every parameter or field named like a flag setting whose
    default is a number written out rather than taken from phirm_scale.flags."""
    defaults = {
        flags.DEFAULT_SELFCHECK_THRESHOLD,
        flags.DEFAULT_RESIDUAL_THRESHOLD,
        flags.DEFAULT_HIDDEN_THRESHOLD,
    }
    names = ("threshold", "draws")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "flags.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            pairs: list[tuple[str, ast.expr | None]] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                pos = a.posonlyargs + a.args
                pairs += list(
                    zip(
                        [p.arg for p in pos[len(pos) - len(a.defaults) :]],
                        a.defaults,
                        strict=True,
                    )
                )
                pairs += [(p.arg, d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                pairs.append((node.target.id, node.value))
            for name, default in pairs:
                if not any(name.endswith(n) or name == n for n in names):
                    continue
                if (
                    isinstance(default, ast.Constant)
                    and isinstance(default.value, (int, float))
                    and not isinstance(default.value, bool)
                    and (
                        default.value in defaults or (name.endswith("draws") and default.value == 4)
                    )
                ):
                    found.append(f"{path.relative_to(PACKAGE)}:{default.lineno} {name}")
    return found


def test_no_module_keeps_its_own_copy_of_the_flag_defaults():
    """0.9, 50, 8500 and the 4 draws as defaults of thresholds/draws live in flags only (the
    typer options' defaults are call arguments and are checked by their values below)."""
    assert _threshold_literals() == []


def test_cli_defaults_are_the_flag_defaults():
    import inspect

    from phirm_scale.cli.inpaint import inpaint_command
    from phirm_scale.cli.run import run_cmd
    from phirm_scale.cli.score import score_command

    def default(fn, name):
        return inspect.signature(fn).parameters[name].default.default

    assert default(run_cmd, "threshold") == flags.DEFAULT_SELFCHECK_THRESHOLD
    assert default(score_command, "selfcheck_threshold") == flags.DEFAULT_SELFCHECK_THRESHOLD
    assert default(score_command, "residual_threshold") == flags.DEFAULT_RESIDUAL_THRESHOLD
    assert default(inpaint_command, "verify_draws") == flags.DEFAULT_SELFCHECK_DRAWS
    assert default(inpaint_command, "residual_threshold") == flags.DEFAULT_RESIDUAL_THRESHOLD
    for fn in (run_cmd, score_command, inpaint_command):
        assert default(fn, "hidden_threshold") == flags.DEFAULT_HIDDEN_THRESHOLD
