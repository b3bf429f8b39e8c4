"""DeepFill v2 (Yu et al. 2019, free-form inpainting with gated convolutions), single channel.

Layer names follow the widely used PyTorch port (``Generator.stage1`` coarse network,
``Generator.stage2`` refinement network with a dilated-conv branch and a contextual-attention
branch) so that its ``states.pth`` files import key for key (see
:mod:`phirm_scale.models.importers`). ``width`` is the port's ``cnum`` (48 in the original).
The discriminator is the SN-PatchGAN: six 5x5 stride-2 spectral-normalised convolutions on
(image, mask), trained with the hinge loss. Images live in [-1, 1] inside the network.
Never imports Dask or Zarr.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from torch import nn

from phirm_scale.models.networks.common import extract_patches, same_pad, spectral_norm

__all__ = ["MULTIPLE", "ContextualAttention", "DeepFillDiscriminator", "DeepFillGenerator", "GConv"]

#: input sides must be multiples of this (two stride-2 stages, then attention at rate 2)
MULTIPLE = 8


class GConv(nn.Module):
    """Gated convolution: ``act(conv_f(x)) * sigmoid(conv_g(x))`` from one conv with 2x outputs.

    An output layer (``gated=False``, ``activation=None``) is a plain convolution.
    """

    def __init__(
        self,
        cnum_in: int,
        cnum_out: int,
        ksize: int,
        stride: int = 1,
        padding: int | str = "auto",
        rate: int = 1,
        activation: str | None = "elu",
        gated: bool = True,
    ) -> None:
        super().__init__()
        self.cnum_out = int(cnum_out)
        self.gated = bool(gated)
        num_conv_out = 2 * cnum_out if gated else cnum_out
        if padding == "auto":
            padding = rate * (ksize - 1) // 2
        self.conv = nn.Conv2d(
            cnum_in, num_conv_out, ksize, stride=stride, padding=padding, dilation=rate
        )
        self.activation = {"elu": nn.ELU(), "relu": nn.ReLU(), None: None}[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the gated (or plain) convolution of ``x``."""
        x = self.conv(x)
        if not self.gated:
            return x if self.activation is None else self.activation(x)
        x, y = torch.split(x, self.cnum_out, dim=1)
        if self.activation is not None:
            x = self.activation(x)
        return x * torch.sigmoid(y)


