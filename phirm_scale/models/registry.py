"""The model registry: ``get_model(name, checkpoint=None, device='auto', **config)``.

Every caller (evaluate, the plate inpainting stage, training) gets its model here. A model is
called as ``model(images, masks)`` on (N, 1, H, W) float32 images in [0, 1] and masks
(1 = hole) and returns the composited result: the input bit for bit outside the holes, the
model's fill inside. Learned models are cached per process (a checkpoint by its content hash
and device, an untrained model by its config and device), so a Dask worker calling
``get_model`` once per task builds or loads the network once. ``get_model`` returns a light
view of the cached model: runtime options (``batch_size``, ``precision``, ``channels_last``,
``compile``, EdgeConnect's ``canny``) belong to the view, never to the shared cached model, and
``model(images, masks, batch_size=...)`` overrides the batch size per call. Never imports Dask
or Zarr.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np

from phirm_scale.errors import CheckpointError, InputError

__all__ = [
    "CLASSICAL",
    "LEARNED",
    "MODEL_NAMES",
    "ClassicalModel",
    "ContextEncoderModel",
    "DeepFillModel",
    "EdgeConnectModel",
    "InpaintModel",
    "TorchInpaintModel",
    "build_model",
    "checkpoint_hash",
    "clear_cache",
    "default_config",
    "get_model",
    "list_models",
    "resolve_device",
]

CLASSICAL = ("telea", "navier-stokes", "biharmonic")
LEARNED = ("context-encoder", "deepfill-v2", "edgeconnect")
MODEL_NAMES = CLASSICAL + LEARNED


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return list(MODEL_NAMES)


def resolve_device(device="auto"):
    """'auto' -> 'cuda' when available else 'cpu'; anything else is passed to ``torch.device``."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"bad device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available")
    return dev


# --------------------------------------------------------------------------- configs

_DEFAULTS = {
    "telea": {"radius": 3.0, "dtype": "uint16"},
    "navier-stokes": {"radius": 3.0, "dtype": "uint16"},
    "biharmonic": {},
    "context-encoder": {
        "width": 64,
        "disc_width": None,
        "size": 128,
        "bottleneck": None,
        "margin": 4 / 64,
        "seed": 0,
    },
    "deepfill-v2": {"width": 48, "disc_width": None, "seed": 0},
    "edgeconnect": {"width": 64, "disc_width": None, "blocks": 8, "sigma": 2.0, "seed": 0},
}

#: options that change only how a model runs, never its weights (allowed with a checkpoint)
_RUNTIME = ("batch_size", "precision", "channels_last", "compile", "fixed_batch", "canny")
PRECISIONS = ("fp32", "bf16", "fp16")
CANNY = ("auto", "torch", "skimage")


def default_config(name: str, **config) -> dict:
    """The complete config of model ``name``: paper defaults updated with ``config``.

    Raises
    ------
    InputError
        Unknown model name or unknown option.
    """
    _check_name(name)
    base = dict(_DEFAULTS[name])
    unknown = sorted(set(config) - set(base))
    if unknown:
        raise InputError(
            f"model {name!r}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(base)) or 'none'}"
        )
    base.update({k: v for k, v in config.items() if v is not None})
    if name == "context-encoder":
        from phirm_scale.models.networks.context_encoder import ce_defaults

        try:
            base = ce_defaults(base)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    if name in LEARNED:
        w = int(base["width"])
        if w < 1:
            raise InputError(f"model {name!r}: width must be >= 1; got {w}")
        if name == "deepfill-v2" and w % 4:
            raise InputError(f"model 'deepfill-v2': width must be a multiple of 4; got {w}")
        if base.get("disc_width") is None:
            base["disc_width"] = round(w * 64 / 48) if name == "deepfill-v2" else w
        base["width"] = w
    return base


def _check_name(name) -> None:
    if name not in MODEL_NAMES:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")


