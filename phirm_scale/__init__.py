"""phirm-scale: restore HCS plates by inpainting and score them with PhIRM."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:  # single source: pyproject.toml's [project] version, through the installed metadata
    __version__ = _version("phirm-scale")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