class GDeConv(nn.Module):
    """Nearest x2 upsampling followed by a gated 3x3 convolution."""

    def __init__(self, cnum_in: int, cnum_out: int, padding: int = 1) -> None:
        super().__init__()
        self.conv = GConv(cnum_in, cnum_out, 3, 1, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class GDownsamplingBlock(nn.Module):
    """A stride-2 gated conv then a gated conv."""

    def __init__(self, cnum_in: int, cnum_out: int, cnum_hidden: int | None = None) -> None:
        super().__init__()
        cnum_hidden = cnum_out if cnum_hidden is None else cnum_hidden
        self.conv1_downsample = GConv(cnum_in, cnum_hidden, 3, 2)
        self.conv2 = GConv(cnum_hidden, cnum_out, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1_downsample(x))


class GUpsamplingBlock(nn.Module):
    """A x2 upsampling gated conv then a gated conv."""

    def __init__(self, cnum_in: int, cnum_out: int, cnum_hidden: int | None = None) -> None:
        super().__init__()
        cnum_hidden = cnum_out if cnum_hidden is None else cnum_hidden
        self.conv1_upsample = GDeConv(cnum_in, cnum_hidden)
        self.conv2 = GConv(cnum_hidden, cnum_out, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1_upsample(x))


class CoarseGenerator(nn.Module):
    """Stage 1: gated encoder-decoder with dilated bottleneck (rates 2, 4, 8, 16)."""

    def __init__(self, cnum_in: int, cnum: int, cnum_out: int = 1) -> None:
        super().__init__()
        self.conv1 = GConv(cnum_in, cnum // 2, 5, 1, padding=2)
        self.down_block1 = GDownsamplingBlock(cnum // 2, cnum)
        self.down_block2 = GDownsamplingBlock(cnum, 2 * cnum)
        self.conv_bn1 = GConv(2 * cnum, 2 * cnum, 3, rate=1, padding=1)
        self.conv_bn2 = GConv(2 * cnum, 2 * cnum, 3, rate=2, padding=2)
        self.conv_bn3 = GConv(2 * cnum, 2 * cnum, 3, rate=4, padding=4)
        self.conv_bn4 = GConv(2 * cnum, 2 * cnum, 3, rate=8, padding=8)
        self.conv_bn5 = GConv(2 * cnum, 2 * cnum, 3, rate=16, padding=16)
        self.conv_bn6 = GConv(2 * cnum, 2 * cnum, 3, rate=1, padding=1)
        self.conv_bn7 = GConv(2 * cnum, 2 * cnum, 3, rate=1, padding=1)
        self.up_block1 = GUpsamplingBlock(2 * cnum, cnum)
        self.up_block2 = GUpsamplingBlock(cnum, cnum // 4, cnum_hidden=cnum // 2)
        self.conv_to_rgb = GConv(cnum // 4, cnum_out, 3, 1, activation=None, gated=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.down_block1(x)
        x = self.down_block2(x)
        for layer in (
            self.conv_bn1,
            self.conv_bn2,
            self.conv_bn3,
            self.conv_bn4,
            self.conv_bn5,
            self.conv_bn6,
            self.conv_bn7,
        ):
            x = layer(x)
        x = self.up_block1(x)
        x = self.up_block2(x)
        return torch.tanh(self.conv_to_rgb(x))


class ContextualAttention(nn.Module):
    """Contextual attention (DeepFill v1/v2).

    Fills foreground features with a softmax-weighted paste of background patches, matched by
    cosine similarity of 3x3 patches at half resolution, with the 3x3 'fuse' propagation of
    neighbouring attention scores.

    Unlike the reference code, which uses the first sample's mask for the whole batch, every
    sample uses its own mask.
    """

    def __init__(
        self,
        ksize: int = 3,
        stride: int = 1,
        rate: int = 2,
        fuse_k: int = 3,
        softmax_scale: float = 10.0,
        fuse: bool = True,
        n_down: int = 2,
    ) -> None:
        super().__init__()
        self.ksize, self.stride, self.rate = ksize, stride, rate
        self.fuse_k, self.softmax_scale, self.fuse, self.n_down = (
            fuse_k,
            softmax_scale,
            fuse,
            n_down,
        )

    def forward(self, f: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """f, b: (N, C, H, W) features; mask: (N, 1, H*2**n_down, W*2**n_down), 1 = hole."""
        rate, ksize, stride = self.rate, self.ksize, self.stride
        kernel = 2 * rate
        n, _c, h, w = f.shape
        raw_w = extract_patches(
            b, kernel, rate * stride
        )  # N, L, C, 4, 4 (full-res patches to paste)
        f_s = F.interpolate(f, scale_factor=1.0 / rate, mode="nearest")
        b_s = F.interpolate(b, scale_factor=1.0 / rate, mode="nearest")
        hs, ws = f_s.shape[-2:]
        hb, wb = b_s.shape[-2:]
        w_p = extract_patches(b_s, ksize, stride)  # N, L, C, 3, 3
        m = F.interpolate(mask.to(f.dtype), size=(hb, wb), mode="nearest")
        m_p = extract_patches(m, ksize, stride)  # N, L, 1, 3, 3
        mm = (m_p.mean(dim=(2, 3, 4)) == 0).to(f.dtype)  # N, L: 1 = patch entirely known
        fuse_weight = torch.eye(self.fuse_k, device=f.device, dtype=f.dtype).view(
            1, 1, self.fuse_k, self.fuse_k
        )
        out = []
        for i in range(n):
            wi = w_p[i]
            norm = (
                wi.pow(2).sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8).sqrt()
            )  # = max(|w|, 1e-4); finite gradient at 0
            yi = F.conv2d(same_pad(f_s[i : i + 1], ksize), wi / norm)  # 1, L, hs, ws
            if self.fuse:
                n_patches = hb * wb
                yi = yi.reshape(1, 1, n_patches, hs * ws)
                yi = F.conv2d(same_pad(yi, self.fuse_k), fuse_weight)
                yi = (
                    yi.reshape(1, hb, wb, hs, ws)
                    .permute(0, 2, 1, 4, 3)
                    .reshape(1, 1, n_patches, hs * ws)
                )
                yi = F.conv2d(same_pad(yi, self.fuse_k), fuse_weight)
                yi = yi.reshape(1, wb, hb, ws, hs).permute(0, 2, 1, 4, 3)
            yi = yi.reshape(1, hb * wb, hs, ws)
            mi = mm[i].view(1, -1, 1, 1)
            yi = F.softmax(yi * mi * self.softmax_scale, dim=1) * mi
            yi = F.conv_transpose2d(yi, raw_w[i], stride=rate, padding=1) / 4.0
            out.append(yi[..., :h, :w])
        return torch.cat(out, dim=0)


class FineGenerator(nn.Module):
    """Stage 2: a dilated gated-conv branch and a contextual-attention branch, merged.

    The conv branch is the reference's (conv 5x5, two downsampling blocks, a 3x3 conv, then
    dilations 2, 4, 8, 16: ``conv_conv_bn1`` to ``conv_conv_bn5``, as in the PyTorch port).
    """

    def __init__(self, cnum: int, cnum_img: int = 1) -> None:
        super().__init__()
        self.conv_conv1 = GConv(cnum_img, cnum // 2, 5, 1, padding=2)
        self.conv_down_block1 = GDownsamplingBlock(cnum // 2, cnum, cnum_hidden=cnum // 2)
        self.conv_down_block2 = GDownsamplingBlock(cnum, 2 * cnum, cnum_hidden=cnum)
        self.conv_conv_bn1 = GConv(2 * cnum, 2 * cnum, 3, rate=1, padding=1)
        self.conv_conv_bn2 = GConv(2 * cnum, 2 * cnum, 3, rate=2, padding=2)
        self.conv_conv_bn3 = GConv(2 * cnum, 2 * cnum, 3, rate=4, padding=4)
        self.conv_conv_bn4 = GConv(2 * cnum, 2 * cnum, 3, rate=8, padding=8)
        self.conv_conv_bn5 = GConv(2 * cnum, 2 * cnum, 3, rate=16, padding=16)
        self.ca_conv1 = GConv(cnum_img, cnum // 2, 5, 1, padding=2)
        self.ca_down_block1 = GDownsamplingBlock(cnum // 2, cnum, cnum_hidden=cnum // 2)
        self.ca_down_block2 = GDownsamplingBlock(cnum, 2 * cnum)
        self.ca_conv_bn1 = GConv(2 * cnum, 2 * cnum, 3, 1, activation="relu")
        self.contextual_attention = ContextualAttention(
            ksize=3, stride=1, rate=2, fuse_k=3, softmax_scale=10, fuse=True, n_down=2
        )
        self.ca_conv_bn4 = GConv(2 * cnum, 2 * cnum, 3, 1)
        self.ca_conv_bn5 = GConv(2 * cnum, 2 * cnum, 3, 1)
        self.conv_bn6 = GConv(4 * cnum, 2 * cnum, 3, 1)
        self.conv_bn7 = GConv(2 * cnum, 2 * cnum, 3, 1)
        self.up_block1 = GUpsamplingBlock(2 * cnum, cnum)
        self.up_block2 = GUpsamplingBlock(cnum, cnum // 4, cnum_hidden=cnum // 2)
        self.conv_to_rgb = GConv(cnum // 4, cnum_img, 3, 1, activation=None, gated=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xnow = x
        # dilated conv branch (hallucination)
        x = self.conv_conv1(xnow)
        x = self.conv_down_block1(x)
        x = self.conv_down_block2(x)
        for layer in (
            self.conv_conv_bn1,
            self.conv_conv_bn2,
            self.conv_conv_bn3,
            self.conv_conv_bn4,
            self.conv_conv_bn5,
        ):
            x = layer(x)
        x_hallu = x
        # contextual attention branch
        x = self.ca_conv1(xnow)
        x = self.ca_down_block1(x)
        x = self.ca_down_block2(x)
        x = self.ca_conv_bn1(x)
        x = self.contextual_attention(x, x, mask)
        x = self.ca_conv_bn5(self.ca_conv_bn4(x))
        x = torch.cat([x_hallu, x], dim=1)
        x = self.conv_bn7(self.conv_bn6(x))
        x = self.up_block2(self.up_block1(x))
        return torch.tanh(self.conv_to_rgb(x))


class DeepFillGenerator(nn.Module):
    """Two-stage gated generator.

    ``forward(x, mask)`` takes the masked image ``x`` in [-1, 1] (hole pixels zeroed) and the
    mask (1 = hole), both (N, 1, H, W) with H, W multiples of 8, and returns
    ``(x_stage1, x_stage2)`` in [-1, 1].
    """

    def __init__(self, width: int = 48, **_: object) -> None:
        super().__init__()
        cnum = int(width)
        if cnum < 4 or cnum % 4:
            raise ValueError(f"deepfill-v2 width must be a positive multiple of 4; got {width}")
        self.stage1 = CoarseGenerator(3, cnum)  # image, ones, mask
        self.stage2 = FineGenerator(cnum)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x_stage1, x_stage2)`` in [-1, 1] (see the class docstring)."""
        ones = torch.ones_like(x)
        xin = x
        x_stage1 = self.stage1(torch.cat([x, ones, ones * mask], dim=1))
        x = x_stage1 * mask + xin * (1.0 - mask)
        x_stage2 = self.stage2(x, mask)
        return x_stage1, x_stage2


class DeepFillDiscriminator(nn.Module):
    """SN-PatchGAN on (image, mask).

    Six 5x5 stride-2 SN convs (cnum, 2, 4, 4, 4, 4 x cnum), LeakyReLU 0.2, output flattened
    patch scores.
    """

    def __init__(self, width: int = 64, **_: object) -> None:
        super().__init__()
        cnum = int(width)
        chans = [2, cnum, 2 * cnum, 4 * cnum, 4 * cnum, 4 * cnum, 4 * cnum]
        for i in range(6):
            setattr(self, f"conv{i + 1}", spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 5, 2, 2)))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Return the (N, P) patch scores of images ``x`` in [-1, 1] with their masks."""
        x = torch.cat([x, mask], dim=1)
        for i in range(6):
            x = getattr(self, f"conv{i + 1}")(x)
            if i < 5:
                x = self.act(x)
        return x.flatten(1)
