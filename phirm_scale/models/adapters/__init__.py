"""Model adapters: each model's pre/post-processing around its network.

One module per model, beside :mod:`phirm_scale.models.networks`: the classical fills
(:mod:`.classical`), Context Encoder (:mod:`.context_encoder`), DeepFill v2
(:mod:`.deepfill_v2`) and EdgeConnect (:mod:`.edgeconnect`), all subclasses of
:class:`~phirm_scale.models.adapters.base.InpaintModel`. The registry
(:mod:`phirm_scale.models.registry`) only looks them up and caches them. Importing this package
does not import torch.
"""

from __future__ import annotations

from phirm_scale.models.adapters.base import InpaintModel, TorchInpaintModel
from phirm_scale.models.adapters.classical import ClassicalModel
from phirm_scale.models.adapters.context_encoder import ContextEncoderModel
from phirm_scale.models.adapters.deepfill_v2 import DeepFillModel
from phirm_scale.models.adapters.edgeconnect import EdgeConnectModel

__all__ = [
    "LEARNED_ADAPTERS",
    "ClassicalModel",
    "ContextEncoderModel",
    "DeepFillModel",
    "EdgeConnectModel",
    "InpaintModel",
    "TorchInpaintModel",
]

#: the adapter class of each learned model, by registry name
LEARNED_ADAPTERS: dict[str, type[TorchInpaintModel]] = {
    c.kind: c for c in (ContextEncoderModel, DeepFillModel, EdgeConnectModel)
}
