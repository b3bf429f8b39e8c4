"""EdgeConnect adapter: Canny edges of the known pixels -> edge generator -> inpainting generator.

The network is :mod:`phirm_scale.models.networks.edgeconnect`. Never imports Dask or Zarr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from phirm_scale.models.adapters.base import TorchInpaintModel, pad_batch

if TYPE_CHECKING:
    import torch

__all__ = ["EdgeConnectModel"]


class EdgeConnectModel(TorchInpaintModel):
    """EdgeConnect (Nazeri et al. 2019) on single-channel images; see :class:`TorchInpaintModel`."""

    kind = "edgeconnect"
    defaults: ClassVar[dict[str, Any]] = {
        "width": 64,
        "disc_width": None,
        "blocks": 8,
        "sigma": 2.0,
        "seed": 0,
    }

    def canny_backend(self) -> str:
        """Return the Canny implementation this view uses.

        'torch' (:mod:`phirm_scale.models.canny`, batched on the model's device) or 'skimage'
        (``skimage.feature.canny`` per tile on the CPU). 'auto': torch on CUDA, skimage on the
        CPU, where it is faster; both give the same edges (docs/models.md).

        Returns
        -------
        str
            ``'torch'`` or ``'skimage'``.
        """
        import torch

        if self.canny == "auto":
            return "torch" if torch.device(self.device).type == "cuda" else "skimage"
        return str(self.canny)

    def edges(self, images: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """Canny edges (float 0/1) of a (N, 1, H, W) tensor on the model's device.

        Parameters
        ----------
        images : torch.Tensor
            (N, 1, H, W) in [0, 1].
        known : torch.Tensor, optional
            Restrict the edges to these pixels (skimage's ``mask`` semantics, then ``& known``).

        Returns
        -------
        torch.Tensor
            float32 0/1 edges, same shape and device.
        """
        import torch

        sigma = float(self.config.get("sigma", 2.0))
        if self.canny_backend() == "torch":
            from phirm_scale.models.canny import canny as torch_canny

            e = torch_canny(images, sigma=sigma, mask=known)
            if known is not None:
                e = e & (known != 0)
            return e.to(torch.float32)
        from skimage.feature import canny

        imgs = images.detach().float().cpu().numpy().astype(np.float64)
        kn = None if known is None else (known.detach().cpu().numpy() != 0)
        out = np.zeros(imgs.shape, np.float32)
        for i in range(imgs.shape[0]):
            if kn is None:
                out[i, 0] = canny(imgs[i, 0], sigma=sigma)
            elif kn[i, 0].any():
                out[i, 0] = canny(imgs[i, 0], sigma=sigma, mask=kn[i, 0]) & kn[i, 0]
        return torch.from_numpy(out).to(images.device)

    def prepare(self, images: np.ndarray, holes: np.ndarray, *, train: bool = False) -> dict:
        """Add the Canny edges of the known pixels (and, to train, of the whole image).

        Parameters
        ----------
        images : (N, 1, H, W) ndarray of float32
            Values in [0, 1].
        holes : (N, 1, H, W) ndarray
            Nonzero = hole.
        train : bool
            Also compute ``'edges_gt'``, the edges of the true image.

        Returns
        -------
        dict
            ``'image'``, ``'mask'``, ``'edges'`` (and ``'edges_gt'``).
        """
        import torch

        batch = super().prepare(images, holes)
        img, known = batch["image"], batch["mask"] == 0
        if train and self.canny_backend() == "torch":
            # both edge maps in one batched call (half the kernel launches); an all-known mask
            # gives the unmasked edges exactly (canny's own default mask is all ones)
            both = self.edges(torch.cat((img, img)), torch.cat((known, torch.ones_like(known))))
            batch["edges"], batch["edges_gt"] = both[: len(img)], both[len(img) :]
            return batch
        batch["edges"] = self.edges(img, known)
        if train:
            batch["edges_gt"] = self.edges(img)
        return batch

    def predict_edges(self, batch: dict) -> dict:
        """Run the edge generator alone (EdgeConnect's 'edge' training stage).

        Parameters
        ----------
        batch : dict
            From :meth:`prepare`.

        Returns
        -------
        dict
            ``'edge_logits'`` and ``'edges'`` (their sigmoid), cropped to the input size.
        """
        import torch

        from phirm_scale.models.networks.edgeconnect import MULTIPLE

        padded, (h, w) = pad_batch(batch, MULTIPLE)
        logits = self._fn("predict_edges")(padded["image"], padded["edges"], padded["mask"])
        logits = logits[..., :h, :w]
        return {"edge_logits": logits, "edges": torch.sigmoid(logits)}

    def generate(self, batch: dict, *, edges_for_inpaint: str | None = None) -> dict:
        """Predict the edges in the holes, then inpaint the image guided by them.

        Parameters
        ----------
        batch : dict
            From :meth:`prepare`.
        edges_for_inpaint : {None, 'gt', 'detach'}
            'gt' feeds the true edges to the inpainting generator (stage 'inpaint' training);
            'detach' feeds the predicted edges without their gradient (stage 'joint').

        Returns
        -------
        dict
            ``'output'`` in [0, 1], and unless 'gt', ``'edge_logits'`` and ``'edges'``.
        """
        import torch

        from phirm_scale.models.networks.edgeconnect import MULTIPLE

        padded, (h, w) = pad_batch(batch, MULTIPLE)
        img, m, e_in = padded["image"], padded["mask"], padded["edges"]
        out = {}
        if edges_for_inpaint == "gt":
            e_comp = padded["edges_gt"]
        else:
            logits = self._fn("predict_edges")(img, e_in, m)
            e = torch.sigmoid(logits)
            out["edge_logits"] = logits[..., :h, :w]
            out["edges"] = e[..., :h, :w]
            e_comp = e * m + e_in * (1 - m)
            if edges_for_inpaint == "detach":
                e_comp = e_comp.detach()
        out["output"] = self._fn("inpaint_image")(img, e_comp, m)[..., :h, :w]
        return out
