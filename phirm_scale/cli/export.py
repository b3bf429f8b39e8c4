"""``phirm-scale export``: a plate's fields as TIFFs in its source's naming, with a LoadData CSV."""

from __future__ import annotations

from pathlib import Path

import typer

from phirm_scale.cli._app import app, echo_json


@app.command("export")
def export_cmd(
    plate: Path = typer.Argument(..., help="OME-Zarr plate to export (e.g. a restored plate)."),
    out: Path = typer.Option(
        ...,
        "-o",
        "--out",
        help="Folder to write (absent or empty; an earlier export with --overwrite).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier export in the folder (nothing else)."
    ),
    cluster: str = typer.Option(
        "threads", "--cluster", help="threads | local | tcp://host:port | jobqueue YAML."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as one JSON object on stdout."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Write every field and channel of PLATE as a TIFF, named as its source's files were.

    ImageXpress in, ImageXpress out (Cellomics likewise; ImageXpress names for plates without
    a named source layout), plus load_data.csv for CellProfiler's LoadData module.
    """
    from phirm_scale.stages.export import export_plate

    summary = export_plate(plate, out, overwrite=overwrite, cluster=cluster, progress=progress)
    if as_json:
        echo_json(summary)
    else:
        typer.echo(
            f"wrote {summary['files']} TIFFs of {summary['fields']} fields "
            f"({summary['layout']} naming) to {summary['out']}; load file {summary['load_data']}"
        )
