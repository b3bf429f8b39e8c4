"""DeepFill v2 trainer (Yu et al. 2019). Never imports Dask or Zarr."""

from __future__ import annotations

from typing import Any

import torch

from phirm_scale.models.adapters.base import TorchInpaintModel
from phirm_scale.models.losses import AdversarialLoss, ReconstructionLoss
from phirm_scale.models.training.base import Metrics, Trainer

__all__ = ["DeepFillTrainer"]


class DeepFillTrainer(Trainer):
    """SN-PatchGAN hinge loss on the composited image (with the mask as input) + L1.

    The L1 of both stages is taken over the whole image (weights 1, 1); Adam(1e-4, 0.5, 0.999).

    Parameters
    ----------
    model : TorchInpaintModel
        A DeepFill v2 model.
    **kw
        :class:`Trainer`'s ``lr`` and ``amp``.
    """

    kind = "deepfill-v2"
    w_l1, w_adv = 1.0, 1.0

    def __init__(self, model: TorchInpaintModel, **kw: Any) -> None:
        super().__init__(model, **kw)
        self.adv = AdversarialLoss("hinge")
        self.l1 = ReconstructionLoss("l1")

    @staticmethod
    def _complete(batch: dict, out: dict) -> torch.Tensor:
        m = batch["mask"]
        return out["output"] * m + batch["image"] * (1 - m)

    def discriminator_loss(self, batch: dict, out: dict) -> tuple[torch.Tensor, Metrics]:
        """Return the hinge loss of real vs completed images (see :class:`Trainer`)."""
        m = batch["mask"]
        real = self.D(batch["image"] * 2 - 1, m)
        fake = self.D(self._complete(batch, out).detach() * 2 - 1, m)
        return self.adv.discriminator(real, fake)

    def generator_loss(self, batch: dict, out: dict) -> tuple[torch.Tensor, Metrics]:
        """Return L1 of both stages + the hinge adversarial loss (see :class:`Trainer`)."""
        adv, m_adv = self.adv.generator(self.D(self._complete(batch, out) * 2 - 1, batch["mask"]))
        x = batch["image"] * 2 - 1
        l1_1, _ = self.l1(out["stage1"] * 2 - 1, x)
        l1_2, _ = self.l1(out["output"] * 2 - 1, x)
        l1 = l1_1 + l1_2
        return self.w_l1 * l1 + self.w_adv * adv, {
            **m_adv,
            "g_l1": l1.detach(),
            "g_l1_stage2": l1_2.detach(),
        }
