"""The typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="phirm-scale",
    help=(
        "Restore high-content screening plates by generative inpainting and prove, field by "
        "field, that the biology was kept (PhIRM)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class CliError(Exception):
    """An error reported to the user as one line, exit code 2."""
