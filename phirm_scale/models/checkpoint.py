"""The one checkpoint format of phirm-scale (documented in docs/models.md).

A checkpoint is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``)::

    {
      "format": "phirm-scale-checkpoint", "format_version": 1,
      "model": "deepfill-v2",                    # registry name
      "config": {...},                           # complete network config: rebuilds the model alone
      "state_dicts": {"generator": {...}, "discriminator": {...}},   # discriminator optional
      "optimizers": {"generator": {...}, "discriminator": {...}},    # optional (training state)
      "scaler": {...} or None,                   # AMP grad scaler state (fp16 training only)
      "epoch": int, "step": int,                 # completed epochs / optimisation steps
      "provenance": {...},                       # tiles store + attrs, settings, versions, imports
      "train_config": {...} or None,             # the run's TrainConfig.to_dict(); None if imported
      "content_hash": "sha256 hex",              # of model name, config and generator tensors
    }

The content hash covers what inference depends on (name, config, generator tensors: names,
dtypes, shapes, bytes), so two files with the same weights share one hash and one cached model;
it is checked on load, which catches truncated or edited files. Never imports Dask or Zarr.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import torch

from phirm_scale._atomic import atomic_store
from phirm_scale.errors import CheckpointError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "content_hash",
    "load_checkpoint",
    "load_state",
    "load_torch_file",
    "save_checkpoint",
]

FORMAT = "phirm-scale-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint (see the module docstring for the fields)."""

    model: str
    config: dict
    state_dicts: dict
    content_hash: str
    optimizers: dict | None = None
    scaler: dict | None = None
    epoch: int = 0
    step: int = 0
    provenance: dict = field(default_factory=dict)
    path: Path | None = None
    train_config: dict | None = None


