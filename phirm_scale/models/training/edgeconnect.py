"""EdgeConnect trainer (Nazeri et al. 2019), by stage. Never imports Dask or Zarr."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from phirm_scale.models.adapters.base import TorchInpaintModel
from phirm_scale.models.adapters.edgeconnect import EdgeConnectModel
from phirm_scale.models.losses import (
    AdversarialLoss,
    FeatureMatchingLoss,
    PerceptualLoss,
    ReconstructionLoss,
    StyleLoss,
    load_vgg19,
)
from phirm_scale.models.training.base import Metrics, Trainer
from phirm_scale.models.training.config import check_stage

__all__ = ["EdgeConnectTrainer"]


class EdgeConnectTrainer(Trainer):
    """EdgeConnect by stage.

    - ``'edge'``: edge generator vs the Canny edges of the true image; BCE adversarial loss on
      (image, edges) + 10 x feature matching; edge precision/recall in the holes logged.
    - ``'inpaint'``: inpainting generator fed the true edges; L1 / mean(mask) + 0.1 x BCE
      adversarial (+ 0.1 x perceptual + 250 x style when VGG weights are given).
    - ``'joint'``: both, the inpainting generator fed the (detached) predicted edges.

    Adam(lr, betas=(0, 0.9)); discriminators at 0.1 x lr.

    Parameters
    ----------
    model : TorchInpaintModel
        An EdgeConnect model.
    stage : {'edge', 'inpaint', 'joint'}, optional
        Default 'joint'.
    vgg_weights : str or Path, optional
        Local VGG-19 weights: enable the perceptual and style losses.
    **kw
        :class:`Trainer`'s ``lr`` and ``amp``.
    """

    kind = "edgeconnect"
    betas = (0.0, 0.9)
    d_lr_ratio = 0.1
    w_fm, w_adv_inpaint, w_l1, w_perc, w_style = 10.0, 0.1, 1.0, 0.1, 250.0

    def __init__(
        self,
        model: TorchInpaintModel,
        *,
        stage: str | None = "joint",
        vgg_weights: Any = None,
        **kw: Any,
    ) -> None:
        self.stage = str(check_stage(self.kind, stage))
        super().__init__(model, **kw)
        self.adv = AdversarialLoss("nsgan")
        self.fm = FeatureMatchingLoss()
        self.l1 = ReconstructionLoss("l1")
        self.perceptual: PerceptualLoss | None = None
        self.style: StyleLoss | None = None
        if vgg_weights is not None:
            vgg = load_vgg19(vgg_weights).to(self.device)
            self.perceptual, self.style = PerceptualLoss(vgg), StyleLoss(vgg)
        self._real_feats: list[torch.Tensor] = []
        # the discriminators of the two stages (typed: nn.Module attributes read as Any)
        self.d_edge: nn.Module = cast(nn.Module, self.D.edge)
        self.d_inpaint: nn.Module = cast(nn.Module, self.D.inpaint)

    def _parts(self) -> tuple[str, ...]:
        return {"edge": ("edge",), "inpaint": ("inpaint",), "joint": ("edge", "inpaint")}[
            self.stage
        ]

    def trainable(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """Return the parameters of this stage's generator(s) and discriminator(s).

        Returns
        -------
        tuple of list
            ``(generator parameters, discriminator parameters)``; the other part is frozen.
        """
        parts = self._parts()
        for name in ("edge", "inpaint"):
            getattr(self.G, name).requires_grad_(name in parts)
        g = [p for n in parts for p in getattr(self.G, n).parameters()]
        d = [p for n in parts for p in getattr(self.D, n).parameters()]
        return g, d

    def forward(self, batch: dict) -> dict:
        """Run this stage's generator(s) (see :meth:`Trainer.forward`)."""
        assert isinstance(self.model, EdgeConnectModel)
        if self.stage == "edge":
            return self.model.predict_edges(batch)
        return self.model.generate(
            batch, edges_for_inpaint="gt" if self.stage == "inpaint" else "detach"
        )

    def discriminator_loss(self, batch: dict, out: dict) -> tuple[torch.Tensor, Metrics]:
        """Return the BCE losses of this stage's discriminators (see :class:`Trainer`)."""
        img = batch["image"]
        total = torch.zeros((), device=img.device)
        metrics: Metrics = {}
        if "edges" in out and self.stage != "inpaint":
            real, real_feats = self.d_edge(torch.cat([img, batch["edges_gt"]], 1))
            fake, _ = self.d_edge(torch.cat([img, out["edges"].detach()], 1))
            loss, m = self.adv.discriminator(real, fake, average=True)
            self._real_feats = [f.detach() for f in real_feats]
            total = total + loss
            metrics.update({f"edge_{k}": v for k, v in m.items()})
        if self.stage != "edge":
            real, _ = self.d_inpaint(img)
            fake, _ = self.d_inpaint(out["output"].detach())
            loss, m = self.adv.discriminator(real, fake, average=True)
            total = total + loss
            metrics.update({f"inpaint_{k}": v for k, v in m.items()})
        return total, metrics

    def generator_loss(self, batch: dict, out: dict) -> tuple[torch.Tensor, Metrics]:
        """Return this stage's generator losses (see :class:`Trainer`)."""
        img, m = batch["image"], batch["mask"]
        total = torch.zeros((), device=img.device)
        metrics: Metrics = {}
        if self.stage != "inpaint":
            fake, fake_feats = self.d_edge(torch.cat([img, out["edges"]], 1))
            adv, _ = self.adv.generator(fake)
            fm, _ = self.fm(fake_feats, self._real_feats)
            total = total + adv + self.w_fm * fm
            with torch.no_grad():
                pred = (out["edges"] > 0.5).float() * m
                gt = batch["edges_gt"] * m
                tp = (pred * gt).sum()
                metrics.update(
                    edge_g_adv=adv.detach(),
                    edge_g_fm=fm.detach(),
                    edge_precision=tp / pred.sum().clamp_min(1),
                    edge_recall=tp / gt.sum().clamp_min(1),
                )
        if self.stage != "edge":
            out_img = out["output"]
            fake, _ = self.d_inpaint(out_img)
            adv, _ = self.adv.generator(fake)
            l1, _ = self.l1(out_img, img)
            l1 = l1 / m.mean().clamp_min(1e-6)
            loss = self.w_l1 * l1 + self.w_adv_inpaint * adv
            metrics.update(inpaint_g_adv=adv.detach(), g_l1=l1.detach())
            if self.perceptual is not None and self.style is not None:
                perc, _ = self.perceptual(out_img.float(), img)
                style, _ = self.style((out_img * m).float(), img * m)
                loss = loss + self.w_perc * perc + self.w_style * style
                metrics.update(g_perceptual=perc.detach(), g_style=style.detach())
            total = total + loss
        return total, metrics
