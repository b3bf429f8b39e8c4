"""Network architectures (torch), one module per model, and the ``kind`` factories.

``make_generator(kind, config)`` / ``make_discriminator(kind, config)`` build a network from a
complete config dict (as saved in checkpoints); an unknown kind raises :class:`InputError`
listing the known kinds. Never imports Dask or Zarr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from phirm_scale.errors import InputError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["NETWORK_KINDS", "make_discriminator", "make_generator", "size_multiple"]

NETWORK_KINDS = ("context-encoder", "deepfill-v2", "edgeconnect")


def _check(kind: str) -> None:
    if kind not in NETWORK_KINDS:
        raise InputError(f"unknown network kind {kind!r}; known: {', '.join(NETWORK_KINDS)}")


def make_generator(kind: str, config: dict[str, Any]) -> nn.Module:
    """Build the generator of ``kind`` from ``config``.

    Parameters
    ----------
    kind : str
        One of :data:`NETWORK_KINDS`.
    config : dict
        Network options (e.g. ``{'width': 64}``; no ``seed``).

    Returns
    -------
    torch.nn.Module
        The generator (freshly initialised).
    """
    _check(kind)
    if kind == "context-encoder":
        from phirm_scale.models.networks.context_encoder import ContextEncoderGenerator

        return ContextEncoderGenerator(**config)
    if kind == "deepfill-v2":
        from phirm_scale.models.networks.deepfill_v2 import DeepFillGenerator

        return DeepFillGenerator(**config)
    from phirm_scale.models.networks.edgeconnect import EdgeConnectGenerator

    return EdgeConnectGenerator(**config)


def make_discriminator(kind: str, config: dict[str, Any]) -> nn.Module:
    """Build the discriminator of ``kind`` (training only; inference never builds one).

    Parameters
    ----------
    kind : str
        One of :data:`NETWORK_KINDS`.
    config : dict
        Network options; ``disc_width`` becomes the discriminator's width.

    Returns
    -------
    torch.nn.Module
        The discriminator.
    """
    _check(kind)
    cfg = dict(config)
    if "disc_width" in cfg:
        cfg["width"] = cfg.pop("disc_width")
    if kind == "context-encoder":
        from phirm_scale.models.networks.context_encoder import (
            ContextEncoderDiscriminator,
        )

        return ContextEncoderDiscriminator(**cfg)
    if kind == "deepfill-v2":
        from phirm_scale.models.networks.deepfill_v2 import DeepFillDiscriminator

        return DeepFillDiscriminator(**cfg)
    from phirm_scale.models.networks.edgeconnect import EdgeConnectDiscriminator

    return EdgeConnectDiscriminator(**cfg)


def size_multiple(kind: str) -> int:
    """Return the multiple that image sides must be for a generator of ``kind``.

    Parameters
    ----------
    kind : str
        One of :data:`NETWORK_KINDS`.

    Returns
    -------
    int
        Inputs are padded up to it.
    """
    _check(kind)
    return {"context-encoder": 1, "deepfill-v2": 8, "edgeconnect": 4}[kind]
