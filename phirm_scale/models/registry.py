"""The model registry: ``get_model(name, checkpoint=None, device='auto', **config)``.

Every caller (evaluate, the plate inpainting stage, training) gets its model here. The registry
only looks models up and caches them; what a model does lives in its adapter
(:mod:`phirm_scale.models.adapters`) and its network (:mod:`phirm_scale.models.networks`).

A model is called as ``model(images, masks)`` on (N, 1, H, W) float32 images in [0, 1] and
masks (1 = hole) and returns the composited result: the input bit for bit outside the holes,
the model's fill inside. Learned models are cached per process (a checkpoint by its content
hash and device, an untrained model by its config and device), so a Dask worker calling
``get_model`` once per task builds or loads the network once. ``get_model`` returns a light
view of the cached model: runtime options (``batch_size``, ``precision``, ``channels_last``,
``compile``, EdgeConnect's ``canny``) belong to the view, never to the shared cached model, and
``model(images, masks, batch_size=...)`` overrides the batch size per call. Never imports Dask
or Zarr.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phirm_scale.errors import CheckpointError, InputError
from phirm_scale.models.adapters import LEARNED_ADAPTERS
from phirm_scale.models.adapters.base import (
    CANNY,
    PRECISIONS,
    RUNTIME_OPTIONS,
    InpaintModel,
    TorchInpaintModel,
)
from phirm_scale.models.adapters.classical import CLASSICAL_DEFAULTS, ClassicalModel
from phirm_scale.models.shipped import SHIPPED as _SHIPPED

if TYPE_CHECKING:
    import torch

__all__ = [
    "CANNY",
    "CLASSICAL",
    "LEARNED",
    "MODEL_NAMES",
    "PRECISIONS",
    "SHIPPED",
    "TORCH_MODELS",
    "build_model",
    "checkpoint_hash",
    "clear_cache",
    "default_config",
    "get_model",
    "list_models",
    "resolve_device",
    "shipped_hash",
]

CLASSICAL = ("telea", "navier-stokes", "biharmonic")
LEARNED = ("context-encoder", "deepfill-v2", "edgeconnect")
#: trained models shipped in the package (:mod:`phirm_scale.models.shipped`): no checkpoint needed
SHIPPED = tuple(_SHIPPED)
#: models that run on torch (batched forward passes, --precision): the learned architectures
#: and the shipped trained ones; only :data:`LEARNED` need a --checkpoint
TORCH_MODELS = LEARNED + SHIPPED
MODEL_NAMES = CLASSICAL + LEARNED + SHIPPED


def list_models() -> list[str]:
    """Return the names accepted by :func:`get_model`.

    Returns
    -------
    list of str
        Classical models first, then the learned architectures (which need a checkpoint),
        then the shipped trained models (``bbbc039-...``, which do not).
    """
    return list(MODEL_NAMES)


def resolve_device(device: Any = "auto") -> torch.device:
    """Resolve a device name: 'auto' is 'cuda' when available, else 'cpu'.

    Parameters
    ----------
    device : str or torch.device or None
        Anything else than 'auto'/None is passed to ``torch.device``.

    Returns
    -------
    torch.device
        The device.

    Raises
    ------
    InputError
        A bad device name, or CUDA requested where it is not available.
    """
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


def _check_name(name: Any) -> None:
    if name not in MODEL_NAMES:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")


def default_config(name: str, **config: Any) -> dict[str, Any]:
    """Return the complete config of model ``name``: its paper defaults updated with ``config``.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    **config
        Options to change (None keeps the default).

    Returns
    -------
    dict
        The complete config (derived entries such as ``disc_width`` filled in).

    Raises
    ------
    InputError
        Unknown model name or unknown option.
    """
    _check_name(name)
    if name in SHIPPED:
        raise InputError(
            f"model {name!r} is shipped trained: its config is its checkpoint's "
            f"(get_model({name!r}).config)"
        )
    learned = name in LEARNED_ADAPTERS
    base = dict(LEARNED_ADAPTERS[name].defaults if learned else CLASSICAL_DEFAULTS[name])
    unknown = sorted(set(config) - set(base))
    if unknown:
        raise InputError(
            f"model {name!r}: unknown option(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(base)) or 'none'}"
        )
    base.update({k: v for k, v in config.items() if v is not None})
    return LEARNED_ADAPTERS[name].complete_config(base) if learned else base


def build_model(
    name: str, config: dict[str, Any], device: Any = "cpu", generator: Any = None
) -> TorchInpaintModel:
    """Instantiate the learned model ``name`` from a complete config (no checkpoint, no cache).

    Parameters
    ----------
    name : str
        One of :data:`LEARNED`.
    config : dict
        Complete config (:func:`default_config`).
    device : str or torch.device
        Where the generator lives.
    generator : torch.nn.Module, optional
        A built generator (default: a new one seeded by ``config['seed']``).

    Returns
    -------
    TorchInpaintModel
        A new model, owned by the caller.
    """
    if name not in LEARNED_ADAPTERS:
        raise InputError(f"{name!r} is not a learned model; learned: {', '.join(LEARNED)}")
    return LEARNED_ADAPTERS[name](config, device=device, generator=generator)


# --------------------------------------------------------------------------- the cache

_CACHE: dict[tuple[Any, ...], TorchInpaintModel] = {}
_PATH_HASH: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()
_BUILD_LOCK = threading.RLock()  # one thread builds or loads a network; others then find it


def clear_cache() -> None:
    """Forget the per-process cache of loaded checkpoints and built untrained models."""
    with _LOCK:
        _CACHE.clear()
        _PATH_HASH.clear()


def get_model(
    name: str | None = None, checkpoint: Any = None, device: Any = "auto", **config: Any
) -> InpaintModel:
    """Return the inpainting model ``name``, untrained or loaded from a checkpoint.

    Parameters
    ----------
    name : str
        One of :func:`list_models`. May be None when ``checkpoint`` is given. A shipped model
        (:data:`SHIPPED`) loads its package weights, checked against the package's manifest
        (sha256 and content hash), and reports its shipped name as ``.name``.
    checkpoint : str or Path, optional
        A phirm-scale checkpoint; the model is rebuilt from its saved config alone, and cached
        per process by (content hash, device). With a shipped name it replaces the shipped
        weights and must hold the same architecture (the model is then named by it).
    device : str, optional
        ``'auto'`` (CUDA if available, else CPU), ``'cpu'``, ``'cuda'``, ``'cuda:1'``...
        Classical models always run on the CPU.
    **config
        Network options (``width``...; see :func:`default_config`) for an untrained model;
        the runtime options ``batch_size``, ``precision``, ``channels_last``, ``compile``,
        ``fixed_batch`` and ``canny`` are accepted always and belong to the returned view only.

    Returns
    -------
    InpaintModel
        A view of the cached model, callable as ``model(images, masks, batch_size=None)``; has
        ``.name``, ``.device``, ``.checkpoint_hash``. Setting an option on it never changes
        what another caller of ``get_model`` gets.

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
    runtime = {k: config.pop(k) for k in RUNTIME_OPTIONS if k in config}
    if checkpoint is None and name in SHIPPED:
        return _get_shipped(name, device, config, runtime)
    if checkpoint is None:
        assert name is not None
        cfg = default_config(name, **config)
        if name in CLASSICAL:
            return ClassicalModel(name, cfg).with_options(batch_size=runtime.get("batch_size"))
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
        model = _load_cached(_SHIPPED.get(name, name) if name else None, path, key_path, dev)
    _check_options(model, config, checkpoint)
    return model.with_options(**runtime)


