"""Train a learned inpainting model: ``train(TrainConfig(model, tiles, out_dir, ...))``.

The entry of ``phirm-scale train``. The pieces live in :mod:`phirm_scale.models.training`
(config, trainers, data, validation, logs, loop). Never imports Dask or Zarr.
"""

from __future__ import annotations

from pathlib import Path

from phirm_scale.models.training import (
    EDGECONNECT_STAGES,
    PAPER_DEFAULTS,
    TrainConfig,
    make_trainer,
    plot_log,
    validation_scores,
)
from phirm_scale.models.training.loop import run_training

__all__ = [
    "EDGECONNECT_STAGES",
    "PAPER_DEFAULTS",
    "TrainConfig",
    "make_trainer",
    "plot_log",
    "train",
    "validation_scores",
]


def train(config: TrainConfig, *, progress: bool = True) -> Path:
    """Train (or fine-tune, or resume) a learned inpainting model on a tile store.

    Checkpoints go to ``config.out_dir`` (``checkpoints/epoch_NNNN.pt``, ``checkpoints/last.pt``,
    ``final.pt``), each holding ``config`` completed with the paper's schedule
    (:meth:`TrainConfig.from_checkpoint` reads it back); logs to ``train_log.csv`` and
    ``val_log.csv``, their plot to ``training.png``. The batches of step ``j`` of epoch ``e``
    depend only on ``(seed, e, j)``, so a resumed run ends exactly as an uninterrupted one.

    Parameters
    ----------
    config : TrainConfig
        The run's settings (see :class:`TrainConfig`).
    progress : bool
        Show the optimisation steps on stderr (:func:`phirm_scale.progress.progress_bar`,
        like the stages; nothing with False or the CLI's ``--quiet``). Epoch summaries are log
        records of ``phirm_scale.models.training.loop`` (info).

    Returns
    -------
    Path
        The final checkpoint (``out_dir/final.pt``).

    Raises
    ------
    InputError
        Unknown model, bad options or tile store, options contradicting ``resume``; all
        before anything is written.
    CheckpointError
        Unusable ``resume``/``init`` checkpoint (e.g. another model).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"train takes a TrainConfig (phirm_scale.models.train.TrainConfig); got "
            f"{type(config).__name__}"
        )
    if not isinstance(progress, bool):
        raise TypeError(
            "train's progress is a bool (a progress bar on stderr); its messages are log "
            f"records of phirm_scale.models.training.loop; got {type(progress).__name__}"
        )
    return run_training(config, progress=progress)
