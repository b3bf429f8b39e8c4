"""``phirm-scale run``: a whole screen in one command.

A thin shell over :func:`phirm_scale.run.run_screen`: its options build one
:class:`~phirm_scale.run.ScreenSettings`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from phirm_scale.cli._app import app, print_table
from phirm_scale.flags import DEFAULT_HIDDEN_THRESHOLD, DEFAULT_SELFCHECK_THRESHOLD


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
    dilate: int | None = typer.Option(
        None,
        help="Dilation in pixels (a disk) of the artefact masks run makes, as `masks "
        "--dilation` (default 4, measured best on blurred-rim artefacts; 0: the paper's "
        "recipe).",
    ),
    window: str = typer.Option("256", help="Scoring window edge in pixels, or 'field'."),
    threshold: float = typer.Option(
        DEFAULT_SELFCHECK_THRESHOLD, help="Fields with a mean PhIRM below this are flagged."
    ),
    hidden_threshold: float = typer.Option(
        DEFAULT_HIDDEN_THRESHOLD,
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
        help="Exit with status 3 when a plate's mean PhIRM (without --reference-channel: "
        "its estimated PhIRM, self-check plus what the restoration left) is below this.",
    ),
) -> None:
    """Convert -> masks -> inpaint -> score every plate of a screen on one cluster.

    Then one QC dataset (qc.zarr; qc.csv, qc.parquet per window; qc_fields.csv,
    qc_fields.parquet per field) and one report for the screen.
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
            "estimated_phirm",
        ]
        print_table(
            cols,
            [[r[c] for c in cols] for r in summary["plates"]],
            title=f"screen {summary['out']}: {sc['fields']} fields, "
            f"{sc['fields_flagged']} flagged ({_flag_rule(sc)})",
        )
        typer.echo(f"report {summary['report']}")
    if fail_below is not None:
        # the plate's figure: without a reference channel its estimated PhIRM (self-check
        # plus what the restoration left; PhIRM against the damaged source counts every
        # removed artefact as damage), else its mean PhIRM
        def figure(r: dict) -> tuple[str, float]:
            if r.get("estimated_phirm") is not None:
                return "estimated PhIRM", float(r["estimated_phirm"])
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


def _flag_rule(screen: dict) -> str:
    """Say in words the rule that flagged the screen's fields (``summary['screen']``).

    Only the thresholds the QC records are named: with a reference channel a field is
    flagged by its mean PhIRM alone and no residual or hidden-nuclei threshold exists
    (they are None there).
    """

    def num(key: str) -> str | None:
        v = screen.get(key)
        return None if v is None else f"{float(v):g}"

    if screen["flagged_by"] == "PhIRM":
        return f"mean PhIRM < {num('threshold')}"
    rules = []
    if screen["flagged_by"].startswith("self-check"):
        rules.append(f"self-check PhIRM < {num('threshold')}")
    if num("residual_threshold") is not None:
        rules.append(f"residual artefact > {num('residual_threshold')} px")
    if num("hidden_threshold") is not None:
        rules.append(f">= {num('hidden_threshold')} nuclear px expected under the holes")
    if not rules:
        return screen["flagged_by"]
    return rules[0] if len(rules) == 1 else ", ".join(rules[:-1]) + " or " + rules[-1]
