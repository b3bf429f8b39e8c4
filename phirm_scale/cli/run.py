"""``phirm-scale run``: a whole screen in one command.

A thin shell over :func:`phirm_scale.run.run_screen`: its options build one
:class:`~phirm_scale.run.ScreenSettings`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from phirm_scale.cli._app import app, print_table


@app.command("run")
def run_cmd(
    sources: list[Path] = typer.Argument(
        ...,
        help="Plate folders of TIFFs, folders whose sub-folders are plates, or OME-Zarr plates.",
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder of the screen."),
    layout: str = typer.Option(
        "auto",
        help="TIFF file-name layout: auto, imagexpress, cellomics or regex (with --pattern).",
    ),
    pattern: str | None = typer.Option(
        None, help="Regular expression on file names with named groups well, field, channel."
    ),
    channel_names: str | None = typer.Option(
        None,
        help="Comma-separated channel names in channel order (w1,w2.. / d0,d1..), "
        "e.g. DAPI or DAPI,CFP.",
    ),
    channel: str = typer.Option("DAPI", help="Channel to restore and score."),
    artefact_channel: str = typer.Option(
        "CFP",
        help="Channel the artefact masks are made from (Otsu x 0.7), or 'none' for "
        "saturation masks on --channel (plates without an artefact channel).",
    ),
    model: str = typer.Option("telea", help="Inpainting model."),
    checkpoint: Path | None = typer.Option(None, help="Checkpoint of a learned model."),
    reference_channel: str | None = typer.Option(
        None,
        help="Channel of the source plate scored against the restored one (default: "
        "--channel itself).",
    ),
    dilate: int = typer.Option(
        0, help="Grow the artefact masks by this many pixels before inpainting."
    ),
    window: str = typer.Option("256", help="Scoring window edge in pixels, or 'field'."),
    threshold: float = typer.Option(0.9, help="Fields with a mean PhIRM below this are flagged."),
    hidden_threshold: float = typer.Option(
        8500.0,  # fieldqc.DEFAULT_HIDDEN_THRESHOLD (the CLI imports nothing heavy; a test checks)
        "--hidden-threshold",
        help="Without --reference-channel, flag fields whose holes are expected to hide at "
        "least this many nuclear pixels (docs/qc-without-ground-truth.md section 7b).",
    ),
    cluster: str = typer.Option(
        "local",
        help="Dask cluster, opened once for every stage: "
        "local, threads, tcp://host:port, or a dask-jobqueue YAML.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an output folder that holds a run with other settings."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as one JSON object on stdout (nothing else there)."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bars on stderr (-q: no messages either)."
    ),
    fail_below: float | None = typer.Option(
        None,
        help="Exit with status 3 when a plate's mean PhIRM (its mean self-check PhIRM "
        "without --reference-channel) is below this.",
    ),
) -> None:
    """Convert -> masks -> inpaint -> score every plate of a screen on one cluster.

    Then one QC dataset (qc.zarr, qc.csv, qc.parquet) and one report for the screen.
    """
    from phirm_scale.run import ScreenSettings, run_screen

    names = tuple(c.strip() for c in channel_names.split(",")) if channel_names else None
    settings = ScreenSettings(
        layout=layout,
        pattern=pattern,
        channel_names=names,
        channel=channel,
        artefact_channel=None if artefact_channel.strip().lower() == "none" else artefact_channel,
        model=model,
        checkpoint=checkpoint,
        reference_channel=reference_channel,
        window=window,
        threshold=threshold,
        dilate=dilate,
        hidden_threshold=hidden_threshold,
    )
    summary = run_screen(
        sources, out, settings, cluster=cluster, overwrite=overwrite, progress=progress
    )
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        sc = summary["screen"]
        rules = [f"residual artefact > {sc['residual_threshold']:g} px"]
        if sc["hidden_threshold"] is not None:  # the rule the QC records, when it does
            rules.append(f">= {sc['hidden_threshold']:g} nuclear px expected under the holes")
        if sc["flagged_by"].startswith("self-check"):
            rules.insert(0, f"self-check PhIRM < {sc['threshold']:g}")
        rule = (
            f"mean PhIRM < {sc['threshold']:g}"
            if sc["flagged_by"] == "PhIRM"
            else ", ".join(rules[:-1]) + " or " + rules[-1]
            if len(rules) > 1
            else rules[0]
        )
        cols = [
            "plate",
            "fields",
            "wells",
            "masked_fraction",
            "fields_flagged",
            "phirm_mean",
            "phirm_min",
            "phirm_p05",
            "windows_below",
            "ssim_mean",
            "restored_px",
            "selfcheck_mean",
        ]
        print_table(
            cols,
            [[r[c] for c in cols] for r in summary["plates"]],
            title=f"screen {summary['out']}: {sc['fields']} fields, "
            f"{sc['fields_flagged']} flagged ({rule})",
        )
        typer.echo(f"report {summary['report']}")
    if fail_below is not None:
        # the plate's figure: its self-check without a reference channel (PhIRM against the
        # damaged source counts every removed artefact as damage), else its mean PhIRM
        def figure(r: dict) -> tuple[str, float]:
            if r.get("selfcheck_mean") is not None:
                return "mean self-check PhIRM", float(r["selfcheck_mean"])
            return "mean PhIRM", float(r["phirm_mean"])

        low = [r for r in summary["plates"] if figure(r)[1] < fail_below]
        if low:
            what, value = figure(low[0])
            typer.echo(
                f"fail: plate {low[0]['plate']} {what} {value:.4f} < {fail_below:g}", err=True
            )
            raise typer.Exit(3)
