"""The model interface every caller sees: ``model(images, masks) -> composited images``.

:class:`InpaintModel` checks a batch, calls the subclass's fill and composites it (the input
bit for bit outside the holes). :class:`TorchInpaintModel` adds what the learned models share:
a generator, the runtime options of a view (batch size, precision, channels-last, compile),
batched inference, and the two hooks the trainers use too (:meth:`~TorchInpaintModel.prepare`,
:meth:`~TorchInpaintModel.generate`). Never imports Dask or Zarr; torch is imported lazily.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from phirm_scale.errors import InputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

__all__ = [
    "CANNY",
    "PRECISIONS",
    "RUNTIME_OPTIONS",
    "InpaintModel",
    "TorchInpaintModel",
    "check_batch",
    "pad_batch",
]

#: options that change only how a model runs, never its weights (allowed with a checkpoint)
RUNTIME_OPTIONS = ("batch_size", "precision", "channels_last", "compile", "fixed_batch", "canny")
PRECISIONS = ("fp32", "bf16", "fp16")
CANNY = ("auto", "torch", "skimage")


def check_batch(images: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch and return it as float32 images and boolean holes.

    Parameters
    ----------
    images : array_like
        (N, 1, H, W) floats in [0, 1].
    masks : array_like
        Same shape; nonzero = hole.

    Returns
    -------
    tuple of ndarray
        ``(images as float32, masks != 0)``.

    Raises
    ------
    InputError
        Wrong shape, dtype, non-finite values or values outside [0, 1].
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    if images.ndim != 4 or images.shape[1] != 1:
        raise InputError(f"images must have shape (N, 1, H, W); got {images.shape}")
    if masks.shape != images.shape:
        raise InputError(f"masks must have the images' shape {images.shape}; got {masks.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise InputError(f"images must be float in [0, 1]; got dtype {images.dtype}")
    images = images.astype(np.float32, copy=False)
    if images.size:
        # NaN propagates through min and max, and an infinity is one of them: two passes
        lo, hi = images.min(), images.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError("images contain NaN or infinite values")
        if lo < 0 or hi > 1:
            raise InputError(f"images must lie in [0, 1]; got range [{lo:.4g}, {hi:.4g}]")
    return images, masks != 0


def pad_batch(batch: dict[str, Any], multiple: int) -> tuple[dict[str, Any], tuple[int, int]]:
    """Pad every (N, C, H, W) tensor of a batch so that H and W are multiples of ``multiple``.

    Images are padded by reflection (:func:`~phirm_scale.models.networks.common.pad_to_multiple`);
    masks and edge maps (keys ``'mask'`` and ``'edges*'``) with zeros: known, no edge.

    Parameters
    ----------
    batch : dict
        Tensors of one batch (``'image'`` gives the size).
    multiple : int
        The generator's size multiple.

    Returns
    -------
    tuple
        ``(padded batch, (H, W))``: crop outputs back with ``[..., :H, :W]``.
    """
    import torch.nn.functional as F  # noqa: N812 - torch's own convention

    from phirm_scale.models.networks.common import pad_to_multiple

    h, w = batch["image"].shape[-2:]
    if h % multiple == 0 and w % multiple == 0:
        return batch, (h, w)
    out = {}
    for k, v in batch.items():
        if k == "mask" or k.startswith("edges"):
            out[k] = F.pad(v, (0, (-w) % multiple, 0, (-h) % multiple))
        else:
            out[k] = pad_to_multiple(v, multiple)[0]
    return out, (h, w)


class InpaintModel:
    """Base class: ``model(images, masks) -> composited float32 (N, 1, H, W)``.

    Parameters
    ----------
    config : dict
        The model's complete config.
    device : str or torch.device
        Where it runs.
    """

    name: str = ""
    checkpoint_hash: str | None = None
    #: ``__call__`` takes ``batch_size=`` (phirm_scale.inpaint passes its own batch size)
    per_call_batch_size = True
    #: the paper's config of this model (the registry's defaults)
    defaults: ClassVar[dict[str, Any]] = {}
    #: ``_fill`` returns the composited batch itself (clipped fill in the holes, the input
    #: elsewhere), so ``__call__`` does not composite again
    fill_is_composited = False

    def __init__(self, config: dict[str, Any], device: Any = "cpu") -> None:
        self.config = dict(config)
        self.device = device
        self.batch_size = int(config.get("batch_size") or 8)

    @classmethod
    def complete_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Check a config (defaults already merged in) and fill derived entries.

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
            An option out of range.
        """
        return config

    def __call__(self, images: Any, masks: Any, *, batch_size: int | None = None) -> np.ndarray:
        """Inpaint a batch.

        Parameters
        ----------
        images : (N, 1, H, W) ndarray of float
            Values in [0, 1].
        masks : (N, 1, H, W) ndarray
            Nonzero = hole.
        batch_size : int, optional
            Accepted for every model's sake; a learned model's forward passes always have
            :meth:`~TorchInpaintModel.forward_size` tiles, so the result never depends on it.

        Returns
        -------
        (N, 1, H, W) ndarray of float32
            ``images`` bit for bit outside the holes; the model's fill (clipped to [0, 1]) inside.
        """
        imgs, holes = check_batch(images, masks)
        if imgs.shape[0] == 0 or not holes.any():
            return imgs.copy()
        fill = self._fill(imgs, holes, batch_size=batch_size)
        if self.fill_is_composited:
            return fill
        return np.where(holes, np.clip(fill, 0.0, 1.0).astype(np.float32), imgs)

    def _fill(
        self, images: np.ndarray, holes: np.ndarray, batch_size: int | None = None
    ) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def with_options(self, **options: Any) -> InpaintModel:
        """Return a shallow copy (sharing the network) with runtime options set.

        The original is untouched, so callers sharing one cached model never see each other's
        options. Classical models take ``batch_size`` only (ignored).

        Parameters
        ----------
        **options
            Any of :data:`RUNTIME_OPTIONS`; None leaves an option as it is.

        Returns
        -------
        InpaintModel
            The view.

        Raises
        ------
        InputError
            An unknown option or a bad value.
        """
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
                view._check_precision(v)
            elif k == "canny":
                if v not in CANNY:
                    raise InputError(f"canny must be one of {', '.join(CANNY)}; got {v!r}")
            elif k in ("channels_last", "compile", "fixed_batch"):
                v = bool(v)
            elif k not in RUNTIME_OPTIONS:
                raise InputError(f"unknown runtime option {k!r}")
            setattr(view, k, v)
        return view

    def _check_precision(self, precision: str) -> None:
        """Refuse a precision this model's device cannot run (nothing to check here)."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r}, "
            f"checkpoint_hash={self.checkpoint_hash!r})"
        )


class TorchInpaintModel(InpaintModel):
    """A learned model: a generator plus the pre/post-processing of its paper.

    Subclasses implement :meth:`prepare` (numpy batch -> dict of tensors on the device, adding
    e.g. Canny edges) and :meth:`generate` (differentiable forward, returning a dict with
    ``'output'``: the raw (N, 1, H, W) prediction in [0, 1] over the whole image). The trainer
    uses the same two methods.

    Parameters
    ----------
    config : dict
        Complete config (network options and ``seed``).
    device : str or torch.device
        Where the generator lives.
    generator : torch.nn.Module, optional
        A built (e.g. loaded) generator; default: a new one seeded by ``config['seed']``.
    """

    kind: str = ""
    checkpoint_path: Any = None
    provenance: dict[str, Any] | None = None
    # composited on the device (one select there instead of clip + where over the batch on the
    # host; the same values bit for bit)
    fill_is_composited = True

    def __init__(
        self, config: dict[str, Any], device: Any = "cpu", generator: torch.nn.Module | None = None
    ) -> None:
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
        self.precision = "fp32"
        self.channels_last = False
        self.compile = False
        # kept for callers of the option; every pass has batch_size tiles now (forward_size)
        self.fixed_batch = False
        self.canny = "auto"
        self._compiled: dict[str, Callable[..., Any]] = {}  # shared by every view of this model
        self._layout_lock = threading.Lock()
        # compiled views run their autocast region one thread at a time (see _fill_batch)
        self._compiled_lock = threading.Lock()
        # per calling thread, a CUDA stream of its own (see _stream); shared by every view
        self._streams = threading.local()
        # the largest batch known to fit in the device's memory (None: not limited yet);
        # shared by every view of this model, learned from an out-of-memory error
        self._fits: dict[str, int | None] = {"batch": None}

    @classmethod
    def complete_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Check the width and fill ``disc_width`` (the generator's width unless given).

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
            A width below 1.
        """
        w = int(config["width"])
        if w < 1:
            raise InputError(f"model {cls.kind!r}: width must be >= 1; got {w}")
        config["width"] = w
        if config.get("disc_width") is None:
            config["disc_width"] = w
        return config

    def _fn(self, method: str) -> Callable[..., Any]:
        """``generator.<method>``, compiled with ``torch.compile`` when this view asks for it.

        Compiled once per model and shared by its views.
        """
        fn = self.generator if method == "forward" else getattr(self.generator, method)
        if not self.compile:
            return fn
        with self._layout_lock:
            if method not in self._compiled:
                import torch

                self._compiled[method] = torch.compile(fn, dynamic=False)
            return self._compiled[method]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Return the autocast context of this view's precision (a null context for fp32).

        Returns
        -------
        context manager
            ``torch.autocast`` or ``contextlib.nullcontext``.
        """
        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dev = torch.device(self.device)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=dev.type, dtype=dtype)

    def _layout(self, batch: dict[str, Any]) -> dict[str, Any]:
        import torch

        if not self.channels_last:
            return batch
        with self._layout_lock:
            if not self._weights_channels_last():
                # outside inference mode: the converted weights stay ordinary tensors that can
                # still be trained
                old_data = [
                    t.data for t in (*self.generator.parameters(), *self.generator.buffers())
                ]
                with torch.inference_mode(False):
                    self.generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stub lacks it
                if torch.device(self.device).type == "cuda":
                    # the new weights are written on this thread's stream: let them land before
                    # another thread's stream reads them, and keep the old ones (the copy's
                    # source, owned by another stream's memory pool) alive until then
                    torch.cuda.current_stream().synchronize()
                del old_data
        return {
            k: (
                v.contiguous(memory_format=torch.channels_last)
                if isinstance(v, torch.Tensor) and v.dim() == 4
                else v
            )
            for k, v in batch.items()
        }

    def _weights_channels_last(self) -> bool:
        """Whether every 4-D weight of the generator is in channels-last layout now.

        Every one: a weight with one input channel (or a 1x1 kernel) is both layouts at once, so
        the first weight alone says nothing.
        """
        import torch

        return all(
            p.is_contiguous(memory_format=torch.channels_last)
            for p in self.generator.parameters()
            if p.dim() == 4
        )

    def _to_device(self, a: np.ndarray) -> torch.Tensor:
        """Copy a host array to the model's device.

        On CUDA through page-locked memory, without waiting for the stream (a plain copy from
        pageable memory waits for all the stream's work).
        """
        import torch

        t = torch.from_numpy(np.ascontiguousarray(a))
        if torch.device(self.device).type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    # -- hooks
    def prepare(self, images: np.ndarray, holes: np.ndarray, *, train: bool = False) -> dict:
        """Turn a numpy batch into the tensors the generator takes, on the model's device.

        Parameters
        ----------
        images : (N, 1, H, W) ndarray of float32
            Values in [0, 1].
        holes : (N, 1, H, W) ndarray
            Nonzero = hole.
        train : bool
            Add what training needs too (e.g. EdgeConnect's true edges).

        Returns
        -------
        dict
            At least ``'image'`` and ``'mask'`` (float32 tensors).
        """
        import torch

        # the holes travel as bytes (a quarter of float32's copy) and become 0/1 floats there
        return {
            "image": self._to_device(np.asarray(images, np.float32)),
            "mask": self._to_device(np.asarray(holes) != 0).to(torch.float32),
        }

    def generate(self, batch: dict) -> dict:  # pragma: no cover - abstract
        """Run the generator on a prepared batch (differentiable).

        Parameters
        ----------
        batch : dict
            From :meth:`prepare`.

        Returns
        -------
        dict
            At least ``'output'``: the (N, 1, H, W) prediction in [0, 1].
        """
        raise NotImplementedError

    # -- inference
    def _fill(
        self, images: np.ndarray, holes: np.ndarray, batch_size: int | None = None
    ) -> np.ndarray:
        import torch

        out = np.empty_like(images)
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.inference_mode(), self._stream():
                s = 0
                while s < images.shape[0]:
                    # every forward pass has the same shape whatever the caller's batch: the
                    # kernels (oneDNN by shape, NNPACK from 16 tiles, cuDNN) are chosen by
                    # shape, so a tile's result never depends on its batch-mates (issue 20)
                    bs = self.forward_size()
                    try:
                        out[s : s + bs] = self._fill_batch(
                            images[s : s + bs], holes[s : s + bs], bs
                        )
                        fitted = True
                    except torch.OutOfMemoryError:
                        fitted = False
                    if not fitted:  # out of the except block: the failed batch's tensors are free
                        self._shrink(bs, images.shape[2:])
                        continue  # the same tiles again, in smaller batches
                    s += bs
        finally:
            self.generator.train(was_training)
        return out

    def _stream(self) -> contextlib.AbstractContextManager[Any]:
        """On CUDA, make this thread's own stream current (a null context elsewhere).

        The batcher's runner threads each run whole batches (copies in, edges, network, copy
        out). On one shared stream, a runner that waits for its own work (the Canny's
        convergence checks, the copy back to the host) waits for everything the other runner
        queued too, so the device drains at every such wait; on a stream per thread it waits
        for its own batch only while the other's kernels keep the device busy. A batch's
        tensors are made and freed on its thread's stream; the weights are only read (after
        everything the caller's stream queued before the call: a training step, say), except
        for the one channels-last conversion, which :meth:`_layout` waits for.
        """
        import torch

        dev = torch.device(self.device)
        if dev.type != "cuda":
            return contextlib.nullcontext()
        stream = getattr(self._streams, "stream", None)
        if stream is None:
            stream = self._streams.stream = torch.cuda.Stream(device=dev)
        # what the caller queued before (e.g. a training step updating the weights) comes
        # first; free when the caller's stream is idle, as in the batcher's runners
        stream.wait_stream(torch.cuda.current_stream(dev))
        return torch.cuda.stream(stream)

    def _check_precision(self, precision: str) -> None:
        """Refuse bf16 on a CUDA device without bfloat16 support (before Ampere) in one line."""
        import torch

        dev = torch.device(self.device)
        if dev.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise InputError(
                f"{self.name}: precision bf16 is not supported by {dev} (bfloat16 needs an "
                "Ampere or newer GPU); use --precision fp16 or fp32"
            )

    def _fitting(self, bs: int) -> int:
        fits = self._fits["batch"]
        return bs if fits is None else min(bs, fits)

    def forward_size(self) -> int:
        """Tiles in every forward pass of this view; a partial pass is padded to it.

        The view's ``batch_size`` (less after an out-of-memory retry). One fixed shape per
        view, so the kernels chosen by shape (oneDNN, NNPACK from 16 tiles, cuDNN) are always
        the same ones and a tile's result is the same bit for bit whichever tiles shared its
        pass and whatever the caller's batch size (issue 20). The cost is the padding of a
        call's last pass (``benchmarks/bench_fixed_passes.py``).

        Returns
        -------
        int
            The forward batch size.
        """
        return self._fitting(self.batch_size)

    def _fill_batch(self, im: np.ndarray, ho: np.ndarray, full: int) -> np.ndarray:
        """One forward pass over ``im`` (n, 1, H, W), n <= ``full``: composited tiles."""
        import torch

        # one shape per view (forward_size; compiled graphs are specialised to it too): pad a
        # partial batch with copies of its last tile (tiles are independent, the padding is
        # dropped)
        n = im.shape[0]
        if n < full:
            rep = np.r_[np.arange(n), np.full(full - n, n - 1)]
            im, ho = im[rep], ho[rep]
        batch = self._layout(self.prepare(im, ho))
        # torch.compile traces in whichever thread calls first (and again after a guard
        # fails); tracing under autocast while another thread leaves an autocast region
        # deadlocked the batcher's runners (seen on the CPU, 2026-11-26). A compiled call only
        # queues work, so running it one thread at a time costs no device time.
        # (every view of a model that has compiled code takes the lock: an eager view leaving
        # autocast is the other half of that deadlock)
        lock = self._compiled_lock if (self.compile or self._compiled) else contextlib.nullcontext()
        with lock, self.autocast():
            res = self.generate(batch)["output"]
        # composite on the device: the clipped fill in the holes, the input (an exact float32
        # copy) elsewhere -- what InpaintModel.__call__ does on the host, bit for bit
        fill = res[:n].float().clamp(0.0, 1.0)
        out = torch.where(batch["mask"][:n] != 0, fill, batch["image"][:n].float())
        return np.asarray(out.contiguous().cpu().numpy())

    def _shrink(self, bs: int, tile: tuple[int, ...]) -> None:
        """After an out-of-memory error with ``bs`` tiles: halve the batch, say so, or give up."""
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if bs <= 1:
            raise InputError(
                f"{self.name}: one {tile[0]}x{tile[1]} tile does not fit in the memory of "
                f"{self.device} (precision {self.precision}); free the device or use smaller "
                "--tile"
            ) from None
        new = bs // 2
        fits = self._fits["batch"]
        if fits is None or new < fits:
            self._fits["batch"] = new
            log.warning(
                "%s: a batch of %d tiles did not fit in the memory of %s; using %d tiles per "
                "batch from now on (--batch-size %d avoids the retry)",
                self.name,
                bs,
                self.device,
                new,
                new,
            )
