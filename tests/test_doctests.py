"""The package's docstring examples run and hold (issue 21: doctests run with the suite).

Every module of phirm_scale is imported and its examples run with :mod:`doctest` (``__main__``
excepted: importing it starts the CLI). A failing example fails here naming its module.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import phirm_scale


def _modules() -> list[str]:
    names = [phirm_scale.__name__]
    for info in pkgutil.walk_packages(phirm_scale.__path__, prefix="phirm_scale."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return sorted(names)


MODULES = _modules()


def test_the_walk_finds_the_package():
    assert {"phirm_scale.metric", "phirm_scale.grid", "phirm_scale.masks._generators"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, module=module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_a_wrong_example_is_caught():
    """The runner as used above fails on a wrong example (so the test above can fail)."""
    test = doctest.DocTestParser().get_doctest(">>> 1 + 1\n3\n", {}, "wrong", "wrong.py", 0)
    runner = doctest.DocTestRunner()
    runner.run(test, out=lambda s: None)
    assert runner.summarize(verbose=False).failed == 1
