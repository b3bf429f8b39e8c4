"""Models shipped with phirm-scale: trained weights in the package, used without --checkpoint.

A shipped model has a registry name (``bbbc039-deepfill-v2``), an architecture
(``deepfill-v2``) and one checkpoint file in ``phirm_scale/models/weights/`` (package data):
the generator alone, in fp16, in the ordinary checkpoint format
(:mod:`phirm_scale.models.checkpoint`), with its provenance (data, steps, wall time, the exact
``train`` command). ``weights/manifest.json`` records, per shipped name, the file, its
architecture, its sha256 and its content hash; :func:`shipped_checkpoint` checks the file
against both before anything is built, so a corrupted or truncated file is one
:class:`~phirm_scale.errors.CheckpointError` naming it, and a file of another architecture is
refused. Loading is the registry's (``torch.load(weights_only=True)``: no code in a file runs).

:func:`export_shipped` turns a training checkpoint (e.g. ``checkpoints/last.pt`` of a run) into
the shipped file and updates the manifest (``scripts/export_shipped_model.py`` is its command
line). ``PHIRM_SCALE_WEIGHTS_DIR`` names another folder to read shipped weights from (a site
copy; the tests' damaged copies). Never imports Dask or Zarr.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

from phirm_scale._atomic import atomic_store
from phirm_scale.errors import CheckpointError, InputError

__all__ = [
    "SHIPPED",
    "WEIGHTS_ENV",
    "export_shipped",
    "file_sha256",
    "read_manifest",
    "shipped_checkpoint",
    "train_command",
    "weights_dir",
]

#: shipped registry name -> architecture (a learned model of the registry)
SHIPPED: dict[str, str] = {"bbbc039-deepfill-v2": "deepfill-v2"}

#: environment variable naming another folder of shipped weights
WEIGHTS_ENV = "PHIRM_SCALE_WEIGHTS_DIR"
MANIFEST = "manifest.json"


def weights_dir() -> Path:
    """Return the folder of the shipped weights (the package's, or ``$PHIRM_SCALE_WEIGHTS_DIR``).

    Returns
    -------
    Path
        The folder.
    """
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parent / "weights"


def _check_name(name: str) -> str:
    if name not in SHIPPED:
        raise InputError(f"unknown shipped model {name!r}; shipped: {', '.join(SHIPPED)}")
    return SHIPPED[name]


def file_sha256(path: str | Path) -> str:
    """Return the sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | Path | None = None) -> dict[str, Any]:
    """Return the manifest of a weights folder ({} when it has none).

    Raises
    ------
    CheckpointError
        A manifest that is not a JSON object.
    """
    path = Path(folder if folder is not None else weights_dir()) / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"shipped weights manifest {path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"shipped weights manifest {path}: not a JSON object")
    return data


def shipped_checkpoint(name: str) -> tuple[str, Path, dict[str, Any]]:
    """Return ``(architecture, checkpoint path, manifest entry)`` of shipped model ``name``.

    The file's bytes are checked against the manifest's sha256 (a truncated or corrupted file
    is refused here, before ``torch.load``); the registry then checks the content hash and the
    architecture stored inside the file against the manifest.

    Parameters
    ----------
    name : str
        A key of :data:`SHIPPED`.

    Returns
    -------
    tuple
        Architecture, path, manifest entry.

    Raises
    ------
    CheckpointError
        No weights for the name, a manifest entry of another architecture, or a file whose
        sha256 differs from the manifest's.
    """
    arch = _check_name(name)
    folder = weights_dir()
    entry = read_manifest(folder).get(name)
    path = folder / f"{name}.pt"
    if not isinstance(entry, dict) or not path.is_file():
        raise CheckpointError(
            f"shipped model {name!r}: no weights at {path} (this installation lacks the "
            "package data; reinstall phirm-scale)"
        )
    if entry.get("model") != arch:
        raise CheckpointError(
            f"shipped model {name!r}: {path} is listed as a {entry.get('model')!r} model, not "
            f"{arch!r}"
        )
    digest = file_sha256(path)
    if digest != entry.get("sha256"):
        raise CheckpointError(
            f"shipped model {name!r}: checkpoint {path} is corrupted or truncated (sha256 "
            f"{digest[:12]}..., expected {str(entry.get('sha256'))[:12]}...; reinstall "
            "phirm-scale or export it again)"
        )
    return arch, path, entry


