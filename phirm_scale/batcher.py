"""One batcher per model and process: hole tiles from many fields share full batches.

In a GPU worker several task threads each cut one field into hole tiles (CPU work: read, tile,
normalise) and hand them to the process's :class:`TileBatcher` for that model; its runner
threads gather tiles from all waiting fields into batches of ``batch_size``, run the model
(edges and network on the device), and hand each field its predictions back, so the field's
thread can blend and write while the device already runs the next batch. A field with only a
few hole tiles no longer means a nearly empty forward pass.

The batcher is a drop-in model for :func:`phirm_scale.inpaint.inpaint_field`: it is called as
``batcher(images, masks)`` and blocks until that request's tiles are done. A model whose
per-tile output does not depend on the other tiles of its batch (every model here: no batch
statistics at inference) gives the same result however tiles are grouped.

Never imports Dask or Zarr.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import numpy.typing as npt

#: ``model(images, masks)`` or ``model(images, masks, batch_size=n)`` on (N, 1, H, W) float32
_Model = Callable[..., npt.NDArray[np.floating[Any]]]

__all__ = ["TileBatcher", "get_batcher", "close_batchers", "field_runner"]


class _Request:
    __slots__ = ("images", "masks", "out", "todo", "done", "error")

    def __init__(self, images: npt.NDArray[np.float32], masks: npt.NDArray[np.float32]) -> None:
        self.images, self.masks = images, masks
        self.out = np.empty(images.shape, np.float32)
        self.todo = images.shape[0]
        self.done = threading.Event()
        self.error: BaseException | None = None


class TileBatcher:
    """Gathers tile requests from many threads into batches for one model.

    Parameters
    ----------
    model : callable
        ``model(images, masks, batch_size=...)`` on (N, 1, H, W) float32 arrays.
    batch_size : int
        Tiles per forward pass.
    runners : int
        Threads running batches: with 2, one prepares/copies a batch while the other's runs
        on the device.
    max_wait : float
        Seconds a runner waits for more tiles before running a partial batch.
    """

    per_call_batch_size = False  # inpaint_field calls it plainly: it sets its own batches

    def __init__(
        self, model: _Model, batch_size: int = 64, runners: int = 2, max_wait: float = 0.01
    ) -> None:
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.max_wait = float(max_wait)
        self._queue: deque[list[Any]] = deque()  # [request, start] slices not yet taken
        self._cond = threading.Condition()
        self._closed = False
        self.batches = 0
        self.tiles = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"tile-batcher-{i}", daemon=True)
            for i in range(max(1, int(runners)))
        ]
        for t in self._threads:
            t.start()

    # -- client side
    def __call__(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Inpaint ``images`` (B, 1, H, W) with holes ``masks`` in shared batches; blocks."""
        images = np.ascontiguousarray(images, np.float32)
        masks = np.ascontiguousarray(masks, np.float32)
        if images.shape[0] == 0:
            return images.copy()
        req = _Request(images, masks)
        with self._cond:
            if self._closed:
                raise RuntimeError("tile batcher is closed")
            self._queue.append([req, 0])
            self._cond.notify()
        req.done.wait()
        if req.error is not None:
            raise req.error
        return req.out

    def close(self) -> None:
        """Refuse new requests and stop the runner threads (waits up to 60 s each)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=60)

    # -- runner side
    def _take(self) -> list[tuple[_Request, int, int]] | None:
        """Up to ``batch_size`` tiles from the queue: list of (request, start, stop)."""
        import time

        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            deadline = time.monotonic() + self.max_wait
            while sum(r.images.shape[0] - s for r, s in self._queue) < self.batch_size:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            parts: list[tuple[_Request, int, int]] = []
            n = 0
            while self._queue and n < self.batch_size:
                item = self._queue[0]
                req, start = item
                stop = min(req.images.shape[0], start + self.batch_size - n)
                parts.append((req, start, stop))
                n += stop - start
                if stop == req.images.shape[0]:
                    self._queue.popleft()
                else:
                    item[1] = stop
            return parts

    def _run(self) -> None:
        while True:
            parts = self._take()
            if parts is None:
                return
            try:
                if len(parts) == 1:
                    r, a, b = parts[0]
                    xs, ms = r.images[a:b], r.masks[a:b]
                else:
                    xs = np.concatenate([r.images[a:b] for r, a, b in parts])
                    ms = np.concatenate([r.masks[a:b] for r, a, b in parts])
                if getattr(self.model, "per_call_batch_size", False):
                    pred = self.model(xs, ms, batch_size=xs.shape[0])
                else:
                    pred = self.model(xs, ms)
                pred = np.asarray(pred, np.float32)
                err = None
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting field
                err = exc
            off = 0
            with self._cond:
                self.batches += 1
                self.tiles += sum(b - a for _, a, b in parts)
            for r, a, b in parts:
                if err is not None:
                    r.error = err
                else:
                    r.out[a:b] = pred[off : off + b - a]
                off += b - a
                with self._cond:
                    r.todo -= b - a
                    finished = r.todo == 0 or err is not None
                if finished:
                    r.done.set()


_BATCHERS: dict[tuple[Hashable, int], TileBatcher] = {}
_LOCK = threading.Lock()


def get_batcher(
    model: _Model, batch_size: int, key: Hashable | None = None, runners: int = 2
) -> TileBatcher:
    """Return the process's batcher for ``model`` (a view from ``get_model``) and ``batch_size``.

    ``key`` identifies the model (default: its network object and runtime options), so every
    task thread of a worker process that asks for the same model shares one batcher.
    """
    if key is None:
        key = (
            id(getattr(model, "generator", model)),
            getattr(model, "name", ""),
            str(getattr(model, "device", "")),
            getattr(model, "precision", None),
            getattr(model, "channels_last", None),
            getattr(model, "compile", None),
            getattr(model, "canny", None),
        )
    key = (key, int(batch_size))
    with _LOCK:
        b = _BATCHERS.get(key)
        if b is None:
            b = _BATCHERS[key] = TileBatcher(model, batch_size, runners=runners)
        return b


def close_batchers() -> None:
    """Stop every batcher of this process (tests)."""
    with _LOCK:
        items = list(_BATCHERS.values())
        _BATCHERS.clear()
    for b in items:
        b.close()


#: runtime options of learned models passed through the task's model spec
_RUNTIME_KEYS = ("precision", "channels_last", "compile", "canny")


def field_runner(model: dict[str, Any], batch_size: int) -> tuple[Any, int]:
    """Return (callable, tiles per call) for :func:`~phirm_scale.inpaint.inpaint_field`.

    The callable is a learned model's process-wide batcher (all hole tiles of the field in
    one request) or the model itself.
    """
    from phirm_scale.models import get_model
    from phirm_scale.models.registry import TORCH_MODELS

    runtime = {k: model[k] for k in _RUNTIME_KEYS if model.get(k) is not None}
    net = get_model(
        model["name"],
        checkpoint=model.get("checkpoint"),
        device=model.get("device", "auto"),
        batch_size=batch_size,
        **runtime,
    )
    if model["name"] in TORCH_MODELS and model.get("batcher", True):
        return get_batcher(net, batch_size), 1 << 16
    return net, batch_size
