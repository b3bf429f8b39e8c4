"""The paper's experiments as commands: ``tiles``, ``evaluate`` and ``validate-metric``.

``tiles`` builds the patch dataset (3.5), ``evaluate`` scores models x mask families (4.2)
and ``validate-metric`` scores manipulated images (4.1).

Thin shells over :mod:`phirm_scale.tiles`, :mod:`phirm_scale.evaluate` and
:mod:`phirm_scale.validate_metric`; heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from phirm_scale.cli._app import app


@app.command("tiles")
def tiles_cmd(
    plate: Path = typer.Argument(..., help="Source OME-Zarr HCS plate (.ome.zarr)."),
    out: Path = typer.Option(..., "-o", "--out", help="Tile store to write (TILES.zarr)."),
    channel: str = typer.Option(
        "0", "--channel", "-c", help="Channel name or index to cut tiles from (e.g. DAPI_clean)."
    ),
    size: int = typer.Option(256, "--size", help="Tile side in pixels (paper: 256)."),
    stride: int | None = typer.Option(
        None, "--stride", help="Step between tiles; default = size (no overlap)."
    ),
    split: str = typer.Option(
        "0.8,0.1,0.1",
        "--split",
        help="train,val,test fractions of the WELLS (no well in two splits).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the well split."),
    label: str | None = typer.Option(
        None,
        "--label",
        help="Also store artefact masks from this field label ('artefacts' or 'artefacts_true').",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing tile store."),
) -> None:
    """Cut a plate channel into min-max normalised uint8 tiles, split by well (paper 3.5)."""
    from phirm_scale.errors import InputError
    from phirm_scale.plate import open_plate
    from phirm_scale.tiles import write_tiles

    try:
        fr = tuple(float(v) for v in split.split(","))
    except ValueError:
        raise InputError(
            f"--split must be three comma-separated fractions; got {split!r}"
        ) from None
    ch: str | int = int(channel) if channel.isdigit() else channel
    ts = write_tiles(
        open_plate(plate),
        out,
        channel=ch,
        size=size,
        stride=stride,
        split=fr,
        seed=seed,
        label=label,
        overwrite=overwrite,
    )
    for name, n in ts.counts.items():
        typer.echo(f"{name}: {n} tiles from {len(ts.split_wells[name])} wells")
    typer.echo(f"wrote {out}")


@app.command("evaluate")
def evaluate_cmd(
    models: str = typer.Option(
        "telea,context-encoder,deepfill-v2,edgeconnect",
        "--models",
        help="Comma-separated model names (see the model registry).",
    ),
    checkpoints: str = typer.Option(
        "",
        "--checkpoints",
        help="Comma-separated name=path pairs, e.g. context-encoder=ce.pt,deepfill-v2=df.pt "
        "('ce', 'deepfill', 'edge' abbreviations accepted).",
    ),
    tiles: str = typer.Option(
        ..., "--tiles", help="Tile store, optionally with a split: TILES.zarr:test."
    ),
    masks: str = typer.Option(
        "rect:10-20,rect:20-30,rect:30-40,rect:40-50,strokes,artefacts",
        "--masks",
        help="Comma-separated mask families.",
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (CSV, table, plots)."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N test tiles."),
    seed: int = typer.Option(0, "--seed", help="Seed of the masks (same masks for every model)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Tiles per model call."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    allow_untrained: bool = typer.Option(
        False,
        "--allow-untrained",
        help="Run learned models without a checkpoint (random weights; for smoke tests only).",
    ),
    examples: int = typer.Option(3, "--examples", help="Example panels per mask family."),
) -> None:
    """Run the paper's experiment: PhIRM (both modes), PSNR and SSIM per model x mask family."""
    from phirm_scale.evaluate import evaluate, format_table, parse_checkpoints

    names = [m.strip() for m in models.split(",") if m.strip()]
    specs = [m.strip() for m in masks.split(",") if m.strip()]
    res = evaluate(
        names,
        tiles,
        masks=specs,
        checkpoints=parse_checkpoints(checkpoints),
        out_dir=out,
        limit=limit,
        seed=seed,
        batch_size=batch_size,
        device=device,
        allow_untrained=allow_untrained,
        n_examples=examples,
    )
    typer.echo(format_table(res))
    typer.echo(f"wrote {out}")


@app.command("validate-metric")
def validate_metric_cmd(
    fields: Path = typer.Argument(..., help="Folder of nuclei fields (TIFF/PNG), e.g. BBBC039."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (CSV and plots)."),
    limit: int | None = typer.Option(
        None, "--limit", help="Use only the first N fields (by name)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the manipulations."),
) -> None:
    """Paper 4.1: PhIRM, PSNR and SSIM of nuclei removed / eroded / artefacts added."""
    from phirm_scale.validate_metric import validate_metric, validation_table

    df = validate_metric(fields, out_dir=out, limit=limit, seed=seed)
    s = validation_table(df)
    flat = s.xs("mean", axis=1, level=1)[["phirm", "phirm_reference", "psnr", "ssim"]]
    typer.echo(f"mean over {df['field'].nunique()} field(s):")
    typer.echo(flat.round(3).to_string())
    typer.echo(f"wrote {out}")
