"""Shared fixtures: the real BBBC039 fields from ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbbc039-rows-A-D"


@pytest.fixture(scope="session")
def bbbc039_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real BBBC039 fields not found at {SHARED_DATA} (../shared/data beside the "
            "repository); these tests need them"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def bbbc039_files(bbbc039_dir) -> list[Path]:
    files = sorted(bbbc039_dir.glob("*.tif"))
    if not files:
        pytest.skip(f"no .tif files in {bbbc039_dir}")
    return files
