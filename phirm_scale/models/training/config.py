"""The settings of one training run: :class:`TrainConfig`.

A config is checked before anything is written (:meth:`TrainConfig.check`), completed with the
paper's schedule (:meth:`TrainConfig.resolved`), saved in every checkpoint of the run, and
read back with :meth:`TrainConfig.from_checkpoint` (its :meth:`~TrainConfig.to_dict` form), so
the recorded config reproduces the run. Never imports Dask or Zarr.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phirm_scale.errors import CheckpointError, InputError

__all__ = ["AUGMENTATIONS", "EDGECONNECT_STAGES", "PAPER_DEFAULTS", "TrainConfig", "check_stage"]

#: the paper's schedule per model (paper 3.6) and the original batch sizes
PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "context-encoder": {"epochs": 200, "lr": 2e-4, "batch_size": 64},
    "deepfill-v2": {"epochs": 20, "lr": 1e-4, "batch_size": 16},
    "edgeconnect": {"epochs": 68, "lr": 1e-4, "batch_size": 8},
}
EDGECONNECT_STAGES = ("edge", "inpaint", "joint")
_PATHS = ("tiles", "out_dir", "resume", "init", "vgg_weights")
#: training-tile augmentations (:attr:`TrainConfig.augment`)
AUGMENTATIONS = ("none", "dihedral")


def check_stage(model: str, stage: str | None) -> str | None:
    """Check an EdgeConnect stage and return it completed (the one stage check).

    Parameters
    ----------
    model : str
        The registry name of the model trained.
    stage : str or None
        ``'edge'``, ``'inpaint'``, ``'joint'`` or None.

    Returns
    -------
    str or None
        EdgeConnect: the stage (``'joint'`` when None). Other models: None.

    Raises
    ------
    InputError
        A stage for another model than EdgeConnect, or an unknown stage.
    """
    if model != "edgeconnect":
        if stage is not None:
            raise InputError(f"--stage applies to edgeconnect only, not {model!r}")
        return None
    stage = stage or "joint"
    if stage not in EDGECONNECT_STAGES:
        raise InputError(
            f"unknown edgeconnect stage {stage!r}; known: {', '.join(EDGECONNECT_STAGES)}"
        )
    return stage


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on (what ``phirm-scale train`` takes).

    Parameters
    ----------
    model : {'context-encoder', 'deepfill-v2', 'edgeconnect'}
        The model to train.
    tiles : str or Path
        A tile store (``phirm-scale tiles``); its ``train`` split is trained on, its ``val``
        split (when non-empty) scored every ``val_every`` epochs.
    out_dir : str or Path
        Run folder: ``checkpoints/epoch_NNNN.pt``, ``checkpoints/last.pt``, ``final.pt``,
        ``train_log.csv``, ``val_log.csv``, ``training.png``.
    epochs, lr, batch_size : optional
        Default: the paper's (:data:`PAPER_DEFAULTS`; a resumed run keeps its batch size).
    masks : str
        Mask family drawn on the fly (:func:`phirm_scale.masks.parse_mask_spec`), e.g.
        ``'mix'``, ``'rect'``, ``'strokes'``, ``'artefacts'``, ``'rect:10-20'``.
    seed : int
        Seeds the shuffling, the masks and the validation masks.
    device : str
        ``'auto'`` (CUDA if available), ``'cpu'``, ``'cuda'``...
    resume : str or Path, optional
        A checkpoint of this run to continue from (weights, optimisers, epoch, step).
    init : str or Path, optional
        A checkpoint whose weights start this run (fine-tuning, e.g. imported official
        weights, or EdgeConnect's inpaint stage after its edge stage).
    max_steps : int, optional
        Stop after this many optimisation steps in total (smoke runs).
    val_every : int
        Validate every this many epochs (0: never; a run always validates once at its end).
    width : int, optional
        Base channel count of a new network (narrow nets for tests/smoke runs).
    stage : {'edge', 'inpaint', 'joint'}, optional
        EdgeConnect's stage (default ``'joint'``).
    vgg_weights : str or Path, optional
        Local VGG-19 weights enabling EdgeConnect's perceptual and style losses.
    amp : {'auto', 'off', 'bf16', 'fp16'}
        Mixed precision on CUDA ('auto': bf16 where supported); never on CPU.
    val_tiles : int
        At most this many validation tiles (the first ones; fixed masks).
    save_every : int
        Also write ``checkpoints/last.pt`` every this many steps (0: only at epoch ends).
    checkpoint_every : int
        Write ``checkpoints/epoch_NNNN.pt`` every this many epochs.
    log_every : int
        Average training metrics over this many steps per CSV row.
    augment : {'none', 'dihedral'}
        'dihedral': each training tile is turned by one of the 8 symmetries of the square
        (rotations by 90 degrees, with or without a mirror), drawn per tile from
        ``default_rng([seed, epoch, step, 1])``, on the loader's threads; fluorescence fields
        have no preferred orientation. Masks are drawn as without it.
    """

    model: str
    tiles: str | Path
    out_dir: str | Path
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    masks: str = "mix"
    seed: int = 0
    device: str = "auto"
    resume: str | Path | None = None
    init: str | Path | None = None
    max_steps: int | None = None
    val_every: int = 1
    width: int | None = None
    stage: str | None = None
    vgg_weights: str | Path | None = None
    amp: str = "auto"
    val_tiles: int = 64
    save_every: int = 1000
    checkpoint_every: int = 1
    log_every: int = 10
    augment: str = "none"

    def check(self) -> TrainConfig:
        """Check the options that need no file, and return the config with its stage completed.

        Returns
        -------
        TrainConfig
            ``self`` with ``stage`` completed (EdgeConnect: ``'joint'`` by default).

        Raises
        ------
        InputError
            Unknown model, both ``resume`` and ``init``, a count below 1, a bad ``lr`` or
            stage.
        """
        from phirm_scale.models.registry import LEARNED

        if self.model not in LEARNED:
            raise InputError(f"cannot train {self.model!r}; trainable models: {', '.join(LEARNED)}")
        if self.resume is not None and self.init is not None:
            raise InputError("give either resume or init, not both")
        for name in ("epochs", "batch_size", "max_steps"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise InputError(f"{name} must be >= 1; got {v}")
        if self.lr is not None and not (float(self.lr) > 0 and math.isfinite(float(self.lr))):
            raise InputError(f"lr must be a positive number; got {self.lr}")
        if self.augment not in AUGMENTATIONS:
            raise InputError(
                f"augment must be one of {', '.join(AUGMENTATIONS)}; got {self.augment!r}"
            )
        return dataclasses.replace(self, stage=check_stage(self.model, self.stage))

    def resolved(self, *, batch_size: int | None = None) -> TrainConfig:
        """Fill the schedule with the paper's defaults (:data:`PAPER_DEFAULTS`).

        Parameters
        ----------
        batch_size : int, optional
            The batch size to use when the config has none (a resumed run's).

        Returns
        -------
        TrainConfig
            A checked copy with ``epochs``, ``lr``, ``batch_size`` and ``stage`` set.
        """
        cfg = self.check()
        d = PAPER_DEFAULTS[cfg.model]
        return dataclasses.replace(
            cfg,
            epochs=int(cfg.epochs or d["epochs"]),
            lr=float(cfg.lr or d["lr"]),
            batch_size=int(cfg.batch_size or batch_size or d["batch_size"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-serialisable dict (paths as strings).

        Returns
        -------
        dict
            One entry per field.
        """
        out = dataclasses.asdict(self)
        for k in _PATHS:
            if out[k] is not None:
                out[k] = str(out[k])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config from :meth:`to_dict`'s form.

        Parameters
        ----------
        data : dict
            Field values; ``model``, ``tiles`` and ``out_dir`` are required.

        Returns
        -------
        TrainConfig
            The config.

        Raises
        ------
        InputError
            Unknown or missing fields.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown training setting(s): {', '.join(unknown)}")
        missing = [k for k in ("model", "tiles", "out_dir") if k not in data]
        if missing:
            raise InputError(f"training settings lack {', '.join(missing)}")
        return cls(**data)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> TrainConfig:
        """Read the config a checkpoint was trained with.

        Parameters
        ----------
        path : str or Path
            A checkpoint written by a training run.

        Returns
        -------
        TrainConfig
            The (resolved) config of that run.

        Raises
        ------
        CheckpointError
            An unusable checkpoint, or one not written by a training run (e.g. imported).
        """
        from phirm_scale.models.checkpoint import load_checkpoint

        ck = load_checkpoint(path)
        if not ck.train_config:
            raise CheckpointError(f"checkpoint {path}: holds no training settings")
        return cls.from_dict(ck.train_config)
