"""Losses of the three papers behind one interface.

Every loss object is called with tensors and returns ``(loss, metrics)`` where ``metrics``
maps names to detached scalar tensors.

- :class:`AdversarialLoss` ``'nsgan'`` (BCE; Context Encoder, EdgeConnect) or ``'hinge'``
  (SN-PatchGAN; DeepFill v2), with ``.generator(fake_logits)`` and
  ``.discriminator(real_logits, fake_logits)``;
- :class:`ReconstructionLoss` L1 or (weighted) L2;
- :class:`FeatureMatchingLoss` (EdgeConnect) over discriminator features;
- :class:`PerceptualLoss` and :class:`StyleLoss` (EdgeConnect) on VGG-19 features, built only
  from a user-supplied weights file (torchvision's ``vgg19`` state-dict layout,
  ``features.N.weight``); nothing is downloaded, and inference never builds them.

Never imports Dask or Zarr.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from torch import nn

from phirm_scale.errors import CheckpointError
from phirm_scale.models.checkpoint import load_torch_file

__all__ = [
    "AdversarialLoss",
    "FeatureMatchingLoss",
    "PerceptualLoss",
    "ReconstructionLoss",
    "StyleLoss",
    "VGG19Features",
    "load_vgg19",
]


Metrics = dict[str, torch.Tensor]


def _m(**kw: torch.Tensor) -> Metrics:
    return {k: v.detach() for k, v in kw.items()}


def _total(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum tensors left to right (as ``sum()`` would, without its integer start)."""
    it = iter(terms)
    out = next(it)
    for t in it:
        out = out + t
    return out


