"""Building blocks shared by the networks.

Spectral norm, 'same' padding, patch extraction, sizes that a network needs (multiples of its
total stride) and seeded construction.

Never imports Dask or Zarr.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from torch import nn

__all__ = [
    "extract_patches",
    "init_weights",
    "pad_to_multiple",
    "same_pad",
    "seeded",
    "spectral_norm",
]


def spectral_norm(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Wrap ``module`` in spectral normalisation (the parametrisation API) when ``enabled``.

    State-dict keys become ``<name>.parametrizations.weight.original`` / ``.0._u`` / ``.0._v``;
    :mod:`phirm_scale.models.importers` maps the old ``weight_orig/_u/_v`` keys onto them.
    """
    if not enabled:
        return module
    return nn.utils.parametrizations.spectral_norm(module)


def same_pad(x: torch.Tensor, ksize: int, stride: int = 1, rate: int = 1) -> torch.Tensor:
    """Zero-pad ``x`` (N, C, H, W) like TensorFlow's ``padding='SAME'``."""
    h, w = x.shape[-2:]
    eff = (ksize - 1) * rate + 1
    out_h = (h + stride - 1) // stride
    out_w = (w + stride - 1) // stride
    pad_h = max(0, (out_h - 1) * stride + eff - h)
    pad_w = max(0, (out_w - 1) * stride + eff - w)
    top, left = pad_h // 2, pad_w // 2
    return F.pad(x, (left, pad_w - left, top, pad_h - top))


def extract_patches(x: torch.Tensor, ksize: int, stride: int) -> torch.Tensor:
    """Patches of ``x`` (N, C, H, W) with 'SAME' padding as (N, L, C, k, k)."""
    n, c = x.shape[:2]
    xp = same_pad(x, ksize, stride)
    cols = F.unfold(xp, kernel_size=ksize, stride=stride)  # N, C*k*k, L
    return cols.view(n, c, ksize, ksize, -1).permute(0, 4, 1, 2, 3)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W up to a multiple: reflect (replicate for tiny images).

    Parameters
    ----------
    x : torch.Tensor
        (N, C, H, W).
    multiple : int
        The multiple.

    Returns
    -------
    tuple
        The padded tensor and the original ``(H, W)``.
    """
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def init_weights(net: nn.Module, kind: str = "normal", gain: float = 0.02) -> None:
    """Initialise weights EdgeConnect/DCGAN style.

    Conv weights ~ N(0, gain) (or xavier/kaiming), biases 0, norm-layer weights ~ N(1, gain).

    Parameters
    ----------
    net : nn.Module
        Initialised in place.
    kind : {'normal', 'xavier', 'kaiming'}
        Conv weight init.
    gain : float
        Standard deviation (or xavier gain).
    """
    for m in net.modules():
        name = type(m).__name__
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            sn = hasattr(m, "parametrizations")  # spectral norm: the raw weight is `original`
            w = cast(
                torch.Tensor, cast(Any, m).parametrizations.weight.original if sn else m.weight
            )
            with torch.no_grad():
                if kind == "normal":
                    nn.init.normal_(w, 0.0, gain)
                elif kind == "xavier":
                    nn.init.xavier_normal_(w, gain=gain)
                elif kind == "kaiming":
                    nn.init.kaiming_normal_(w, a=0, mode="fan_in")
                else:  # pragma: no cover - programming error
                    raise ValueError(f"unknown init kind {kind!r}")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        elif "BatchNorm" in name and getattr(m, "weight", None) is not None:
            with torch.no_grad():
                nn.init.normal_(cast(torch.Tensor, m.weight), 1.0, gain)
                nn.init.zeros_(cast(torch.Tensor, m.bias))