# --------------------------------------------------------------------------- batches


def _check_batch(images, masks) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    masks = np.asarray(masks)
    if images.ndim != 4 or images.shape[1] != 1:
        raise InputError(f"images must have shape (N, 1, H, W); got {images.shape}")
    if masks.shape != images.shape:
        raise InputError(f"masks must have the images' shape {images.shape}; got {masks.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise InputError(f"images must be float in [0, 1]; got dtype {images.dtype}")
    images = images.astype(np.float32, copy=False)
    if images.size and not np.isfinite(images).all():
        raise InputError("images contain NaN or infinite values")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise InputError(
            f"images must lie in [0, 1]; got range [{images.min():.4g}, {images.max():.4g}]"
        )
    return images, masks != 0


class InpaintModel:
    """Base class: ``model(images, masks) -> composited float32 (N, 1, H, W)``."""

    name: str = ""
    checkpoint_hash: str | None = None
    #: ``__call__`` takes ``batch_size=`` (phirm_scale.inpaint passes its own batch size)
    per_call_batch_size = True

    def __init__(self, config: dict, device="cpu"):
        self.config = dict(config)
        self.device = device

    def __call__(self, images, masks, *, batch_size: int | None = None) -> np.ndarray:
        """Inpaint a batch.

        Parameters
        ----------
        images : (N, 1, H, W) ndarray of float
            Values in [0, 1].
        masks : (N, 1, H, W) ndarray
            Nonzero = hole.
        batch_size : int, optional
            Tiles per forward pass for this call (default: the model's ``batch_size``).

        Returns
        -------
        (N, 1, H, W) ndarray of float32
            ``images`` bit for bit outside the holes; the model's fill (clipped to [0, 1]) inside.
        """
        imgs, holes = _check_batch(images, masks)
        if imgs.shape[0] == 0 or not holes.any():
            return imgs.copy()
        fill = self._fill(imgs, holes, batch_size=batch_size)
        return np.where(holes, np.clip(fill, 0.0, 1.0).astype(np.float32), imgs)

    def _fill(
        self, images: np.ndarray, holes: np.ndarray, batch_size=None
    ) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def with_options(self, **options) -> InpaintModel:
        """A shallow copy (sharing the network) with runtime options set; the original is
        untouched. Classical models take ``batch_size`` only (ignored).
        """
        import copy

        view = copy.copy(self)
        for k, v in options.items():
            if v is None:
                continue
            if k == "batch_size":
                v = int(v)
                if v < 1:
                    raise InputError(f"batch_size must be >= 1; got {v}")
            elif k == "precision":
                if v not in PRECISIONS:
                    raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got {v!r}")
            elif k == "canny":
                if v not in CANNY:
                    raise InputError(f"canny must be one of {', '.join(CANNY)}; got {v!r}")
            elif k in ("channels_last", "compile", "fixed_batch"):
                v = bool(v)
            elif k not in _RUNTIME:
                raise InputError(f"unknown runtime option {k!r}")
            setattr(view, k, v)
        return view

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r}, checkpoint_hash={self.checkpoint_hash!r})"


