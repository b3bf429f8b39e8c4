"""``phirm-scale demo``: the main job on the shipped real data."""

from __future__ import annotations

from pathlib import Path

import typer

from phirm_scale.cli._app import app


@app.command("demo")
def demo_command(
    data: Path = typer.Option(
        None,
        "--data",
        help="Folder of real fields (default: "
        "../shared/data/bbbc039-rows-A-D beside the repository).",
    ),
    out: Path = typer.Option(Path("demo_out"), "-o", "--out", help="Output folder."),
    rows: int = typer.Option(2, "--rows", help="Plate rows."),
    columns: int = typer.Option(4, "--columns", help="Plate columns."),
    fields: int = typer.Option(2, "--fields", help="Fields per well."),
    artefacts: float = typer.Option(0.03, "--artefacts", help="Artefact area fraction."),
    model: str = typer.Option("telea", "--model", help="Inpainting model."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Checkpoint of a learned model."),
    cluster: str = typer.Option(
        "local", "--cluster", help="local | threads | tcp://host:port | jobqueue YAML."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Real BBBC039 fields + composited artefacts -> masks -> inpainting -> PhIRM QC + report."""
    from phirm_scale.cli._app import print_table
    from phirm_scale.demo import run_demo

    summary = run_demo(
        data,
        out=out,
        rows=rows,
        columns=columns,
        fields=fields,
        artefacts=artefacts,
        model=model,
        checkpoint=checkpoint,
        cluster=cluster,
        progress=progress,
    )
    print_table(
        [
            "plate",
            "PhIRM mean",
            "PhIRM min",
            "PhIRM p05",
            "< 0.9",
            "PhIRM mean (published code)",
            "SSIM mean",
        ],
        [
            [
                label,
                f"{row['mean']:.3f}",
                f"{row['min']:.3f}",
                f"{row['p05']:.3f}",
                f"{row['frac_below']:.1%}",
                f"{row['reference_mean']:.3f}",
                f"{row['ssim_mean']:.3f}",
            ]
            for label, row in ((k, summary[k]) for k in ("damaged", "restored"))
        ],
        title="PhIRM per 256 window against the clean ground truth (plate summary)",
    )
