"""Context Encoder adapter: any hole becomes Pathak's centre patch inside a context window.

The network is :mod:`phirm_scale.models.networks.context_encoder`. Never imports Dask or Zarr.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from phirm_scale.errors import InputError
from phirm_scale.models.adapters.base import TorchInpaintModel

if TYPE_CHECKING:
    import torch

__all__ = ["ContextEncoderModel"]


class ContextEncoderModel(TorchInpaintModel):
    """Context Encoder on arbitrary masks.

    The hole's bounding box (plus a ``margin`` band of known pixels, Pathak's overlap) becomes
    the centre patch; a context window twice its side, replicate-padded at the image border, is
    resized to ``size``; the ``size/2`` centre prediction is resized back onto the box.
    """

    kind = "context-encoder"
    defaults: ClassVar[dict[str, Any]] = {
        "width": 64,
        "disc_width": None,
        "size": 128,
        "bottleneck": None,
        "margin": 4 / 64,
        "seed": 0,
    }

    @classmethod
    def complete_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Fill the bottleneck from the width and check the context size.

        Parameters
        ----------
        config : dict
            :attr:`defaults` updated with the caller's options.

        Returns
        -------
        dict
            The complete config.

        Raises
        ------
        InputError
            A size that is not a power of two >= 32, or a width below 1.
        """
        from phirm_scale.models.networks.context_encoder import ce_defaults

        try:
            config = ce_defaults(config)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return super().complete_config(config)

    def geometry(self, holes: np.ndarray) -> list[tuple[int, int, int]]:
        """Return the centre box of each image's holes.

        Parameters
        ----------
        holes : (N, 1, H, W) ndarray
            Nonzero = hole.

        Returns
        -------
        list of tuple
            Per image: (top, left, side) of the centre box (an even side).
        """
        margin = float(self.config.get("margin", 4 / 64))
        geo = []
        for i in range(holes.shape[0]):
            ys, xs = np.nonzero(holes[i, 0])
            if ys.size == 0:
                geo.append((0, 0, 2))
                continue
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            side = max(2, math.ceil(max(y1 - y0, x1 - x0) / (1 - 2 * margin)))
            side += side % 2
            cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
            geo.append((int(cy - side // 2), int(cx - side // 2), side))
        return geo

    def prepare(self, images: np.ndarray, holes: np.ndarray, *, train: bool = False) -> dict:
        """Add each image's centre box (:meth:`geometry`) to the batch.

        Parameters
        ----------
        images : (N, 1, H, W) ndarray of float32
            Values in [0, 1].
        holes : (N, 1, H, W) ndarray
            Nonzero = hole.
        train : bool
            Unused (the same batch serves training).

        Returns
        -------
        dict
            ``'image'``, ``'mask'`` and ``'geometry'``.
        """
        batch = super().prepare(images, holes)
        batch["geometry"] = self.geometry(holes)
        return batch

    def crop(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cut the contexts and the true centres of a prepared batch.

        Parameters
        ----------
        batch : dict
            From :meth:`prepare`.

        Returns
        -------
        tuple of torch.Tensor
            Contexts (N, 1, size, size) in [-1, 1] with holes zeroed, their masks, and the true
            centres (N, 1, size/2, size/2) in [0, 1] resized from the boxes.
        """
        import torch
        import torch.nn.functional as F  # noqa: N812 - torch's own convention

        size = int(self.config["size"])
        img, m = batch["image"], batch["mask"]
        ctxs, masks, centres = [], [], []
        for i, (top, left, side) in enumerate(batch["geometry"]):
            pad = side  # context = box +- side/2, so `side` of padding always suffices
            pi = F.pad(img[i : i + 1], (pad, pad, pad, pad), mode="replicate")
            pm = F.pad(m[i : i + 1], (pad, pad, pad, pad))
            t, lft = top + pad - side // 2, left + pad - side // 2
            ci = pi[..., t : t + 2 * side, lft : lft + 2 * side]
            cm = pm[..., t : t + 2 * side, lft : lft + 2 * side]
            ctxs.append(
                F.interpolate(
                    ci,
                    size=(size, size),
                    mode="bilinear",
                    align_corners=False,
                    antialias=2 * side > size,
                )
            )
            masks.append(
                (F.interpolate(cm, size=(size, size), mode="bilinear", align_corners=False) > 0).to(
                    img.dtype
                )
            )
            box = pi[
                ..., t + side // 2 : t + side // 2 + side, lft + side // 2 : lft + side // 2 + side
            ]
            centres.append(
                F.interpolate(
                    box,
                    size=(size // 2, size // 2),
                    mode="bilinear",
                    align_corners=False,
                    antialias=side > size // 2,
                )
            )
        ctx = torch.cat(ctxs)
        cmask = torch.cat(masks)
        return (ctx * 2 - 1) * (1 - cmask), cmask, torch.cat(centres)

    def paste(self, batch: dict, centre: torch.Tensor) -> torch.Tensor:
        """Resize predicted centres onto their boxes in copies of the images.

        Parameters
        ----------
        batch : dict
            From :meth:`prepare`.
        centre : torch.Tensor
            (N, 1, size/2, size/2) in [0, 1].

        Returns
        -------
        torch.Tensor
            (N, 1, H, W) images with the boxes replaced.
        """
        import torch
        import torch.nn.functional as F  # noqa: N812 - torch's own convention

        img = batch["image"]
        h, w = img.shape[-2:]
        outs = []
        for i, (top, left, side) in enumerate(batch["geometry"]):
            patch = F.interpolate(
                centre[i : i + 1].float(),
                size=(side, side),
                mode="bilinear",
                align_corners=False,
                antialias=side < centre.shape[-1],
            )
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + side, h), min(left + side, w)
            canvas = img[i : i + 1].clone()
            canvas[..., y0:y1, x0:x1] = patch[..., y0 - top : y1 - top, x0 - left : x1 - left]
            outs.append(canvas)
        return torch.cat(outs)

    def generate(self, batch: dict) -> dict:
        """Predict the centre of every context and paste it back.

        Parameters
        ----------
        batch : dict
            From :meth:`prepare`.

        Returns
        -------
        dict
            ``'centre'``, ``'centre_real'``, ``'context_mask'`` and ``'output'`` in [0, 1].
        """
        ctx, cmask, centre_real = self.crop(batch)
        centre = (self._fn("forward")(ctx) + 1) / 2
        return {
            "centre": centre,
            "centre_real": centre_real,
            "context_mask": cmask,
            "output": self.paste(batch, centre),
        }
