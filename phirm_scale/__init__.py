"""phirm-scale: restore HCS plates by inpainting and score them with PhIRM."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
