"""DeepFill v2 adapter: masked image in [-1, 1] (holes zeroed) + mask -> coarse and refined fill.

The network is :mod:`phirm_scale.models.networks.deepfill_v2`. Never imports Dask or Zarr.
"""

from __future__ import annotations

from typing import Any, ClassVar

from phirm_scale.errors import InputError
from phirm_scale.models.adapters.base import TorchInpaintModel, pad_batch

__all__ = ["DeepFillModel"]


class DeepFillModel(TorchInpaintModel):
    """DeepFill v2 (Yu et al. 2019) on single-channel images; see :class:`TorchInpaintModel`."""

    kind = "deepfill-v2"
    defaults: ClassVar[dict[str, Any]] = {"width": 48, "disc_width": None, "seed": 0}

    @classmethod
    def complete_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Check the width (a multiple of 4) and fill ``disc_width`` (64/48 of it).

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
            A width below 1 or not a multiple of 4.
        """
        w = int(config["width"])
        if w >= 1 and w % 4:
            raise InputError(f"model 'deepfill-v2': width must be a multiple of 4; got {w}")
        if w >= 1 and config.get("disc_width") is None:
            config["disc_width"] = round(w * 64 / 48)
        return super().complete_config(config)

    def generate(self, batch: dict) -> dict:
        """Run both stages on a prepared batch.

        Parameters
        ----------
        batch : dict
            ``'image'`` in [0, 1] and ``'mask'`` (1 = hole), (N, 1, H, W) tensors.

        Returns
        -------
        dict
            ``'stage1'`` (coarse) and ``'output'`` (refined), both in [0, 1].
        """
        from phirm_scale.models.networks.deepfill_v2 import MULTIPLE

        padded, (h, w) = pad_batch(batch, MULTIPLE)
        x = padded["image"] * 2 - 1
        m = padded["mask"]
        s1, s2 = self._fn("forward")(x * (1 - m), m)
        return {"stage1": (s1[..., :h, :w] + 1) / 2, "output": (s2[..., :h, :w] + 1) / 2}