class AdversarialLoss:
    """GAN losses on discriminator logits.

    Parameters
    ----------
    kind : {'nsgan', 'hinge'}
        ``'nsgan'``: binary cross-entropy on sigmoid(logits); ``'hinge'``: D minimises
        ``relu(1 - real) + relu(1 + fake)``, G minimises ``-fake``.
    """

    def __init__(self, kind: str = "nsgan") -> None:
        if kind not in ("nsgan", "hinge"):
            raise ValueError(f"unknown adversarial loss {kind!r}; known: nsgan, hinge")
        self.kind = kind

    def discriminator(
        self, real: torch.Tensor, fake: torch.Tensor, *, average: bool = False
    ) -> tuple[torch.Tensor, Metrics]:
        """Return the loss of the discriminator.

        Parameters
        ----------
        real, fake : torch.Tensor
            Discriminator logits of real and generated images.
        average : bool
            Halve the sum of the real and fake terms (EdgeConnect).

        Returns
        -------
        tuple
            The loss and ``d_loss``, ``d_real``, ``d_fake`` (mean logits).
        """
        if self.kind == "hinge":
            loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        else:
            loss = F.binary_cross_entropy_with_logits(
                real, torch.ones_like(real)
            ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        if average:
            loss = loss / 2
        return loss, _m(d_loss=loss, d_real=real.float().mean(), d_fake=fake.float().mean())

    def generator(self, fake: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        """Return the adversarial loss of the generator.

        Parameters
        ----------
        fake : torch.Tensor
            Discriminator logits of generated images.

        Returns
        -------
        tuple
            The loss and ``g_adv``.
        """
        if self.kind == "hinge":
            loss = -fake.mean()
        else:
            loss = F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
        return loss, _m(g_adv=loss)


class ReconstructionLoss:
    """Mean absolute (``'l1'``) or squared (``'l2'``) error, optionally weighted per pixel."""

    def __init__(self, kind: str = "l1", name: str | None = None) -> None:
        if kind not in ("l1", "l2"):
            raise ValueError(f"unknown reconstruction loss {kind!r}; known: l1, l2")
        self.kind = kind
        self.name = name or f"g_{kind}"

    def __call__(
        self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Metrics]:
        """Return the (weighted) mean error and ``{name: loss}``."""
        d = (pred - target).abs() if self.kind == "l1" else (pred - target).pow(2)
        if weight is not None:
            d = d * weight
        loss = d.mean()
        return loss, {self.name: loss.detach()}


class FeatureMatchingLoss:
    """Sum over layers of the L1 distance between fake and (detached) real features."""

    def __call__(
        self, fake_feats: Sequence[torch.Tensor], real_feats: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, Metrics]:
        """Return the feature-matching loss and ``{'g_fm': loss}``."""
        loss = _total(F.l1_loss(f, r.detach()) for f, r in zip(fake_feats, real_feats, strict=True))
        return loss, {"g_fm": loss.detach()}


# --------------------------------------------------------------------------- VGG

_VGG19_CFG: list[int | str] = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
]
#: relu layers used by EdgeConnect: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (perceptual);
#: relu2_2, relu3_4, relu4_4, relu5_2 (style)
_RELU_INDEX = {
    "relu1_1": 1,
    "relu1_2": 3,
    "relu2_1": 6,
    "relu2_2": 8,
    "relu3_1": 11,
    "relu3_2": 13,
    "relu3_3": 15,
    "relu3_4": 17,
    "relu4_1": 20,
    "relu4_2": 22,
    "relu4_3": 24,
    "relu4_4": 26,
    "relu5_1": 29,
    "relu5_2": 31,
}


class VGG19Features(nn.Module):
    """VGG-19 convolutional trunk laid out like torchvision's ``vgg19().features``.

    Keys ``features.N.weight``; frozen; single-channel input is repeated to RGB and normalised
    with the ImageNet mean/std.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _VGG19_CFG:
            if isinstance(v, str):  # "M"
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
                c = v
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Return the features named in ``names`` (``'relu1_1'``...).

        Parameters
        ----------
        x : torch.Tensor
            Images (N, 1 or 3, H, W) in [0, 1].
        names : iterable of str
            ReLU layer names.

        Returns
        -------
        dict of str to torch.Tensor
            The features by name.
        """
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = (x - self.mean) / self.std
        want = {_RELU_INDEX[n]: n for n in names}
        out = {}
        last = max(want)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in want:
                out[want[i]] = x
            if i >= last:
                break
        return out


def load_vgg19(path: str | Path) -> VGG19Features:
    """Build the VGG-19 features from a local weights file (nothing is downloaded).

    Parameters
    ----------
    path : str or Path
        A torchvision ``vgg19`` state dict, or one holding only ``features.*`` keys.

    Returns
    -------
    VGG19Features
        Frozen, in eval mode.

    Raises
    ------
    CheckpointError
        A missing, unreadable or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"VGG weights {path}: no such file (nothing is downloaded; pass a local vgg19 "
            "state dict)"
        )
    sd = load_torch_file(path, what="VGG weights", expected="a VGG-19 state dict")
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"VGG weights {path}: not a VGG-19 state dict ({type(sd).__name__})")
    feats = {k: v for k, v in sd.items() if k.startswith("features.")}
    net = VGG19Features()
    own = {k: v for k, v in net.state_dict().items() if k.startswith("features.")}
    if set(feats) != set(own) or any(tuple(feats[k].shape) != tuple(own[k].shape) for k in own):
        raise CheckpointError(
            f"VGG weights {path}: not a VGG-19 state dict (expected torchvision's "
            "features.N.weight layout)"
        )
    net.load_state_dict(feats, strict=False)
    return net.eval()


def _gram(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class PerceptualLoss:
    """EdgeConnect's perceptual loss: L1 between relu{1..5}_1 features."""

    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

    def __init__(
        self, vgg: VGG19Features, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0)
    ) -> None:
        self.vgg, self.weights = vgg, weights

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        """Return the perceptual loss and ``{'g_perceptual': loss}``."""
        fp, ft = self.vgg(pred, self.layers), self.vgg(target, self.layers)
        loss = _total(
            w * F.l1_loss(fp[n], ft[n]) for w, n in zip(self.weights, self.layers, strict=True)
        )
        return loss, {"g_perceptual": loss.detach()}


class StyleLoss:
    """EdgeConnect's style loss: L1 between Gram matrices of relu2_2, relu3_4, relu4_4, relu5_2."""

    layers = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")

    def __init__(self, vgg: VGG19Features) -> None:
        self.vgg = vgg

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        """Return the style loss and ``{'g_style': loss}``."""
        fp, ft = self.vgg(pred, self.layers), self.vgg(target, self.layers)
        loss = _total(F.l1_loss(_gram(fp[n]), _gram(ft[n])) for n in self.layers)
        return loss, {"g_style": loss.detach()}
