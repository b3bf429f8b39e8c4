"""Commands of this group (registered on the shared typer app)."""

from __future__ import annotations

from phirm_scale.cli._app import app  # noqa: F401
