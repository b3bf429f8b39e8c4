"""``phirm-scale train`` and ``import-weights``: thin shells over the Python API.

``train`` builds a :class:`~phirm_scale.models.train.TrainConfig` from its options and calls
:func:`phirm_scale.models.train.train`; ``import-weights`` calls
:mod:`phirm_scale.models.importers`. Heavy imports (torch) happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from phirm_scale.cli._app import app


@app.command("train")
def train_cmd(
    model: str = typer.Option(
        ..., "--model", "-m", help="context-encoder, deepfill-v2 or edgeconnect."
    ),
    tiles: str = typer.Option(
        ..., "--tiles", help="Tile store from `phirm-scale tiles` (train + val splits)."
    ),
    out: Path = typer.Option(
        ...,
        "-o",
        "--out",
        help="Run folder: checkpoints/, final.pt, train_log.csv, val_log.csv, training.png.",
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Epochs (paper: CE 200, DeepFill v2 20, EdgeConnect 68)."
    ),
    lr: float | None = typer.Option(
        None,
        "--lr",
        help="Generator learning rate (paper: CE 2e-4, DeepFill v2 1e-4, EdgeConnect 1e-4).",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        "-b",
        help="Tiles per step (default: CE 64, DeepFill v2 16, EdgeConnect 8).",
    ),
    masks: str = typer.Option(
        "mix",
        "--masks",
        help="Masks drawn on the fly: mix, rect, rect:LO-HI, strokes, strokes+box, artefacts.",
    ),
    stage: str | None = typer.Option(
        None, "--stage", help="EdgeConnect stage: edge, inpaint or joint (default joint)."
    ),
    width: int | None = typer.Option(
        None,
        "--width",
        help="Base channels of a new network (default: the paper's; small for smoke runs).",
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue this run from a checkpoint (weights, optimisers, step)."
    ),
    init: Path | None = typer.Option(
        None,
        "--init",
        help=(
            "Start from these weights (fine-tuning; imported official weights; EdgeConnect "
            "inpaint stage after edge)."
        ),
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", help="Stop after this many steps in total (smoke runs)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of shuffling and masks."),
    device: str = typer.Option(
        "auto", "--device", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N."
    ),
    amp: str = typer.Option(
        "auto",
        "--amp",
        help="Mixed precision on GPU: auto (bf16 where supported), bf16, fp16, off. Never on CPU.",
    ),
    vgg_weights: Path | None = typer.Option(
        None,
        "--vgg-weights",
        help=(
            "Local VGG-19 state dict: enables EdgeConnect's perceptual/style losses (never "
            "downloaded)."
        ),
    ),
    val_every: int = typer.Option(
        1, "--val-every", help="Validate every N epochs (0: only at the end)."
    ),
    val_tiles: int = typer.Option(
        64, "--val-tiles", help="Validation tiles scored (first N of the val split)."
    ),
    save_every: int = typer.Option(
        1000,
        "--save-every",
        help="Also write checkpoints/last.pt every N steps (0: epoch ends only).",
    ),
    log_every: int = typer.Option(10, "--log-every", help="Steps averaged per train_log.csv row."),
    augment: str = typer.Option(
        "none",
        "--augment",
        help="Training tiles: none, or dihedral (each turned by one of the 8 symmetries of the "
        "square, seeded per step).",
    ),
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Progress of the steps on stderr (-q: no epoch lines either).",
    ),
) -> None:
    """Train a learned inpainting model on a tile store with masks drawn on the fly."""
    from phirm_scale.models.train import TrainConfig, train

    config = TrainConfig(
        model=model,
        tiles=tiles,
        out_dir=out,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        masks=masks,
        seed=seed,
        device=device,
        resume=resume,
        init=init,
        max_steps=max_steps,
        val_every=val_every,
        width=width,
        stage=stage,
        vgg_weights=vgg_weights,
        amp=amp,
        val_tiles=val_tiles,
        save_every=save_every,
        log_every=log_every,
        augment=augment,
    )
    final = train(config, progress=progress)  # epoch lines are log records (stderr; -q hides)
    typer.echo(f"wrote {final}")


@app.command("import-weights")
def import_weights_cmd(
    kind: str = typer.Argument(..., help="edgeconnect or deepfill-v2."),
    files: list[Path] = typer.Argument(
        ...,
        help=(
            "EdgeConnect: EdgeModel_gen.pth and/or InpaintingModel_gen.pth; DeepFill v2: "
            "states.pth."
        ),
    ),
    out: Path = typer.Option(..., "-o", "--out", help="phirm-scale checkpoint to write (.pt)."),
) -> None:
    """Convert official (RGB) EdgeConnect / DeepFill v2 weights to a single-channel checkpoint."""
    from phirm_scale.models.importers import import_deepfill_v2, import_edgeconnect

    if kind == "edgeconnect":
        edge = next((f for f in files if "edge" in f.name.lower()), None)
        inpaint = next((f for f in files if "inpaint" in f.name.lower()), None)
        if edge is None and inpaint is None and len(files) == 1:
            edge = files[0]
        digest = import_edgeconnect(out, edge=edge, inpaint=inpaint)
    elif kind == "deepfill-v2":
        if len(files) != 1:
            from phirm_scale.errors import InputError

            raise InputError("deepfill-v2 import takes exactly one states.pth file")
        digest = import_deepfill_v2(files[0], out)
    else:
        from phirm_scale.errors import InputError

        raise InputError(f"unknown import kind {kind!r}; known: edgeconnect, deepfill-v2")
    typer.echo(f"wrote {out} (content hash {digest[:12]})")
