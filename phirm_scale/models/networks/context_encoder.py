"""Context Encoder (Pathak et al. 2016), single channel.

The generator is the released encoder-bottleneck-decoder: a ``size`` x ``size`` context (128 in
the original) is encoded by strided 4x4 convolutions down to 4x4, squeezed through a
``bottleneck``-channel 1x1 code (4000 in the original), and decoded by transposed convolutions to
the ``size/2`` x ``size/2`` centre patch (64x64). The discriminator judges that centre patch
(DCGAN style, BatchNorm, sigmoid output; trained with BCE). Images live in [-1, 1] inside the
network. Never imports Dask or Zarr.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from phirm_scale.models.networks.common import init_weights

__all__ = ["ContextEncoderDiscriminator", "ContextEncoderGenerator", "ce_defaults"]


def ce_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Complete a Context Encoder config with the paper's defaults.

    Parameters
    ----------
    config : dict
        Options (None keeps a default).

    Returns
    -------
    dict
        ``width``, ``size``, ``bottleneck`` (4000 x width / 64 unless given), ``margin`` and
        any other given option.

    Raises
    ------
    ValueError
        A size that is not a power of two >= 32.
    """
    cfg: dict[str, Any] = {"width": 64, "size": 128, "bottleneck": None, "margin": 4 / 64}
    cfg.update({k: v for k, v in config.items() if v is not None})
    if cfg["bottleneck"] is None:
        cfg["bottleneck"] = max(8, round(4000 * cfg["width"] / 64))
    size = int(cfg["size"])
    if size < 32 or size & (size - 1):
        raise ValueError(f"context-encoder size must be a power of two >= 32; got {size}")
    return cfg


def _n_down(size: int) -> int:
    # centre = size/2 is decoded from 4x4; encoder goes size -> 4
    return int(math.log2(size // 4))


class ContextEncoderGenerator(nn.Module):
    """(N, 1, size, size) context in [-1, 1] -> (N, 1, size/2, size/2) centre in [-1, 1]."""

    def __init__(
        self, width: int = 64, size: int = 128, bottleneck: int = 4000, **_: object
    ) -> None:
        super().__init__()
        ngf = int(width)
        chans = [1, ngf] + [ngf * min(2 ** max(i - 1, 0), 8) for i in range(1, _n_down(size))]
        # original (size 128): 1 -> 64 -> 64 -> 128 -> 256 -> 512 (5 downsamplings to 4x4)
        layers: list[nn.Module] = []
        for i in range(len(chans) - 1):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1, bias=False))
            if i > 0:
                layers.append(nn.BatchNorm2d(chans[i + 1]))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers += [
            nn.Conv2d(chans[-1], bottleneck, 4, bias=False),
            nn.BatchNorm2d(bottleneck),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        self.encoder = nn.Sequential(*layers)
        up = [chans[-1]] + chans[-2:0:-1]  # 512, 256, 128, 64 (4 -> 64 needs n_down-1 upsamplings)
        dec: list[nn.Module] = [
            nn.ConvTranspose2d(bottleneck, up[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(up[0]),
            nn.ReLU(True),
        ]
        for i in range(len(up) - 2):
            dec += [
                nn.ConvTranspose2d(up[i], up[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(up[i + 1]),
                nn.ReLU(True),
            ]
        dec += [nn.ConvTranspose2d(up[-2], 1, 4, 2, 1, bias=False), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)
        init_weights(self, "normal", 0.02)  # DCGAN init, as the original

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """Return the centre (N, 1, size/2, size/2) in [-1, 1] of contexts in [-1, 1]."""
        return self.decoder(self.encoder(context))


class ContextEncoderDiscriminator(nn.Module):
    """(N, 1, size/2, size/2) centre patch -> (N,) probability of being real."""

    def __init__(self, width: int = 64, size: int = 128, **_: object) -> None:
        super().__init__()
        ndf = int(width)
        n = _n_down(size // 2) if size >= 64 else 1  # 64 -> 4: four strided convs
        chans = [1] + [ndf * min(2**i, 8) for i in range(n)]
        layers: list[nn.Module] = []
        for i in range(len(chans) - 1):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1, bias=False))
            if i > 0:
                layers.append(nn.BatchNorm2d(chans[i + 1]))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers += [nn.Conv2d(chans[-1], 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        init_weights(self, "normal", 0.02)

    def forward(self, centre: torch.Tensor) -> torch.Tensor:
        """Return (N,) logits (BCE-with-logits == sigmoid + BCE)."""
        return self.net(centre).flatten(1).mean(1)