def train_command(train_config: dict[str, Any]) -> str:
    """Return the ``phirm-scale train`` command line of a run's saved ``TrainConfig``.

    Every setting is written out (the schedule included), so the command reproduces the run
    whatever the defaults of a later version.
    """
    c = dict(train_config)
    args = [
        "phirm-scale",
        "train",
        "--model",
        str(c["model"]),
        "--tiles",
        str(c["tiles"]),
        "-o",
        str(c["out_dir"]),
    ]
    flags = [
        ("width", "--width"),
        ("epochs", "--epochs"),
        ("lr", "--lr"),
        ("batch_size", "--batch-size"),
        ("masks", "--masks"),
        ("stage", "--stage"),
        ("augment", "--augment"),
        ("seed", "--seed"),
        ("device", "--device"),
        ("amp", "--amp"),
        ("max_steps", "--max-steps"),
        ("val_every", "--val-every"),
        ("val_tiles", "--val-tiles"),
        ("save_every", "--save-every"),
        ("log_every", "--log-every"),
        ("init", "--init"),
        ("vgg_weights", "--vgg-weights"),
    ]
    for key, flag in flags:
        if c.get(key) is not None:
            args += [flag, str(c[key])]
    return shlex.join(args)


def _wall_time(log: Path, step: int) -> float | None:
    """Return the training seconds up to ``step`` (None without a log).

    The sum over the run's invocations (``elapsed_s`` restarts at 0 on every ``--resume``) of
    each one's last logged ``elapsed_s``.
    """
    import csv

    if not log.is_file():
        return None
    with open(log, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= step]
    total, prev = 0.0, 0.0
    for r in rows:
        e = float(r["elapsed_s"])
        if e < prev:  # a new invocation began
            total += prev
        prev = e
    return round(total + prev, 1)


def export_shipped(
    checkpoint: str | Path,
    name: str,
    *,
    out_dir: str | Path | None = None,
    data: str | None = None,
) -> dict[str, Any]:
    """Write the shipped file of ``name`` from a training checkpoint; update the manifest.

    The generator is stored alone and in fp16 (floating tensors; others as they are); the
    provenance keeps the training checkpoint's and adds ``shipped``: the source file and its
    content hash, step, epoch, wall time (from the run's ``train_log.csv`` when found beside
    ``checkpoints/``), the exact ``train`` command (:func:`train_command`), ``data`` and the
    export time.

    Parameters
    ----------
    checkpoint : str or Path
        A checkpoint of a training run (``last.pt``, ``final.pt``...).
    name : str
        The shipped name (a key of :data:`SHIPPED`).
    out_dir : str or Path, optional
        Weights folder to write (default: :func:`weights_dir`).
    data : str, optional
        A description of the training data for the provenance.

    Returns
    -------
    dict
        The new manifest entry.

    Raises
    ------
    CheckpointError
        An unusable checkpoint, or one of another architecture than the shipped name's.
    """
    import torch

    from phirm_scale.models.checkpoint import load_checkpoint, save_checkpoint

    arch = _check_name(name)
    src = Path(checkpoint)
    ck = load_checkpoint(src)
    if ck.model != arch:
        raise CheckpointError(
            f"checkpoint {src} holds a {ck.model!r} model; shipped model {name!r} is a {arch!r}"
        )
    folder = Path(out_dir) if out_dir is not None else weights_dir()
    out = folder / f"{name}.pt"
    if out.exists() and out.resolve() == src.resolve():
        raise InputError(f"{src}: the shipped file cannot be exported onto itself")
    gen = {
        k: (v.to(torch.float16) if torch.is_tensor(v) and v.is_floating_point() else v)
        for k, v in ck.state_dicts["generator"].items()
    }
    run_dir = src.parent.parent if src.parent.name == "checkpoints" else src.parent
    shipped = {
        "name": name,
        "source_checkpoint": str(src),
        "source_content_hash": ck.content_hash,
        "step": ck.step,
        "epoch": ck.epoch,
        "wall_time_s": _wall_time(run_dir / "train_log.csv", ck.step),
        "train_command": train_command(ck.train_config) if ck.train_config else None,
        "data": data,
        "dtype": "float16",
        "exported": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    provenance = {**ck.provenance, "shipped": shipped}
    digest = save_checkpoint(
        out,
        model=arch,
        config=ck.config,
        state_dicts={"generator": gen},
        epoch=ck.epoch,
        step=ck.step,
        provenance=provenance,
        train_config=ck.train_config,
    )
    entry = {
        "model": arch,
        "file": out.name,
        "sha256": file_sha256(out),
        "content_hash": digest,
        "bytes": out.stat().st_size,
        "step": ck.step,
        "epoch": ck.epoch,
        "wall_time_s": shipped["wall_time_s"],
        "train_command": shipped["train_command"],
    }
    manifest = read_manifest(folder)
    manifest[name] = entry
    with atomic_store(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return entry