def _check_options(model: TorchInpaintModel, config: dict[str, Any], checkpoint: Any) -> None:
    bad = {k: v for k, v in config.items() if model.config.get(k) != v}
    if bad:
        raise InputError(
            f"checkpoint {checkpoint}: options "
            f"{', '.join(f'{k}={v!r}' for k, v in bad.items())} differ from its saved "
            "config (a checkpoint is rebuilt from its own config)"
        )


def _get_shipped(
    name: str, device: Any, config: dict[str, Any], runtime: dict[str, Any]
) -> InpaintModel:
    """Return shipped model ``name``: its file checked (sha256, content hash), then loaded."""
    from phirm_scale.models.shipped import shipped_checkpoint

    arch, path, entry = shipped_checkpoint(name)  # sha256 of the bytes vs the manifest
    dev = resolve_device(device)
    path, key_path = _file_key(path)
    with _BUILD_LOCK:
        model = _load_cached(arch, path, key_path, dev)
    if model.checkpoint_hash != entry.get("content_hash"):
        raise CheckpointError(
            f"shipped model {name!r}: checkpoint {path} has content hash "
            f"{str(model.checkpoint_hash)[:12]}..., the manifest "
            f"{str(entry.get('content_hash'))[:12]}..."
        )
    _check_options(model, config, path)
    view = model.with_options(**runtime)
    view.name = name
    return view


def _load_cached(
    name: str | None, path: Path, key_path: tuple[str, int, int], dev: torch.device
) -> TorchInpaintModel:
    with _LOCK:
        digest = _PATH_HASH.get(key_path)
        model = _CACHE.get((digest, str(dev))) if digest else None
    if model is None:
        from phirm_scale.models.checkpoint import load_checkpoint, load_state
        from phirm_scale.models.networks import make_generator

        ck = load_checkpoint(path, expected_model=name)
        with _LOCK:
            model = _CACHE.get((ck.content_hash, str(dev)))
        if model is None:
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


def _file_key(checkpoint: Any) -> tuple[Path, tuple[str, int, int]]:
    """Return a checkpoint's resolved path and its cache key (path, mtime, size).

    A missing file is one error naming it.
    """
    path = Path(checkpoint).resolve()
    try:
        st = os.stat(path)
    except OSError:
        raise CheckpointError(f"checkpoint {checkpoint}: no such file") from None
    return path, (str(path), st.st_mtime_ns, st.st_size)


def shipped_hash(name: str) -> str:
    """Return the content hash of shipped model ``name`` (its file checked, nothing built).

    Parameters
    ----------
    name : str
        One of :data:`SHIPPED`.

    Returns
    -------
    str
        The sha256 content hash of its checkpoint.
    """
    from phirm_scale.models.shipped import shipped_checkpoint

    arch, path, entry = shipped_checkpoint(name)
    digest = checkpoint_hash(path, arch)
    if digest != entry.get("content_hash"):
        raise CheckpointError(
            f"shipped model {name!r}: checkpoint {path} has content hash {digest[:12]}..., "
            f"the manifest {str(entry.get('content_hash'))[:12]}..."
        )
    return digest


def checkpoint_hash(checkpoint: Any, name: str | None = None) -> str:
    """Return the content hash of a checkpoint file (verified), without building its network.

    Parameters
    ----------
    checkpoint : str or Path
        A phirm-scale checkpoint.
    name : str, optional
        Refuse a checkpoint of another model.

    Returns
    -------
    str
        The sha256 content hash.
    """
    from phirm_scale.models.checkpoint import load_checkpoint

    path, key_path = _file_key(checkpoint)
    with _LOCK:
        digest = _PATH_HASH.get(key_path)
    if digest is None:
        arch = _SHIPPED.get(name, name) if name is not None else None
        digest = load_checkpoint(path, expected_model=arch).content_hash
        with _LOCK:
            _PATH_HASH[key_path] = digest
    return digest