class ClassicalModel(InpaintModel):
    """Telea, Navier-Stokes or biharmonic, applied image by image on the CPU."""

    def __init__(self, name: str, config: dict):
        super().__init__(config, "cpu")
        self.name = name
        # OpenCV's methods fill a whole integer field in one call, faster than tile by tile
        # and without seams: phirm_scale.inpaint.inpaint_field then uses inpaint_integer.
        self.whole_field = name in ("telea", "navier-stokes")

    def inpaint_integer(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """Telea / Navier-Stokes straight on a uint8/uint16 (H, W) field (1 = hole), no
        normalisation; the result equals ``image`` outside the hole.
        """
        import cv2

        if not self.whole_field:
            raise InputError(f"{self.name}: no integer whole-field path")
        flag = cv2.INPAINT_TELEA if self.name == "telea" else cv2.INPAINT_NS
        h = (np.asarray(hole) != 0).astype(np.uint8)
        filled = cv2.inpaint(np.ascontiguousarray(image), h, float(self.config["radius"]), flag)
        return np.where(h.astype(bool), filled, image)

    def _fill(self, images, holes, batch_size=None):
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


class TorchInpaintModel(InpaintModel):
    """A learned model: a generator plus the pre/post-processing of its paper.

    Subclasses implement :meth:`prepare` (numpy batch -> dict of tensors on the device, adding
    e.g. Canny edges) and :meth:`generate` (differentiable forward, returning a dict with
    ``'output'``: the raw (N, 1, H, W) prediction in [0, 1] over the whole image). The trainer
    uses the same two methods.
    """

    kind: str = ""

    def __init__(self, config: dict, device="cpu", generator=None):
        super().__init__(config, device)
        from phirm_scale.models.networks import make_generator
        from phirm_scale.models.networks.common import seeded

        self.name = self.kind
        net_cfg = {k: v for k, v in config.items() if k not in ("seed",)}
        if generator is None:
            with seeded(config.get("seed", 0)):
                generator = make_generator(self.kind, net_cfg)
        self.generator = generator.to(device)
        self.generator.eval()
        self.batch_size = int(config.get("batch_size") or 8)
        self.precision = "fp32"
        self.channels_last = False
        self.compile = False
        self.fixed_batch = False  # pad partial batches to batch_size (implied by compile)
        self.canny = "auto"
        self._compiled: dict = {}  # shared by every view of this model
        self._layout_lock = threading.Lock()

    def _fn(self, method: str):
        """``generator.<method>``, compiled with ``torch.compile`` when this view asks for it
        (compiled once per model and shared by its views).
        """
        fn = self.generator if method == "forward" else getattr(self.generator, method)
        if not self.compile:
            return fn
        with self._layout_lock:
            if method not in self._compiled:
                import torch

                self._compiled[method] = torch.compile(fn, dynamic=False)
            return self._compiled[method]

    def autocast(self):
        """The autocast context of this view's precision (a null context for fp32)."""
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dev = torch.device(self.device)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=dev.type, dtype=dtype)

    def _layout(self, batch: dict) -> dict:
        import torch

        if not self.channels_last:
            return batch
        with self._layout_lock:
            self.generator.to(memory_format=torch.channels_last)
        return {
            k: (
                v.contiguous(memory_format=torch.channels_last)
                if isinstance(v, torch.Tensor) and v.dim() == 4
                else v
            )
            for k, v in batch.items()
        }

    # -- hooks
    def prepare(self, images: np.ndarray, holes: np.ndarray, *, train: bool = False) -> dict:
        import torch

        return {
            "image": torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(self.device),
            "mask": torch.from_numpy(np.ascontiguousarray(holes, np.float32)).to(self.device),
        }

    def generate(self, batch: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- inference
    def _fill(self, images, holes, batch_size=None):
        import torch

        bs = int(batch_size or self.batch_size)
        out = np.empty_like(images)
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.inference_mode():
                # compiled graphs are specialised to one batch shape: pad partial batches to
                # the view's batch size (tiles are independent, the padding is dropped)
                full = max(bs, self.batch_size) if (self.compile or self.fixed_batch) else 0
                for s in range(0, images.shape[0], bs):
                    sl = slice(s, s + bs)
                    im, ho = images[sl], holes[sl]
                    n = im.shape[0]
                    if n < full:
                        rep = np.r_[np.arange(n), np.full(full - n, n - 1)]
                        im, ho = im[rep], ho[rep]
                    batch = self._layout(self.prepare(im, ho))
                    with self.autocast():
                        res = self.generate(batch)["output"]
                    out[sl] = res[:n].float().cpu().numpy()
        finally:
            self.generator.train(was_training)
        return out


def _pad(batch: dict, multiple: int):
    import torch.nn.functional as F

    from phirm_scale.models.networks.common import pad_to_multiple

    h, w = batch["image"].shape[-2:]
    if h % multiple == 0 and w % multiple == 0:
        return batch, (h, w)
    out = {}
    for k, v in batch.items():
        if k == "mask" or k.startswith("edges"):
            out[k] = F.pad(v, (0, (-w) % multiple, 0, (-h) % multiple))  # zeros: known, no edge
        else:
            out[k] = pad_to_multiple(v, multiple)[0]
    return out, (h, w)


class DeepFillModel(TorchInpaintModel):
    """DeepFill v2: masked image in [-1, 1] (holes zeroed) + mask -> coarse and refined fill."""

    kind = "deepfill-v2"

    def generate(self, batch):
        from phirm_scale.models.networks.deepfill_v2 import MULTIPLE

        padded, (h, w) = _pad(batch, MULTIPLE)
        x = padded["image"] * 2 - 1
        m = padded["mask"]
        s1, s2 = self._fn("forward")(x * (1 - m), m)
        return {"stage1": (s1[..., :h, :w] + 1) / 2, "output": (s2[..., :h, :w] + 1) / 2}


class EdgeConnectModel(TorchInpaintModel):
    """EdgeConnect: Canny edges of the known pixels -> edge generator -> inpainting generator."""

    kind = "edgeconnect"

    def canny_backend(self) -> str:
        """'torch' (phirm_scale.models.canny, batched on the model's device) or 'skimage'
        (skimage.feature.canny per tile on the CPU). 'auto': torch on CUDA, skimage on the
        CPU, where it is faster; both give the same edges (docs/models.md).
        """
        import torch

        if self.canny == "auto":
            return "torch" if torch.device(self.device).type == "cuda" else "skimage"
        return self.canny

    def edges(self, images, known=None):
        """Canny edges (float 0/1) of a (N, 1, H, W) tensor on the model's device, restricted to
        ``known`` pixels when given (skimage's ``mask`` semantics, then ``& known``).
        """
        import torch

        sigma = float(self.config.get("sigma", 2.0))
        if self.canny_backend() == "torch":
            from phirm_scale.models.canny import canny as torch_canny

            e = torch_canny(images, sigma=sigma, mask=known)
            if known is not None:
                e = e & (known != 0)
            return e.to(torch.float32)
        from skimage.feature import canny

        imgs = images.detach().float().cpu().numpy().astype(np.float64)
        kn = None if known is None else (known.detach().cpu().numpy() != 0)
        out = np.zeros(imgs.shape, np.float32)
        for i in range(imgs.shape[0]):
            if kn is None:
                out[i, 0] = canny(imgs[i, 0], sigma=sigma)
            elif kn[i, 0].any():
                out[i, 0] = canny(imgs[i, 0], sigma=sigma, mask=kn[i, 0]) & kn[i, 0]
        return torch.from_numpy(out).to(images.device)

    def prepare(self, images, holes, *, train=False):
        batch = super().prepare(images, holes)
        batch["edges"] = self.edges(batch["image"], batch["mask"] == 0)
        if train:
            batch["edges_gt"] = self.edges(batch["image"])
        return batch

    def generate(self, batch, *, edges_for_inpaint=None):
        """``edges_for_inpaint``: 'gt' uses the true edges (stage 'inpaint' training)."""
        import torch

        from phirm_scale.models.networks.edgeconnect import MULTIPLE

        padded, (h, w) = _pad(batch, MULTIPLE)
        img, m, e_in = padded["image"], padded["mask"], padded["edges"]
        out = {}
        if edges_for_inpaint == "gt":
            e_comp = padded["edges_gt"]
        else:
            logits = self._fn("predict_edges")(img, e_in, m)
            e = torch.sigmoid(logits)
            out["edge_logits"] = logits[..., :h, :w]
            out["edges"] = e[..., :h, :w]
            e_comp = e * m + e_in * (1 - m)
            if edges_for_inpaint == "detach":
                e_comp = e_comp.detach()
        out["output"] = self._fn("inpaint_image")(img, e_comp, m)[..., :h, :w]
        return out


class ContextEncoderModel(TorchInpaintModel):
    """Context Encoder on arbitrary masks: the hole's bounding box (plus a ``margin`` band of
    known pixels, Pathak's overlap) becomes the centre patch; a context window twice its side,
    replicate-padded at the image border, is resized to ``size``; the ``size/2`` centre
    prediction is resized back onto the box.
    """

    kind = "context-encoder"

    def geometry(self, holes: np.ndarray) -> list[tuple[int, int, int]]:
        """Per image: (top, left, side) of the centre box."""
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

    def prepare(self, images, holes, *, train=False):
        batch = super().prepare(images, holes)
        batch["geometry"] = self.geometry(holes)
        return batch

    def crop(self, batch):
        """Contexts (N, 1, size, size) in [-1, 1] with holes zeroed, their masks, and the true
        centres (N, 1, size/2, size/2) in [0, 1] resized from the boxes.
        """
        import torch
        import torch.nn.functional as F

        size = int(self.config["size"])
        img, m = batch["image"], batch["mask"]
        ctxs, masks, centres = [], [], []
        for i, (top, left, side) in enumerate(batch["geometry"]):
            pad = side  # context = box +- side/2, so `side` of padding always suffices
            pi = F.pad(img[i : i + 1], (pad, pad, pad, pad), mode="replicate")
            pm = F.pad(m[i : i + 1], (pad, pad, pad, pad))
            t, l = top + pad - side // 2, left + pad - side // 2
            ci = pi[..., t : t + 2 * side, l : l + 2 * side]
            cm = pm[..., t : t + 2 * side, l : l + 2 * side]
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
                ..., t + side // 2 : t + side // 2 + side, l + side // 2 : l + side // 2 + side
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

    def paste(self, batch, centre):
        """Resize predicted centres (N, 1, size/2, size/2) in [0, 1] onto their boxes."""
        import torch
        import torch.nn.functional as F

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

    def generate(self, batch):
        ctx, cmask, centre_real = self.crop(batch)
        centre = (self._fn("forward")(ctx) + 1) / 2
        return {
            "centre": centre,
            "centre_real": centre_real,
            "context_mask": cmask,
            "output": self.paste(batch, centre),
        }


_CLASSES = {c.kind: c for c in (ContextEncoderModel, DeepFillModel, EdgeConnectModel)}


def build_model(name: str, config: dict, device="cpu", generator=None) -> TorchInpaintModel:
    """Instantiate the learned model ``name`` from a complete config (no checkpoint)."""
    return _CLASSES[name](config, device=device, generator=generator)


# --------------------------------------------------------------------------- get_model

_CACHE: dict = {}
_PATH_HASH: dict = {}
_LOCK = threading.Lock()
_BUILD_LOCK = threading.RLock()  # one thread builds or loads a network; others then find it


def clear_cache() -> None:
    """Forget the per-process cache of loaded checkpoints and built untrained models."""
    with _LOCK:
        _CACHE.clear()
        _PATH_HASH.clear()


def get_model(name=None, checkpoint=None, device="auto", **config) -> InpaintModel:
    """The inpainting model ``name``, untrained or loaded from a checkpoint.

    Parameters
    ----------
    name : str
        One of :func:`list_models`. May be None when ``checkpoint`` is given.
    checkpoint : str or Path, optional
        A phirm-scale checkpoint; the model is rebuilt from its saved config alone, and cached
        per process by (content hash, device).
    device : str, optional
        ``'auto'`` (CUDA if available, else CPU), ``'cpu'``, ``'cuda'``, ``'cuda:1'``...
        Classical models always run on the CPU.
    **config
        Network options (``width``...; see :func:`default_config`) for an untrained model;
        ``batch_size`` (inference batch) is accepted always.

    Returns
    -------
    InpaintModel
        Callable as ``model(images, masks)``; has ``.name``, ``.device``, ``.checkpoint_hash``.

    Raises
    ------
    InputError
        Unknown name or option, or network options together with a checkpoint.
    CheckpointError
        Unreadable checkpoint, or one holding another model.
    """
    if name is None and checkpoint is None:
        raise InputError("get_model needs a model name or a checkpoint")
    if name is not None:
        _check_name(name)
    runtime = {k: config.pop(k) for k in _RUNTIME if k in config}
    if checkpoint is None:
        cfg = default_config(name, **config)
        if name in CLASSICAL:
            return ClassicalModel(name, cfg).with_options(batch_size=runtime.get("batch_size"))
        import json

        dev = resolve_device(device)
        key = ("untrained", name, json.dumps(cfg, sort_keys=True, default=str), str(dev))
        with _BUILD_LOCK:
            with _LOCK:
                model = _CACHE.get(key)
            if model is None:
                built = build_model(name, cfg, dev)
                with _LOCK:
                    model = _CACHE.setdefault(key, built)
        return model.with_options(**runtime)
    if name in CLASSICAL:
        raise InputError(f"model {name!r} is classical and takes no checkpoint")
    dev = resolve_device(device)
    path, key_path = _file_key(checkpoint)
    with _BUILD_LOCK:
        model = _load_cached(name, path, key_path, dev)
    bad = {k: v for k, v in config.items() if model.config.get(k) != v}
    if bad:
        raise InputError(
            f"checkpoint {checkpoint}: options {', '.join(f'{k}={v!r}' for k, v in bad.items())} differ from its saved "
            "config (a checkpoint is rebuilt from its own config)"
        )
    return model.with_options(**runtime)


def _load_cached(name, path, key_path, dev):
    with _LOCK:
        digest = _PATH_HASH.get(key_path)
        model = _CACHE.get((digest, str(dev))) if digest else None
    if model is None:
        from phirm_scale.models.checkpoint import load_checkpoint, load_state

        ck = load_checkpoint(path, expected_model=name)
        with _LOCK:
            model = _CACHE.get((ck.content_hash, str(dev)))
        if model is None:
            from phirm_scale.models.networks import make_generator

            gen = make_generator(ck.model, {k: v for k, v in ck.config.items() if k != "seed"})
            load_state(gen, ck.state_dicts["generator"], what="generator", source=path)
            model = build_model(ck.model, ck.config, dev, generator=gen)
            model.checkpoint_hash = ck.content_hash
            model.checkpoint_path = path
            model.provenance = ck.provenance
        with _LOCK:
            _PATH_HASH[key_path] = ck.content_hash
            _CACHE[(ck.content_hash, str(dev))] = model
    return model


def _file_key(checkpoint) -> tuple[Path, tuple[str, int, int]]:
    """A checkpoint's resolved path and its cache key (path, mtime, size); a missing file is
    one error naming it.
    """
    path = Path(checkpoint).resolve()
    try:
        st = os.stat(path)
    except OSError:
        raise CheckpointError(f"checkpoint {checkpoint}: no such file") from None
    return path, (str(path), st.st_mtime_ns, st.st_size)


def checkpoint_hash(checkpoint, name: str | None = None) -> str:
    """The content hash of a checkpoint file (verified), without building its network."""
    from phirm_scale.models.checkpoint import load_checkpoint

    path, key_path = _file_key(checkpoint)
    with _LOCK:
        digest = _PATH_HASH.get(key_path)
    if digest is None:
        digest = load_checkpoint(path, expected_model=name).content_hash
        with _LOCK:
            _PATH_HASH[key_path] = digest
    return digest
