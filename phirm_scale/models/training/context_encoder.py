"""Context Encoder trainer (Pathak et al. 2016). Never imports Dask or Zarr."""

from __future__ import annotations

from typing import Any

import torch

from phirm_scale.models.adapters.base import TorchInpaintModel
from phirm_scale.models.losses import AdversarialLoss, ReconstructionLoss
from phirm_scale.models.training.base import Metrics, Trainer

__all__ = ["ContextEncoderTrainer"]


class ContextEncoderTrainer(Trainer):
    """Pathak et al.: BCE adversarial loss on the centre patch (weight 0.002) + L2 (0.998).

    The L2 has 10x weight on the known overlap band inside the centre; Adam(2e-4, 0.5).

    Parameters
    ----------
    model : TorchInpaintModel
        A Context Encoder.
    **kw
        :class:`Trainer`'s ``lr`` and ``amp``.
    """

    kind = "context-encoder"
    w_rec, w_adv, overlap_weight = 0.998, 0.002, 10.0

    def __init__(self, model: TorchInpaintModel, **kw: Any) -> None:
        super().__init__(model, **kw)
        self.adv = AdversarialLoss("nsgan")
        self.rec = ReconstructionLoss("l2", "g_l2")

    def _centre_mask(self, out: dict) -> torch.Tensor:
        s = out["context_mask"].shape[-1]
        return out["context_mask"][..., s // 4 : s // 4 + s // 2, s // 4 : s // 4 + s // 2]

    def discriminator_loss(self, batch: dict, out: dict) -> tuple[torch.Tensor, Metrics]:
        """Return the BCE loss of real vs predicted centres (see :class:`Trainer`)."""
        real = self.D(out["centre_real"] * 2 - 1)
        fake = self.D(out["centre"].detach() * 2 - 1)
        return self.adv.discriminator(real, fake)

    def generator_loss(self, batch: dict, out: dict) -> tuple[torch.Tensor, Metrics]:
        """Return the weighted L2 + adversarial loss of the centres (see :class:`Trainer`)."""
        adv, m_adv = self.adv.generator(self.D(out["centre"] * 2 - 1))
        hole = self._centre_mask(out)
        weight = hole + (1 - hole) * self.overlap_weight
        rec, m_rec = self.rec(out["centre"] * 2 - 1, out["centre_real"] * 2 - 1, weight)
        return self.w_rec * rec + self.w_adv * adv, {**m_adv, **m_rec}
