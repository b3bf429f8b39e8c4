"""Adapter of the classical fills (Telea, Navier-Stokes, biharmonic) to :class:`InpaintModel`.

The fills themselves live in :mod:`phirm_scale.models.classical`. Never imports Dask or Zarr.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from phirm_scale.errors import InputError
from phirm_scale.models.adapters.base import InpaintModel

__all__ = ["CLASSICAL_DEFAULTS", "ClassicalModel"]

#: the config of each classical method
CLASSICAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "telea": {"radius": 3.0, "dtype": "uint16"},
    "navier-stokes": {"radius": 3.0, "dtype": "uint16"},
    "biharmonic": {},
}


class ClassicalModel(InpaintModel):
    """Telea, Navier-Stokes or biharmonic, applied image by image on the CPU.

    Parameters
    ----------
    name : {'telea', 'navier-stokes', 'biharmonic'}
        The method.
    config : dict
        Its complete config (``radius``, ``dtype`` for the OpenCV methods).
    """

    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(config, "cpu")
        self.name = name
        # OpenCV's methods fill a whole integer field in one call, faster than tile by tile
        # and without seams: phirm_scale.inpaint.inpaint_field then uses inpaint_integer.
        self.whole_field = name in ("telea", "navier-stokes")

    def inpaint_integer(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """Fill a uint8/uint16 (H, W) field straight through OpenCV, without normalisation.

        Parameters
        ----------
        image : (H, W) ndarray of uint8 or uint16
            The field.
        hole : (H, W) ndarray
            Nonzero = hole.

        Returns
        -------
        ndarray
            Same dtype; equal to ``image`` outside the hole.
        """
        import cv2

        if not self.whole_field:
            raise InputError(f"{self.name}: no integer whole-field path")
        flag = cv2.INPAINT_TELEA if self.name == "telea" else cv2.INPAINT_NS
        h = (np.asarray(hole) != 0).astype(np.uint8)
        filled = cv2.inpaint(np.ascontiguousarray(image), h, float(self.config["radius"]), flag)
        return np.where(h.astype(bool), filled, image)

    def _fill(
        self, images: np.ndarray, holes: np.ndarray, batch_size: int | None = None
    ) -> np.ndarray:
        from phirm_scale.models import classical

        out = images.copy()
        for i in range(images.shape[0]):
            if not holes[i, 0].any():
                continue
            if self.name == "biharmonic":
                out[i, 0] = classical.inpaint_biharmonic(images[i, 0], holes[i, 0])
            else:
                fn = (
                    classical.inpaint_telea
                    if self.name == "telea"
                    else classical.inpaint_navier_stokes
                )
                out[i, 0] = fn(
                    images[i, 0],
                    holes[i, 0],
                    radius=self.config["radius"],
                    dtype=self.config["dtype"],
                )
        return out
