"""EdgeConnect (Nazeri et al. 2019), single channel.

Two generators with the official layer names (``encoder`` / ``middle`` / ``decoder``
Sequentials, so the official ``EdgeModel_gen.pth`` / ``InpaintingModel_gen.pth`` import key for
key): the edge generator (spectral norm, input: masked grey image, masked Canny edges, mask;
output: edge probability) and the inpainting generator (input: masked image, full edge map;
output in [0, 1]), both 7x7 -> two stride-2 4x4 convs -> 8 residual blocks with dilation 2 ->
two transposed convs -> 7x7, instance norm. The discriminators are 5-layer SN PatchGANs
returning their intermediate features for the feature-matching loss. ``width`` is the base
channel count (64 in the original). Images live in [0, 1]. Never imports Dask or Zarr.
"""

from __future__ import annotations

import torch
from torch import nn

from phirm_scale.models.networks.common import init_weights, spectral_norm

__all__ = [
    "MULTIPLE",
    "EdgeConnectDiscriminator",
    "EdgeConnectGenerator",
    "EdgeGenerator",
    "InpaintGenerator",
    "PatchDiscriminator",
]

#: input sides must be multiples of this (two stride-2 convolutions)
MULTIPLE = 4


class ResnetBlock(nn.Module):
    """Residual block: two 3x3 convs (the first dilated) with instance norm, reflect padding."""

    def __init__(self, dim: int, dilation: int = 1, use_spectral_norm: bool = False) -> None:
        super().__init__()
        sn = use_spectral_norm
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            spectral_norm(nn.Conv2d(dim, dim, 3, padding=0, dilation=dilation, bias=not sn), sn),
            nn.InstanceNorm2d(dim, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            spectral_norm(nn.Conv2d(dim, dim, 3, padding=0, dilation=1, bias=not sn), sn),
            nn.InstanceNorm2d(dim, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` plus the block's residual."""
        return x + self.conv_block(x)


def _generator_body(
    in_ch: int, out_ch: int, width: int, blocks: int, sn: bool
) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential]:
    w = int(width)
    encoder = nn.Sequential(
        nn.ReflectionPad2d(3),
        spectral_norm(nn.Conv2d(in_ch, w, 7, padding=0), sn),
        nn.InstanceNorm2d(w, track_running_stats=False),
        nn.ReLU(True),
        spectral_norm(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), sn),
        nn.InstanceNorm2d(2 * w, track_running_stats=False),
        nn.ReLU(True),
        spectral_norm(nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), sn),
        nn.InstanceNorm2d(4 * w, track_running_stats=False),
        nn.ReLU(True),
    )
    middle = nn.Sequential(*[ResnetBlock(4 * w, 2, sn) for _ in range(blocks)])
    decoder = nn.Sequential(
        spectral_norm(nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1), sn),
        nn.InstanceNorm2d(2 * w, track_running_stats=False),
        nn.ReLU(True),
        spectral_norm(nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), sn),
        nn.InstanceNorm2d(w, track_running_stats=False),
        nn.ReLU(True),
        nn.ReflectionPad2d(3),
        nn.Conv2d(w, out_ch, 7, padding=0),
    )
    return encoder, middle, decoder


class EdgeGenerator(nn.Module):
    """(grey_masked, edges_masked, mask) (N, 3, H, W) -> edge logits (N, 1, H, W)."""

    def __init__(self, width: int = 64, blocks: int = 8, use_spectral_norm: bool = True) -> None:
        super().__init__()
        self.encoder, self.middle, self.decoder = _generator_body(
            3, 1, width, blocks, use_spectral_norm
        )
        init_weights(self, "normal", 0.02)  # BaseNetwork.init_weights of the official code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return edge logits (their sigmoid is the edge map)."""
        return self.decoder(self.middle(self.encoder(x)))


class InpaintGenerator(nn.Module):
    """(image_masked, edges) (N, 2, H, W) -> image in [0, 1] (N, 1, H, W)."""

    def __init__(self, width: int = 64, blocks: int = 8) -> None:
        super().__init__()
        self.encoder, self.middle, self.decoder = _generator_body(2, 1, width, blocks, False)
        init_weights(self, "normal", 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the inpainted image in [0, 1]."""
        return (torch.tanh(self.decoder(self.middle(self.encoder(x)))) + 1) / 2


class PatchDiscriminator(nn.Module):
    """70x70-style PatchGAN with spectral norm; returns (logits, [features of conv1..conv5])."""

    def __init__(self, in_channels: int, width: int = 64, use_spectral_norm: bool = True) -> None:
        super().__init__()
        w, sn = int(width), use_spectral_norm
        spec = [(in_channels, w, 2), (w, 2 * w, 2), (2 * w, 4 * w, 2), (4 * w, 8 * w, 1)]
        for i, (ci, co, s) in enumerate(spec, start=1):
            layer = nn.Sequential(
                spectral_norm(nn.Conv2d(ci, co, 4, stride=s, padding=1, bias=not sn), sn),
                nn.LeakyReLU(0.2, inplace=True),
            )
            setattr(self, f"conv{i}", layer)
        self.conv5 = nn.Sequential(
            spectral_norm(nn.Conv2d(8 * w, 1, 4, stride=1, padding=1, bias=not sn), sn)
        )
        init_weights(self, "normal", 0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the patch logits and the features of conv1 to conv5."""
        feats = []
        for i in range(1, 6):
            x = getattr(self, f"conv{i}")(x)
            feats.append(x)
        return x, feats


class EdgeConnectGenerator(nn.Module):
    """The two generators as one module (``.edge`` and ``.inpaint``)."""

    def __init__(self, width: int = 64, blocks: int = 8, **_: object) -> None:
        super().__init__()
        self.edge = EdgeGenerator(width, blocks)
        self.inpaint = InpaintGenerator(width, blocks)

    def predict_edges(
        self, grey: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Return edge logits from the masked grey image and edges.

        Parameters
        ----------
        grey, edges, mask : torch.Tensor
            (N, 1, H, W) each; mask 1 = hole (the image and edges are masked here).

        Returns
        -------
        torch.Tensor
            (N, 1, H, W) edge logits.
        """
        known = 1 - mask
        return self.edge(torch.cat([grey * known + mask, edges * known, mask], dim=1))

    def inpaint_image(
        self, image: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Return the inpainted image in [0, 1] from the image and a full edge map.

        Parameters
        ----------
        image, edges, mask : torch.Tensor
            (N, 1, H, W) each; mask 1 = hole (the image is masked here).

        Returns
        -------
        torch.Tensor
            (N, 1, H, W) in [0, 1].
        """
        return self.inpaint(torch.cat([image * (1 - mask) + mask, edges], dim=1))


class EdgeConnectDiscriminator(nn.Module):
    """``.edge`` judges (grey, edges) pairs; ``.inpaint`` judges images."""

    def __init__(self, width: int = 64, **_: object) -> None:
        super().__init__()
        self.edge = PatchDiscriminator(2, width)
        self.inpaint = PatchDiscriminator(1, width)