def _canonical_config(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def content_hash(model: str, config: dict, generator_state: dict) -> str:
    """sha256 over the model name, the canonical JSON config and the generator tensors.

    Parameters
    ----------
    model : str
        Registry name.
    config : dict
        Network config.
    generator_state : dict of str to Tensor
        Generator state dict.

    Returns
    -------
    str
        Hex digest.
    """
    h = hashlib.sha256()
    h.update(model.encode())
    h.update(_canonical_config(config).encode())
    for name in sorted(generator_state):
        t = generator_state[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@overload
def _cpu(obj: Mapping[str, Any]) -> dict[str, Any]: ...
@overload
def _cpu(obj: object) -> object: ...
def _cpu(obj: object) -> object:
    """Copy the tensors of a (nested) state onto the CPU; anything else is kept."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu").clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def save_checkpoint(
    path: str | Path,
    *,
    model: str,
    config: dict,
    state_dicts: dict,
    optimizers: dict | None = None,
    scaler: dict | None = None,
    epoch: int = 0,
    step: int = 0,
    provenance: dict | None = None,
    train_config: dict | None = None,
) -> str:
    """Write a checkpoint atomically (:func:`phirm_scale._atomic.atomic_store`), return its hash.

    Parameters
    ----------
    path : str or Path
        Destination (``.pt``); parent folders are created.
    model : str
        Registry name of the model.
    config : dict
        Complete network config (JSON-serialisable).
    state_dicts : dict
        ``{"generator": state_dict, "discriminator": state_dict (optional)}``.
    optimizers, scaler : dict, optional
        Training state for resuming.
    epoch, step : int
        Completed epochs and optimisation steps.
    provenance : dict, optional
        Where the weights come from (tiles store, masks, seed, import source, ...).
    train_config : dict, optional
        The training run's settings (:meth:`TrainConfig.to_dict
        <phirm_scale.models.training.config.TrainConfig.to_dict>`).

    Returns
    -------
    str
        The content hash.
    """
    if "generator" not in state_dicts:
        raise ValueError("state_dicts must contain 'generator'")
    config = json.loads(_canonical_config(config))
    sds = {k: _cpu(v) for k, v in state_dicts.items() if v is not None}
    digest = content_hash(model, config, sds["generator"])
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model,
        "config": config,
        "state_dicts": sds,
        "optimizers": _cpu(optimizers) if optimizers else None,
        "scaler": scaler,
        "epoch": int(epoch),
        "step": int(step),
        "provenance": json.loads(json.dumps(provenance or {}, default=str)),
        "train_config": json.loads(json.dumps(train_config, default=str)) if train_config else None,
        "content_hash": digest,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_store(path) as tmp:
        torch.save(payload, tmp)
    return digest


def load_torch_file(
    path: str | Path, *, what: str = "checkpoint", expected: str = "a PyTorch file"
) -> Any:
    """Read a ``torch.save`` file onto the CPU with ``weights_only=True`` (no code runs).

    The one guarded ``torch.load`` of phirm-scale: checkpoints, imported official weights and
    VGG weights all come through it, and every failure is one :class:`CheckpointError` naming
    the file.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What the file is, for messages (``'checkpoint'``, ``'VGG weights'``...).
    expected : str
        What the file should be, for the message about a file that is no PyTorch file at all.

    Returns
    -------
    object
        The unpickled object (tensors, dicts, lists, numbers and strings only).

    Raises
    ------
    CheckpointError
        Missing or unreadable file, not a PyTorch (zip) file, a truncated or damaged file, or
        one that needs arbitrary code to unpickle.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"{what} {path}: cannot be read ({exc.strerror})") from None
    if head[:2] != b"PK":  # torch.save writes a zip archive
        raise CheckpointError(f"{what} {path}: not {expected} (not a PyTorch file at all)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "central directory" in text or "zip archive" in text or isinstance(exc, EOFError):
            raise CheckpointError(
                f"{what} {path}: truncated or damaged {what} (the file is incomplete; copy or "
                "save it again)"
            ) from None
        raise CheckpointError(
            f"{what} {path}: damaged {what}, cannot be loaded ({type(exc).__name__}: {text[:160]})"
        ) from None


def load_checkpoint(
    path: str | Path, *, expected_model: str | None = None, verify: bool = True
) -> Checkpoint:
    """Read a checkpoint onto the CPU.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`save_checkpoint`.
    expected_model : str, optional
        Refuse a checkpoint of another model.
    verify : bool, optional
        Recompute the content hash and refuse a mismatch.

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        Missing/unreadable file, not a phirm-scale checkpoint (e.g. an official EdgeConnect
        file: import it first), another model, or a hash mismatch.
    """
    path = Path(path)
    raw = load_torch_file(path, what="checkpoint", expected="a phirm-scale checkpoint")
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path}: not a phirm-scale checkpoint (official EdgeConnect/DeepFill "
            "files must be converted with `phirm_scale.models.importers` first)"
        )
    if int(raw.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format_version {raw.get('format_version')} is newer than this "
            f"phirm-scale ({FORMAT_VERSION})"
        )
    model = raw.get("model")
    if not isinstance(model, str):
        raise CheckpointError(f"checkpoint {path}: no model name")
    if expected_model is not None and model != expected_model:
        raise CheckpointError(f"checkpoint {path} holds a {model!r} model, not {expected_model!r}")
    sds = raw.get("state_dicts") or {}
    if "generator" not in sds:
        raise CheckpointError(f"checkpoint {path}: no generator state dict")
    if verify:
        digest = content_hash(model, raw["config"], sds["generator"])
        if digest != raw.get("content_hash"):
            raise CheckpointError(
                f"checkpoint {path}: content hash mismatch (file corrupted or edited)"
            )
    return Checkpoint(
        model=model,
        config=raw["config"],
        state_dicts=sds,
        content_hash=raw["content_hash"],
        optimizers=raw.get("optimizers"),
        scaler=raw.get("scaler"),
        epoch=int(raw.get("epoch", 0)),
        step=int(raw.get("step", 0)),
        provenance=raw.get("provenance") or {},
        path=path,
        train_config=raw.get("train_config"),
    )


def load_state(module: torch.nn.Module, state: dict, *, what: str, source: Any) -> None:
    """Load a state dict into a module, or raise one error naming what does not fit.

    Parameters
    ----------
    module : torch.nn.Module
        The network (or part) to load into.
    state : dict
        Its state dict, as read from a file.
    what : str
        What is loaded, for the message (``'generator'``...).
    source : str or Path
        Where the state comes from, for the message.

    Raises
    ------
    CheckpointError
        Missing, unexpected or mis-shaped keys (another architecture or another width); the
        first of each kind is named.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state
        and isinstance(state[k], torch.Tensor)
        and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
        raise CheckpointError(
            f"checkpoint {source}: {what} does not fit this architecture: {'; '.join(parts)}"
        )
    module.load_state_dict(state)
