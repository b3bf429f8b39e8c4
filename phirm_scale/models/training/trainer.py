"""Pick the trainer of a model: :func:`make_trainer`.

The shared GAN step (:class:`Trainer`, :class:`PendingMetrics`) lives in :mod:`.base`, below
the per-model trainers of :mod:`.context_encoder`, :mod:`.deepfill_v2` and :mod:`.edgeconnect`
that subclass it; this module sits above them all (no import cycle) and re-exports the base
names, which keep their old home here. Never imports Dask or Zarr.
"""

from __future__ import annotations

from typing import Any

from phirm_scale.errors import InputError
from phirm_scale.models.adapters.base import TorchInpaintModel
from phirm_scale.models.training.base import Metrics, PendingMetrics, Trainer
from phirm_scale.models.training.config import check_stage
from phirm_scale.models.training.context_encoder import ContextEncoderTrainer
from phirm_scale.models.training.deepfill_v2 import DeepFillTrainer
from phirm_scale.models.training.edgeconnect import EdgeConnectTrainer

__all__ = ["Metrics", "PendingMetrics", "Trainer", "make_trainer"]


def make_trainer(
    model: TorchInpaintModel,
    *,
    lr: float,
    amp: str = "auto",
    stage: str | None = None,
    vgg_weights: Any = None,
) -> Trainer:
    """Return the trainer of ``model.kind``.

    Parameters
    ----------
    model : TorchInpaintModel
        The model to train in place.
    lr : float
        Generator learning rate.
    amp : {'auto', 'off', 'bf16', 'fp16'}
        Mixed precision on CUDA.
    stage : {'edge', 'inpaint', 'joint'}, optional
        EdgeConnect's stage (default 'joint'); refused for other models.
    vgg_weights : str or Path, optional
        EdgeConnect's perceptual/style losses; refused for other models.

    Returns
    -------
    Trainer
        A :class:`~.context_encoder.ContextEncoderTrainer`,
        :class:`~.deepfill_v2.DeepFillTrainer` or :class:`~.edgeconnect.EdgeConnectTrainer`.

    Raises
    ------
    InputError
        No trainer for the model, or EdgeConnect options for another model.
    """
    trainers: dict[str, type[Trainer]] = {
        t.kind: t for t in (ContextEncoderTrainer, DeepFillTrainer, EdgeConnectTrainer)
    }
    cls = trainers.get(model.kind)
    if cls is None:
        raise InputError(f"no trainer for model {model.kind!r}; trainable: {', '.join(trainers)}")
    stage = check_stage(model.kind, stage)
    if cls is EdgeConnectTrainer:
        return EdgeConnectTrainer(model, lr=lr, amp=amp, stage=stage, vgg_weights=vgg_weights)
    if vgg_weights is not None:
        raise InputError(f"VGG weights are used by edgeconnect only, not {model.kind!r}")
    return cls(model, lr=lr, amp=amp)
