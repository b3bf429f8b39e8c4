"""``phirm-scale demo``: the main job on the shipped real data."""

from __future__ import annotations

from pathlib import Path

import typer

from phirm_scale.cli._app import app


@app.command("demo")
def demo_command(
    data: Path = typer.Option(None, "--data", help="Folder of real fields (default: "
                              "../shared/data/bbbc039-rows-A-D beside the repository)."),
    fields: int = typer.Option(4, "--fields", help="How many fields to use."),
) -> None:
    """Score real BBBC039 fields against copies with synthetic damage and print a table."""
    from phirm_scale.demo import run_demo

    run_demo(data, n_fields=fields)
