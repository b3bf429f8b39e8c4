"""Training, split the way LaMa splits it.

- :mod:`.config`: :class:`TrainConfig`, the settings of one run (saved in its checkpoints);
- :mod:`.base`: the shared GAN step (:class:`Trainer`); one trainer per model on it:
  :mod:`.context_encoder`, :mod:`.deepfill_v2`, :mod:`.edgeconnect`; :mod:`.trainer` above
  them picks one (:func:`make_trainer`) and re-exports the base names;
- :mod:`.data`: tile reading, per-step mask sampling, validation tiles, prefetching;
- :mod:`.validation`: the experiment's scoring (:func:`phirm_scale.evaluate.score_tiles`) on
  the validation tiles;
- :mod:`.logs`: CSV logs and the plot;
- :mod:`.loop`: the loop (:func:`run_training`), called by :func:`phirm_scale.models.train.train`.

Never imports Dask or Zarr.
"""

from __future__ import annotations

from phirm_scale.models.training.config import EDGECONNECT_STAGES, PAPER_DEFAULTS, TrainConfig
from phirm_scale.models.training.context_encoder import ContextEncoderTrainer
from phirm_scale.models.training.deepfill_v2 import DeepFillTrainer
from phirm_scale.models.training.edgeconnect import EdgeConnectTrainer
from phirm_scale.models.training.logs import plot_log
from phirm_scale.models.training.loop import run_training
from phirm_scale.models.training.trainer import Trainer, make_trainer
from phirm_scale.models.training.validation import validation_scores

__all__ = [
    "EDGECONNECT_STAGES",
    "PAPER_DEFAULTS",
    "ContextEncoderTrainer",
    "DeepFillTrainer",
    "EdgeConnectTrainer",
    "TrainConfig",
    "Trainer",
    "make_trainer",
    "plot_log",
    "run_training",
    "validation_scores",
]
