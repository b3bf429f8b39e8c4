"""``phirm-scale inpaint``: restore the artefact holes of a plate into a derived plate."""

from __future__ import annotations

from pathlib import Path

import typer

from phirm_scale.cli._app import app
from phirm_scale.flags import (
    DEFAULT_HIDDEN_THRESHOLD,
    DEFAULT_RESIDUAL_THRESHOLD,
    DEFAULT_SELFCHECK_DRAWS,
    DEFAULT_SELFCHECK_THRESHOLD,
)


@app.command("inpaint")
def inpaint_command(
    plate: Path = typer.Argument(..., help="Source HCS plate (*.ome.zarr); never modified."),
    out: Path = typer.Option(
        None, "-o", "--out", help="Derived plate (default: <plate>_inpainted.ome.zarr)."
    ),
    channel: str = typer.Option("DAPI", "--channel", help="Channel to restore (name or index)."),
    mask_label: str = typer.Option(
        "artefacts", "--mask-label", help="Label holding the holes (from `phirm-scale masks`)."
    ),
    model: str = typer.Option(
        "telea",
        "--model",
        help="telea, navier-stokes, biharmonic, context-encoder, deepfill-v2, edgeconnect "
        "(these three need --checkpoint), bbbc039-deepfill-v2 (shipped trained, no "
        "--checkpoint).",
    ),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Checkpoint of a learned model."),
    tile: int = typer.Option(256, "--tile", help="Tile size inside each field task."),
    overlap: int = typer.Option(32, "--overlap", help="Tile overlap in pixels."),
    batch_size: int = typer.Option(16, "--batch-size", help="Tiles per model call."),
    dilate: int = typer.Option(0, "--dilate", help="Grow holes by this many pixels first."),
    device: str = typer.Option("auto", "--device", help="Torch device on the workers."),
    gpu: bool = typer.Option(False, "--gpu", help="Run tasks only on workers with GPU=1."),
    cluster: str = typer.Option(
        "local", "--cluster", help="local | threads | tcp://host:port | jobqueue YAML."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace an existing output made by `inpaint` (recomputes every field).",
    ),
    allow_untrained: bool = typer.Option(
        False,
        "--allow-untrained",
        help="Run a learned model without --checkpoint (random weights; smoke tests only).",
    ),
    precision: str = typer.Option(
        "fp32", "--precision", help="Learned models: fp32 | bf16 | fp16 (autocast)."
    ),
    channels_last: bool = typer.Option(
        False, "--channels-last", help="Learned models: channels-last memory layout."
    ),
    compile_: bool = typer.Option(
        False, "--compile", help="Learned models: torch.compile the generator methods."
    ),
    canny: str = typer.Option(
        "auto",
        "--canny",
        help="EdgeConnect edges: auto (torch on CUDA, skimage on CPU) | torch | skimage.",
    ),
    gpu_tasks: int = typer.Option(
        8, "--gpu-tasks", help="Fields in flight per GPU worker (at most its threads)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as one JSON object on stdout."
    ),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Restore, then verify: self-check "
        "every restored field with holes (pseudo-holes shaped like its "
        "own, same model) and flag it below --selfcheck-threshold or "
        "above --residual-threshold; --on-flag decides what it holds.",
    ),
    on_flag: str = typer.Option(
        "keep",
        "--on-flag",
        help="For flagged fields (with --verify): "
        "keep (the restoration, flagged), fallback:MODEL (restore with "
        "MODEL instead, e.g. fallback:telea) or leave-masked (hole "
        "pixels 0, nothing invented).",
    ),
    verify_draws: int = typer.Option(
        DEFAULT_SELFCHECK_DRAWS, "--verify-draws", help="Self-check draws per field."
    ),
    selfcheck_threshold: float = typer.Option(
        DEFAULT_SELFCHECK_THRESHOLD,
        "--selfcheck-threshold",
        help="Flag below this self-check PhIRM.",
    ),
    residual_threshold: float = typer.Option(
        DEFAULT_RESIDUAL_THRESHOLD,
        "--residual-threshold",
        help="Flag above this many px of artefact left.",
    ),
    hidden_threshold: float = typer.Option(
        DEFAULT_HIDDEN_THRESHOLD,
        "--hidden-threshold",
        help="Flag fields whose holes are expected to hide at least this many nuclear pixels.",
    ),
) -> None:
    """Fill the holes of CHANNEL in every field of PLATE, one Dask task per field.

    Only hole pixels change; clean tiles are skipped. Provenance goes into the derived plate's
    attributes; a rerun with the same settings finishes only the missing fields.
    """
    from phirm_scale.stages.inpaint import inpaint_plate

    spec = None
    if verify:
        from phirm_scale.stages.selfcheck import VerifySpec

        spec = VerifySpec(
            on_flag=on_flag,
            draws=verify_draws,
            selfcheck_threshold=selfcheck_threshold,
            residual_threshold=residual_threshold,
            hidden_threshold=hidden_threshold,
        )
    elif on_flag != "keep":
        from phirm_scale.errors import PlateError

        raise PlateError("--on-flag needs --verify (flags come from the verification)")
    ch: str | int = int(channel) if channel.isdigit() else channel
    res = inpaint_plate(
        plate,
        out,
        channel=ch,
        mask_label=mask_label,
        model=model,
        checkpoint=checkpoint,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        dilate=dilate,
        device=device,
        gpu=gpu,
        cluster=cluster,
        overwrite=overwrite,
        precision=precision,
        channels_last=channels_last,
        compile=compile_,
        canny=canny,
        gpu_tasks=gpu_tasks,
        allow_untrained=allow_untrained,
        progress=progress,
        verify=spec,
    )
    if as_json:
        from phirm_scale.cli._app import echo_json

        echo_json(res)
        return
    typer.echo(
        f"{res['out']}: {res['fields']} fields inpainted ({res['skipped']} already "
        f"done), {res['tiles_inpainted']}/{res['tiles_total']} tiles had holes, "
        f"{res['hole_pixels']} hole pixels"
    )
    if verify:
        typer.echo(
            f"verified: {len(res['flagged'])} fields flagged"
            + "".join(
                f"\n  flagged {x['field']}: code {x['flag']}, {x['action']}" for x in res["flagged"]
            )
        )
