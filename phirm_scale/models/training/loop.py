"""The training loop: :func:`run_training` (``phirm-scale train``; :func:`..train.train`).

It checks the whole :class:`~.config.TrainConfig` and the tile store before anything is
written, then runs :meth:`Trainer.train_step <.trainer.Trainer.train_step>` on the batches of
:class:`~.data.StepBatches`, writes periodic checkpoints (:mod:`..checkpoint`, each holding
the resolved config), a CSV log per phase and validation scores (:mod:`.logs`,
:mod:`.validation`), and a plot. A run stopped anywhere resumes from its last checkpoint and
continues exactly as if uninterrupted. Never imports Dask or Zarr.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import time
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phirm_scale.errors import InputError
from phirm_scale.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from phirm_scale.models.registry import build_model, default_config, resolve_device
from phirm_scale.models.training.config import TrainConfig
from phirm_scale.models.training.data import (
    StepBatches,
    TileSource,
    artefact_pool,
    check_artefacts,
    open_split,
    prefetch,
    validation_set,
)
from phirm_scale.models.training.logs import CsvLog, plot_log
from phirm_scale.models.training.trainer import PendingMetrics, make_trainer
from phirm_scale.models.training.validation import validation_scores
from phirm_scale.progress import progress_bar

__all__ = ["prepared_batches", "run_training"]

log = logging.getLogger(__name__)


def _check_resume(config: TrainConfig, ck: Checkpoint, mask_spec: str) -> int | None:
    """Refuse settings that contradict the resumed run; return its batch size."""
    prev = ck.provenance.get("train") or {}
    if prev.get("stage") != config.stage:
        raise InputError(
            f"checkpoint {config.resume} was trained with stage {prev.get('stage')!r}, not "
            f"{config.stage!r} (use --init to change stage)"
        )
    batch_size = config.batch_size if config.batch_size is not None else prev.get("batch_size")
    if prev.get("batch_size") not in (None, int(batch_size or 0)):
        raise InputError(
            f"checkpoint {config.resume} was trained with batch size {prev['batch_size']}, not "
            f"{batch_size}: cannot resume identically"
        )
    if prev.get("masks") not in (None, mask_spec):
        raise InputError(
            f"checkpoint {config.resume} was trained with masks {prev['masks']!r}, not "
            f"{mask_spec!r}"
        )
    if prev.get("augment", "none") != config.augment:
        raise InputError(
            f"checkpoint {config.resume} was trained with augment {prev.get('augment', 'none')!r}, "
            f"not {config.augment!r}: cannot resume identically"
        )
    if prev.get("seed") not in (None, int(config.seed)):
        raise InputError(
            f"checkpoint {config.resume} was trained with seed {prev['seed']}, not {config.seed}"
        )
    return batch_size


def prepared_batches(
    net: Any, loader: Iterable[tuple[np.ndarray, np.ndarray]], *, ahead: bool
) -> Generator[dict[str, Any], None, None]:
    """Yield ``net.prepare(images, holes != 0, train=True)`` for each batch of ``loader``.

    With ``ahead`` (what ``train`` does on CUDA), one batch is prepared ahead on a thread of
    its own, and on CUDA on a stream of its own: the copies to the device and EdgeConnect's
    Canny (whose convergence checks wait for their stream) then never wait for the training
    step queued on the main stream, and the host can queue the next step at once. The training
    stream waits for the batch's event before using it, and the batch's memory is recorded as
    used by that stream (the caching allocator's rule for tensors shared across streams).

    Parameters
    ----------
    net : TorchInpaintModel
        The model being trained.
    loader : iterable of (images, holes)
        Numpy batches, in order (:meth:`StepBatches.epoch`).
    ahead : bool
        Prepare on a thread (and CUDA stream) of its own, one batch ahead.

    Returns
    -------
    Generator of dict
        The prepared batches, in order (close it to stop early).
    """
    if not ahead:
        for images, holes in loader:
            yield net.prepare(images, holes != 0, train=True)
        return
    dev = torch.device(net.device)
    side = torch.cuda.Stream(device=dev) if dev.type == "cuda" else None

    def work(item: tuple[np.ndarray, np.ndarray]) -> tuple[dict[str, Any], Any]:
        images, holes = item
        if side is None:
            return net.prepare(images, holes != 0, train=True), None
        with torch.cuda.stream(side):
            batch = net.prepare(images, holes != 0, train=True)
            done = torch.cuda.Event()
            done.record(side)
        return batch, done

    gen = prefetch(work, loader, workers=1, depth=1)  # one batch ahead: k + 1 while k trains
    try:
        for batch, done in gen:
            if done is not None:
                main = torch.cuda.current_stream(dev)
                main.wait_event(done)
                for v in batch.values():
                    if isinstance(v, torch.Tensor) and v.is_cuda:
                        v.record_stream(main)
            yield batch
    finally:
        gen.close()


def _version() -> str:
    try:
        from phirm_scale import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def run_training(config: TrainConfig, *, progress: bool = True) -> Path:
    """Train (or fine-tune, or resume) a learned inpainting model on a tile store.

    Parameters
    ----------
    config : TrainConfig
        The run's settings.
    progress : bool
        Show the optimisation steps of this call on stderr
        (:func:`phirm_scale.progress.progress_bar`, ``train``). Epoch summaries (and a line
        with the losses every minute) are this module's log records (info).

    Returns
    -------
    Path
        The final checkpoint (``out_dir/final.pt``).

    Raises
    ------
    InputError
        Unknown model, bad options or tile store, options contradicting ``resume``.
    CheckpointError
        Unusable ``resume``/``init`` checkpoint (e.g. another model).
    """
    from phirm_scale.masks import parse_mask_spec
    from phirm_scale.outputs import check_output_folder

    cfg = config.check()
    mask_spec = parse_mask_spec(cfg.masks)
    dev = resolve_device(cfg.device)

    # ---- checkpoints and settings (checked before anything is written)
    ck = None
    source_ck = cfg.resume if cfg.resume is not None else cfg.init
    if source_ck is not None:
        ck = load_checkpoint(source_ck, expected_model=cfg.model)
        net_config = dict(ck.config)
        if cfg.width is not None and int(cfg.width) != int(net_config["width"]):
            raise InputError(
                f"--width {cfg.width} contradicts the checkpoint's width {net_config['width']}"
            )
    else:
        net_config = default_config(cfg.model, width=cfg.width)
    resumed_bs = _check_resume(cfg, ck, mask_spec.spec) if cfg.resume is not None and ck else None
    cfg = cfg.resolved(batch_size=resumed_bs)
    assert cfg.epochs is not None and cfg.lr is not None and cfg.batch_size is not None
    epochs, lr = cfg.epochs, cfg.lr

    # ---- data
    train_set = open_split(cfg.tiles, "train")
    if len(train_set) == 0:
        raise InputError(f"{cfg.tiles}: the train split has no tiles")
    source = TileSource(train_set)
    pool = artefact_pool(train_set)
    check_artefacts(cfg.tiles, mask_spec, pool)
    val = validation_set(
        cfg.tiles,
        mask_spec,
        n_tiles=cfg.val_tiles,
        size=source.size,
        seed=cfg.seed,
        train_pool=pool,
    )
    bsz = min(cfg.batch_size, source.n)
    if cfg.model == "context-encoder" and bsz < 2:
        raise InputError(
            "context-encoder needs batches of at least 2 tiles (BatchNorm on a 1x1 "
            f"bottleneck); got {bsz}"
        )
    batches = StepBatches(
        source, mask_spec, batch_size=bsz, seed=cfg.seed, pool=pool, augment=cfg.augment
    )
    steps_per_epoch = batches.steps_per_epoch

    # ---- model and trainer
    net = build_model(cfg.model, net_config, dev)
    trainer = make_trainer(net, lr=lr, amp=cfg.amp, stage=cfg.stage, vgg_weights=cfg.vgg_weights)
    start_epoch, step = 0, 0
    if ck is not None:
        trainer.load(ck, optimizers=cfg.resume is not None)
        if cfg.resume is not None:
            start_epoch, step = ck.epoch, ck.step
            if step - start_epoch * steps_per_epoch not in range(steps_per_epoch + 1):
                raise InputError(
                    f"checkpoint {cfg.resume}: step {step} does not fit epoch {start_epoch} "
                    "of this tile store"
                )

    out_dir = Path(cfg.out_dir)
    check_output_folder(out_dir, inputs=[getattr(train_set, "path", None)])
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    tiles_attrs = {k: v for k, v in (train_set.attrs or {}).items() if k not in ("wells", "fields")}
    amp_name = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off"
    provenance: dict[str, Any] = {
        "tiles": str(Path(str(cfg.tiles))),
        "tiles_attrs": tiles_attrs,
        "n_train_tiles": source.n,
        "n_val_tiles": 0 if val is None else int(val[0].shape[0]),
        "train": {
            "epochs": epochs,
            "lr": lr,
            "batch_size": cfg.batch_size,
            "masks": mask_spec.spec,
            "seed": int(cfg.seed),
            "stage": cfg.stage,
            "amp": amp_name,
            "device": str(dev),
            "steps_per_epoch": steps_per_epoch,
            "vgg_weights": str(cfg.vgg_weights) if cfg.vgg_weights else None,
            "augment": cfg.augment,
        },
        "init": None,
        "versions": {"phirm_scale": _version(), "torch": torch.__version__},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if cfg.init is not None and ck is not None:
        provenance["init"] = {
            "path": str(cfg.init),
            "content_hash": ck.content_hash,
            "provenance": ck.provenance,
        }
    if cfg.resume is not None and ck is not None and ck.provenance.get("init"):
        provenance["init"] = ck.provenance["init"]
    recorded = cfg.to_dict()

    def save(path: Path, epoch_done: int) -> None:
        st = trainer.state()
        save_checkpoint(
            path,
            model=cfg.model,
            config=net_config,
            state_dicts=st["state_dicts"],
            optimizers=st["optimizers"],
            scaler=st["scaler"],
            epoch=epoch_done,
            step=step,
            provenance=provenance,
            train_config=recorded,
        )

    keep = step if cfg.resume is not None else None
    tlog = CsvLog(out_dir / "train_log.csv", keep_until_step=keep)
    vlog = CsvLog(out_dir / "val_log.csv", keep_until_step=keep)
    t0 = time.perf_counter()
    last_val_step = -1

    def validate(epoch_label: int) -> dict[str, float] | None:
        nonlocal last_val_step
        if val is None or last_val_step == step:
            return None
        scores = validation_scores(net, *val)
        elapsed = round(time.perf_counter() - t0, 3)
        vlog.write({"epoch": epoch_label, "step": step, "elapsed_s": elapsed, **scores})
        last_val_step = step
        return scores

    acc: dict[str, list[float]] = {}
    last_msg = t0

    def flush(epoch: int) -> None:
        if acc:
            row: dict[str, Any] = {
                "epoch": epoch,
                "step": step,
                "stage": cfg.stage or "",
                "lr": lr,
                "elapsed_s": round(time.perf_counter() - t0, 3),
            }
            row.update({k: float(np.mean(v)) for k, v in sorted(acc.items())})
            tlog.write(row)
            acc.clear()

    def scores_text(scores: dict[str, float]) -> str:
        return (
            f"val phirm {scores['phirm']:.4f} psnr {scores['psnr']:.2f} ssim {scores['ssim']:.4f}"
        )

    # the metrics of the last queued step, read (which waits for the device) only once the next
    # step is queued, so that the device never idles while the host prepares a step
    pending: list[tuple[int, int, PendingMetrics]] = []  # (step number, epoch, metrics)
    last_metrics: dict[str, float] = {}

    def settle() -> None:
        """Read the pending step's metrics into the log; stop if any is not finite."""
        nonlocal last_metrics
        if not pending:
            return
        n, ep, queued = pending.pop()
        metrics = queued.result()
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            save(out_dir / "checkpoints" / "diverged.pt", ep)
            raise InputError(
                f"training diverged at step {n} ({', '.join(bad)} not finite); lower --lr "
                f"(state after step {step} saved to checkpoints/diverged.pt)"
            )
        for k, v in metrics.items():
            acc.setdefault(k, []).append(v)
        last_metrics = metrics

    epoch = start_epoch
    stopped = False
    last_step = epochs * steps_per_epoch
    if cfg.max_steps is not None:
        last_step = min(last_step, int(cfg.max_steps))
    with progress_bar("train", max(0, last_step - step), enabled=progress) as advance:
        for epoch in range(start_epoch, epochs):
            j0 = step - epoch * steps_per_epoch
            tiles_ahead = batches.epoch(epoch, j0)
            loader = prepared_batches(net, tiles_ahead, ahead=dev.type == "cuda")
            try:
                for j in range(j0, steps_per_epoch):
                    if cfg.max_steps is not None and step >= cfg.max_steps:
                        stopped = True
                        break
                    batch = next(loader)
                    queued = trainer.train_step_async(batch)
                    step += 1
                    settle()  # the previous step's metrics, while this one runs
                    pending.append((step, epoch, queued))
                    advance()
                    if cfg.log_every and step % cfg.log_every == 0:
                        settle()
                        flush(epoch + 1)
                        if time.perf_counter() - last_msg > 60:
                            last_msg = time.perf_counter()
                            losses = ", ".join(
                                f"{k} {v:.4g}"
                                for k, v in sorted(last_metrics.items())
                                if k.startswith("g_")
                            )
                            log.info(
                                "epoch %d/%d step %d (%.0f s) %s",
                                epoch + 1,
                                epochs,
                                step,
                                last_msg - t0,
                                losses,
                            )
                    if cfg.save_every and step % cfg.save_every == 0 and j + 1 < steps_per_epoch:
                        settle()  # never save a diverged state as last.pt
                        save(out_dir / "checkpoints" / "last.pt", epoch)
            finally:  # also when a step raises (divergence, interrupt)
                loader.close()
                tiles_ahead.close()
            settle()
            if stopped:
                break
            flush(epoch + 1)
            due = cfg.val_every and (epoch + 1) % cfg.val_every == 0
            scores = validate(epoch + 1) if due else None
            if cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0:
                save(out_dir / "checkpoints" / f"epoch_{epoch + 1:04d}.pt", epoch + 1)
            save(out_dir / "checkpoints" / "last.pt", epoch + 1)
            msg = f"epoch {epoch + 1}/{epochs} step {step} ({time.perf_counter() - t0:.1f} s)"
            log.info("%s", msg + (" " + scores_text(scores) if scores else ""))
        else:
            epoch = epochs
    epochs_done = epoch if stopped else max(epoch, start_epoch)
    flush(epoch + 1 if stopped else epochs_done)
    scores = validate(epochs_done)
    if scores:
        log.info("final step %d: %s", step, scores_text(scores))
    final = out_dir / "final.pt"
    save(final, epochs_done)
    save(out_dir / "checkpoints" / "last.pt", epochs_done)
    try:
        plot_log(out_dir)
    except Exception as exc:  # noqa: BLE001 - a plot never fails a training run
        log.warning("could not plot the training log: %s", exc)
    return final
