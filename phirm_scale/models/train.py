"""Training: one loop for every learned model, with per-model trainer subclasses.

:func:`train` reads tiles from a tile store (:func:`phirm_scale.tiles.open_tiles`), draws masks
on the fly (:func:`phirm_scale.masks.sample_masks`), and runs :class:`Trainer.train_step` —
a discriminator step then a generator step, whose losses come from the hooks
:meth:`Trainer.discriminator_loss` / :meth:`Trainer.generator_loss` (each returns
``(loss, metrics)``) of :class:`ContextEncoderTrainer`, :class:`DeepFillTrainer` or
:class:`EdgeConnectTrainer`. It writes periodic checkpoints (:mod:`.checkpoint`), a CSV log per
phase (``train_log.csv``, ``val_log.csv``), validation PhIRM/PSNR/SSIM per epoch and a plot
(``training.png``). A run stopped anywhere resumes from its last checkpoint and continues
exactly as if uninterrupted: the shuffling and the masks of step ``j`` of epoch ``e`` are drawn
from ``default_rng([seed, e])`` and ``default_rng([seed, e, j])``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from phirm_scale.errors import CheckpointError, InputError, PhirmError
from phirm_scale.models.checkpoint import load_checkpoint, load_state, save_checkpoint
from phirm_scale.models.losses import (
    AdversarialLoss,
    FeatureMatchingLoss,
    PerceptualLoss,
    ReconstructionLoss,
    StyleLoss,
    load_vgg19,
)
from phirm_scale.models.networks import make_discriminator
from phirm_scale.models.networks.common import seeded
from phirm_scale.models.registry import (
    LEARNED,
    build_model,
    default_config,
    resolve_device,
)

__all__ = [
    "EDGECONNECT_STAGES",
    "PAPER_DEFAULTS",
    "ContextEncoderTrainer",
    "DeepFillTrainer",
    "EdgeConnectTrainer",
    "Trainer",
    "make_trainer",
    "plot_log",
    "train",
    "validation_scores",
]

log = logging.getLogger(__name__)

#: the paper's schedule per model (paper 3.6) and the original batch sizes
PAPER_DEFAULTS = {
    "context-encoder": {"epochs": 200, "lr": 2e-4, "batch_size": 64},
    "deepfill-v2": {"epochs": 20, "lr": 1e-4, "batch_size": 16},
    "edgeconnect": {"epochs": 68, "lr": 1e-4, "batch_size": 8},
}
EDGECONNECT_STAGES = ("edge", "inpaint", "joint")


# =========================================================================== trainers


class Trainer:
    """One GAN training step for a learned model; subclasses implement the hooks.

    Parameters
    ----------
    model : TorchInpaintModel
        From :func:`phirm_scale.models.registry.build_model` (its generator is trained in place).
    lr : float
        Generator learning rate.
    amp : {'auto', 'off', 'bf16', 'fp16'}
        Mixed precision: 'auto' = bf16 (or fp16 with a grad scaler) on CUDA, off on CPU.
    stage : str, optional
        EdgeConnect only.
    vgg_weights : path, optional
        EdgeConnect perceptual/style losses (only when given).
    """

    kind = ""
    betas = (0.5, 0.999)
    d_lr_ratio = 1.0

    def __init__(
        self, model, *, lr: float, amp: str = "auto", stage: str | None = None, vgg_weights=None
    ):
        self.model = model
        self.device = model.device
        self.G = model.generator
        cfg = {k: v for k, v in model.config.items() if k != "seed"}
        with seeded(int(model.config.get("seed", 0)) + 1):
            self.D = make_discriminator(self.kind, cfg).to(self.device)
        self.stage = stage
        self.lr = float(lr)
        self._setup_amp(amp)
        g_params, d_params = self.trainable()
        self.opt_g = torch.optim.Adam(g_params, lr=self.lr, betas=self.betas)
        self.opt_d = torch.optim.Adam(d_params, lr=self.lr * self.d_lr_ratio, betas=self.betas)

    # -- configuration
    def _setup_amp(self, amp):
        dev = torch.device(self.device)
        if amp not in ("auto", "off", "bf16", "fp16"):
            raise InputError(f"amp must be auto, off, bf16 or fp16; got {amp!r}")
        if dev.type != "cuda" or amp == "off":
            self.amp_dtype = None
        elif amp == "auto":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.amp_dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler) if use_scaler else None

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def trainable(self):
        """(generator parameters, discriminator parameters) optimised in this run."""
        return list(self.G.parameters()), list(self.D.parameters())

    # -- hooks
    def forward(self, batch: dict) -> dict:
        """Generator forward pass (dict with at least ``'output'``)."""
        return self.model.generate(batch)

    def discriminator_loss(self, batch: dict, out: dict):  # pragma: no cover - abstract
        """``(loss, metrics)`` of the discriminator (generator outputs detached)."""
        raise NotImplementedError

    def generator_loss(self, batch: dict, out: dict):  # pragma: no cover - abstract
        """``(loss, metrics)`` of the generator."""
        raise NotImplementedError

    # -- one step
    def _backward_step(self, loss, opt):
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
        else:
            loss.backward()
            opt.step()

    def train_step(self, batch: dict) -> dict:
        """One discriminator and one generator update; returns float metrics."""
        self.G.train()
        self.D.train()
        with self.autocast():
            out = self.forward(batch)
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            d_loss, d_metrics = self.discriminator_loss(batch, out)
        self._backward_step(d_loss, self.opt_d)
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            g_loss, g_metrics = self.generator_loss(batch, out)
        self._backward_step(g_loss, self.opt_g)
        if self.scaler is not None:
            self.scaler.update()
        self.D.requires_grad_(True)
        metrics = {**d_metrics, **g_metrics, "g_loss": g_loss.detach()}
        return {k: float(v) for k, v in metrics.items()}

    # -- state
    def state(self) -> dict:
        return {
            "state_dicts": {"generator": self.G.state_dict(), "discriminator": self.D.state_dict()},
            "optimizers": {
                "generator": self.opt_g.state_dict(),
                "discriminator": self.opt_d.state_dict(),
            },
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load(self, ck, *, optimizers: bool = True) -> None:
        """Load weights (and optimiser/scaler state) from a :class:`Checkpoint`."""
        load_state(self.G, ck.state_dicts["generator"], what="generator", source=ck.path)
        if "discriminator" in ck.state_dicts:
            load_state(
                self.D, ck.state_dicts["discriminator"], what="discriminator", source=ck.path
            )
        if optimizers:
            if not ck.optimizers:
                raise CheckpointError(
                    f"checkpoint {ck.path}: no optimiser state to resume from (use it as --init)"
                )
            try:
                self.opt_g.load_state_dict(ck.optimizers["generator"])
                self.opt_d.load_state_dict(ck.optimizers["discriminator"])
            except (ValueError, KeyError) as exc:
                raise CheckpointError(
                    f"checkpoint {ck.path}: optimiser state does not fit this run ({exc})"
                ) from None
            if self.scaler is not None and ck.scaler:
                self.scaler.load_state_dict(ck.scaler)


class ContextEncoderTrainer(Trainer):
    """Pathak et al.: BCE adversarial loss on the centre patch (weight 0.002) + L2 (0.998),
    with 10x weight on the known overlap band inside the centre; Adam(2e-4, 0.5).
    """

    kind = "context-encoder"
    w_rec, w_adv, overlap_weight = 0.998, 0.002, 10.0

    def __init__(self, model, **kw):
        super().__init__(model, **kw)
        self.adv = AdversarialLoss("nsgan")
        self.rec = ReconstructionLoss("l2", "g_l2")

    def _centre_mask(self, out):
        s = out["context_mask"].shape[-1]
        return out["context_mask"][..., s // 4 : s // 4 + s // 2, s // 4 : s // 4 + s // 2]

    def discriminator_loss(self, batch, out):
        real = self.D(out["centre_real"] * 2 - 1)
        fake = self.D(out["centre"].detach() * 2 - 1)
        return self.adv.discriminator(real, fake)

    def generator_loss(self, batch, out):
        adv, m_adv = self.adv.generator(self.D(out["centre"] * 2 - 1))
        hole = self._centre_mask(out)
        weight = hole + (1 - hole) * self.overlap_weight
        rec, m_rec = self.rec(out["centre"] * 2 - 1, out["centre_real"] * 2 - 1, weight)
        return self.w_rec * rec + self.w_adv * adv, {**m_adv, **m_rec}


class DeepFillTrainer(Trainer):
    """Yu et al. 2019: SN-PatchGAN hinge loss on the composited image (with the mask as input)
    + L1 of both stages over the whole image (weights 1, 1); Adam(1e-4, 0.5, 0.999).
    """

    kind = "deepfill-v2"
    w_l1, w_adv = 1.0, 1.0

    def __init__(self, model, **kw):
        super().__init__(model, **kw)
        self.adv = AdversarialLoss("hinge")
        self.l1 = ReconstructionLoss("l1")

    @staticmethod
    def _complete(batch, out):
        m = batch["mask"]
        return out["output"] * m + batch["image"] * (1 - m)

    def discriminator_loss(self, batch, out):
        m = batch["mask"]
        real = self.D(batch["image"] * 2 - 1, m)
        fake = self.D(self._complete(batch, out).detach() * 2 - 1, m)
        return self.adv.discriminator(real, fake)

    def generator_loss(self, batch, out):
        adv, m_adv = self.adv.generator(self.D(self._complete(batch, out) * 2 - 1, batch["mask"]))
        x = batch["image"] * 2 - 1
        l1_1, _ = self.l1(out["stage1"] * 2 - 1, x)
        l1_2, _ = self.l1(out["output"] * 2 - 1, x)
        l1 = l1_1 + l1_2
        return self.w_l1 * l1 + self.w_adv * adv, {
            **m_adv,
            "g_l1": l1.detach(),
            "g_l1_stage2": l1_2.detach(),
        }


class EdgeConnectTrainer(Trainer):
    """Nazeri et al. 2019, by stage.

    - ``'edge'``: edge generator vs the Canny edges of the true image; BCE adversarial loss on
      (image, edges) + 10 x feature matching; edge precision/recall in the holes logged.
    - ``'inpaint'``: inpainting generator fed the true edges; L1 / mean(mask) + 0.1 x BCE
      adversarial (+ 0.1 x perceptual + 250 x style when VGG weights are given).
    - ``'joint'``: both, the inpainting generator fed the (detached) predicted edges.

    Adam(lr, betas=(0, 0.9)); discriminators at 0.1 x lr.
    """

    kind = "edgeconnect"
    betas = (0.0, 0.9)
    d_lr_ratio = 0.1
    w_fm, w_adv_inpaint, w_l1, w_perc, w_style = 10.0, 0.1, 1.0, 0.1, 250.0

    def __init__(self, model, *, stage="joint", vgg_weights=None, **kw):
        if stage not in EDGECONNECT_STAGES:
            raise InputError(
                f"unknown edgeconnect stage {stage!r}; known: {', '.join(EDGECONNECT_STAGES)}"
            )
        super().__init__(model, stage=stage, **kw)
        self.adv = AdversarialLoss("nsgan")
        self.fm = FeatureMatchingLoss()
        self.l1 = ReconstructionLoss("l1")
        self.perceptual = self.style = None
        if vgg_weights is not None:
            vgg = load_vgg19(vgg_weights).to(self.device)
            self.perceptual, self.style = PerceptualLoss(vgg), StyleLoss(vgg)

    def _parts(self):
        return {"edge": ("edge",), "inpaint": ("inpaint",), "joint": ("edge", "inpaint")}[
            self.stage
        ]

    def trainable(self):
        parts = self._parts()
        for name in ("edge", "inpaint"):
            getattr(self.G, name).requires_grad_(name in parts)
        g = [p for n in parts for p in getattr(self.G, n).parameters()]
        d = [p for n in parts for p in getattr(self.D, n).parameters()]
        return g, d

    def forward(self, batch):
        if self.stage == "edge":
            from phirm_scale.models.networks.edgeconnect import MULTIPLE
            from phirm_scale.models.registry import _pad

            padded, (h, w) = _pad(batch, MULTIPLE)
            logits = self.G.predict_edges(padded["image"], padded["edges"], padded["mask"])[
                ..., :h, :w
            ]
            return {"edge_logits": logits, "edges": torch.sigmoid(logits)}
        return self.model.generate(
            batch, edges_for_inpaint="gt" if self.stage == "inpaint" else "detach"
        )

    def discriminator_loss(self, batch, out):
        img = batch["image"]
        total, metrics = 0.0, {}
        if "edges" in out and self.stage != "inpaint":
            real, real_feats = self.D.edge(torch.cat([img, batch["edges_gt"]], 1))
            fake, _ = self.D.edge(torch.cat([img, out["edges"].detach()], 1))
            loss, m = self.adv.discriminator(real, fake, average=True)
            self._real_feats = [f.detach() for f in real_feats]
            total = total + loss
            metrics.update({f"edge_{k}": v for k, v in m.items()})
        if self.stage != "edge":
            real, _ = self.D.inpaint(img)
            fake, _ = self.D.inpaint(out["output"].detach())
            loss, m = self.adv.discriminator(real, fake, average=True)
            total = total + loss
            metrics.update({f"inpaint_{k}": v for k, v in m.items()})
        return total, metrics

    def generator_loss(self, batch, out):
        img, m = batch["image"], batch["mask"]
        total, metrics = 0.0, {}
        if self.stage != "inpaint":
            fake, fake_feats = self.D.edge(torch.cat([img, out["edges"]], 1))
            adv, _ = self.adv.generator(fake)
            fm, _ = self.fm(fake_feats, self._real_feats)
            total = total + adv + self.w_fm * fm
            with torch.no_grad():
                pred = (out["edges"] > 0.5).float() * m
                gt = batch["edges_gt"] * m
                tp = (pred * gt).sum()
                metrics.update(
                    edge_g_adv=adv.detach(),
                    edge_g_fm=fm.detach(),
                    edge_precision=tp / pred.sum().clamp_min(1),
                    edge_recall=tp / gt.sum().clamp_min(1),
                )
        if self.stage != "edge":
            out_img = out["output"]
            fake, _ = self.D.inpaint(out_img)
            adv, _ = self.adv.generator(fake)
            l1, _ = self.l1(out_img, img)
            l1 = l1 / m.mean().clamp_min(1e-6)
            loss = self.w_l1 * l1 + self.w_adv_inpaint * adv
            metrics.update(inpaint_g_adv=adv.detach(), g_l1=l1.detach())
            if self.perceptual is not None:
                perc, _ = self.perceptual(out_img.float(), img)
                style, _ = self.style((out_img * m).float(), img * m)
                loss = loss + self.w_perc * perc + self.w_style * style
                metrics.update(g_perceptual=perc.detach(), g_style=style.detach())
            total = total + loss
        return total, metrics


_TRAINERS = {t.kind: t for t in (ContextEncoderTrainer, DeepFillTrainer, EdgeConnectTrainer)}


def make_trainer(model, *, lr, amp="auto", stage=None, vgg_weights=None) -> Trainer:
    """The trainer of ``model.kind`` (``stage`` and ``vgg_weights`` are EdgeConnect's)."""
    cls = _TRAINERS.get(model.kind)
    if cls is None:
        raise InputError(f"no trainer for model {model.kind!r}; trainable: {', '.join(_TRAINERS)}")
    if cls is EdgeConnectTrainer:
        return cls(model, lr=lr, amp=amp, stage=stage or "joint", vgg_weights=vgg_weights)
    if stage is not None:
        raise InputError(f"--stage applies to edgeconnect only, not {model.kind!r}")
    if vgg_weights is not None:
        raise InputError(f"VGG weights are used by edgeconnect only, not {model.kind!r}")
    return cls(model, lr=lr, amp=amp)


# =========================================================================== validation


def validation_scores(model, images, masks, *, params=None) -> dict:
    """Mean PhIRM (paper and reference modes), PSNR, SSIM and hole L1 of ``model`` on a batch.

    Images are scored as 8 bit, ``rint(x * 255)`` (:func:`phirm_scale.metric.to_uint8` with
    ``lo=0, hi=1``). Identical images have infinite PSNR; it is capped at 100 dB for the mean.

    Parameters
    ----------
    model : InpaintModel
    images : (N, 1, H, W) ndarray of float32 in [0, 1]
    masks : (N, 1, H, W) ndarray, 1 = hole

    Returns
    -------
    dict
        ``n, phirm, phirm_reference, psnr, ssim, l1_hole``.
    """
    from phirm_scale import metric

    params = params or metric.PhirmParams()
    ref_params = metric.PhirmParams.reference()
    rec = model(images, masks)
    rows = []
    for i in range(images.shape[0]):
        a = metric.to_uint8(images[i, 0], 0.0, 1.0)
        b = metric.to_uint8(rec[i, 0], 0.0, 1.0)
        s = metric.score(a, b, params)
        r = metric.score(a, b, ref_params, image_metrics=False)
        rows.append((s.phirm, r.phirm, min(float(s.psnr), 100.0), s.ssim))
    arr = np.asarray(rows, np.float64)
    hole = np.asarray(masks) != 0
    l1 = float(np.abs(rec - images)[hole].mean()) if hole.any() else 0.0
    return {
        "n": int(images.shape[0]),
        "phirm": float(arr[:, 0].mean()),
        "phirm_reference": float(arr[:, 1].mean()),
        "psnr": float(arr[:, 2].mean()),
        "ssim": float(arr[:, 3].mean()),
        "l1_hole": l1,
    }


# =========================================================================== logs


class _CsvLog:
    """Append-only CSV with a fixed header (from the first row); on resume rows after the
    resumed step are dropped, so a resumed log reads like an uninterrupted one.
    """

    def __init__(self, path: Path, *, keep_until_step: int | None):
        self.path = path
        self.fields = None
        if path.exists():
            rows = list(csv.DictReader(path.open(newline="")))
            if keep_until_step is None:
                rows = []
            else:
                rows = [r for r in rows if int(r["step"]) <= keep_until_step]
            if rows:
                self.fields = list(rows[0].keys())
            with path.open("w", newline="") as fh:
                if self.fields:
                    w = csv.DictWriter(fh, fieldnames=self.fields)
                    w.writeheader()
                    w.writerows(rows)

    def write(self, row: dict) -> None:
        if self.fields is None:
            self.fields = list(row.keys())
            with self.path.open("w", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self.fields).writeheader()
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore").writerow(
                {k: row.get(k, "") for k in self.fields}
            )


def _read_csv(path: Path):
    if not path.exists():
        return []
    return list(csv.DictReader(path.open(newline="")))


def plot_log(run_dir, out=None) -> Path:
    """Plot ``train_log.csv`` (losses against step) and ``val_log.csv`` (PhIRM, PSNR, SSIM
    against step) of a run folder into ``training.png``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "training.png"
    tr, va = _read_csv(run_dir / "train_log.csv"), _read_csv(run_dir / "val_log.csv")
    fig = Figure(figsize=(13, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(1, 3)

    def series(rows, key):
        xs, ys = [], []
        for r in rows:
            v = r.get(key, "")
            if v not in ("", None):
                xs.append(int(r["step"]))
                ys.append(float(v))
        return xs, ys

    keys = list(tr[0].keys()) if tr else []
    for k in keys:
        if k == "g_loss" or k.startswith("g_") or "_g_" in k:
            ax1.plot(*series(tr, k), label=k)
        elif k.endswith("d_loss"):
            ax2.plot(*series(tr, k), label=k)
    ax1.set(title="generator losses", xlabel="step")
    ax2.set(title="discriminator losses", xlabel="step")
    for k, ax in (("phirm", ax3), ("ssim", ax3)):
        ax.plot(*series(va, k), marker="o", label=f"val {k}")
    ax3.set(title="validation (PSNR on right axis)", xlabel="step", ylim=(0, 1.05))
    ax3b = ax3.twinx()
    ax3b.plot(*series(va, "psnr"), marker="s", color="tab:red", label="val psnr (dB)")
    for ax in (ax1, ax2, ax3):
        if ax.lines:
            ax.legend(fontsize=7)
    if ax3b.lines:
        ax3b.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    return out


# =========================================================================== data


class _TileSource:
    """Reads batches of tiles as float32 (N, 1, S, S) in [0, 1]."""

    def __init__(self, tileset, *, in_memory_limit=2 << 30):
        arr = tileset.images
        self.n = int(arr.shape[0])
        self.size = tuple(int(s) for s in arr.shape[1:])
        nbytes = int(np.prod(arr.shape)) * np.dtype(arr.dtype).itemsize
        self.arr = np.asarray(arr[:]) if nbytes <= in_memory_limit else arr

    def read(self, idx: np.ndarray) -> np.ndarray:
        if isinstance(self.arr, np.ndarray):
            block = self.arr[idx]
        else:
            order = np.argsort(idx)
            block = np.empty((len(idx), *self.size), np.uint8)
            block[order] = self.arr.oindex[np.asarray(idx)[order]]
        return (block.astype(np.float32) / np.float32(255))[:, None]


def _open_split(tiles, split):
    from phirm_scale.tiles import open_tiles

    return open_tiles(tiles, split)


def _artefact_pool(tileset) -> np.ndarray | None:
    if tileset.artefacts is None:
        return None
    arts = np.asarray(tileset.artefacts[:])
    keep = arts.reshape(arts.shape[0], -1).any(axis=1)
    return arts[keep] if keep.any() else None


# =========================================================================== the loop


def _prefetch(fn, items, workers: int = 2, depth: int = 4):
    """``fn(item)`` for each item, in order, computed up to ``depth`` items ahead on
    ``workers`` threads (reading tiles and drawing masks overlap the device's training step).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    it = iter(items)
    ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tile-loader")
    futs: deque = deque(ex.submit(fn, i) for _, i in zip(range(depth), it))
    try:
        while futs:
            res = futs.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                futs.append(ex.submit(fn, nxt))
            yield res
    finally:
        for f in futs:
            f.cancel()
        ex.shutdown(wait=True)


def train(
    model: str,
    tiles,
    *,
    out_dir,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    masks: str = "mix",
    seed: int = 0,
    device="auto",
    resume=None,
    init=None,
    max_steps: int | None = None,
    val_every: int = 1,
    width: int | None = None,
    stage: str | None = None,
    vgg_weights=None,
    amp: str = "auto",
    val_tiles: int = 64,
    save_every: int = 1000,
    checkpoint_every: int = 1,
    log_every: int = 10,
    progress=None,
) -> Path:
    """Train (or fine-tune, or resume) a learned inpainting model on a tile store.

    Parameters
    ----------
    model : {'context-encoder', 'deepfill-v2', 'edgeconnect'}
    tiles : str or Path
        A tile store (``phirm-scale tiles``); its ``train`` split is trained on, its ``val``
        split (when non-empty) scored every ``val_every`` epochs.
    out_dir : str or Path
        Run folder: ``checkpoints/epoch_NNNN.pt``, ``checkpoints/last.pt``, ``final.pt``,
        ``train_log.csv``, ``val_log.csv``, ``training.png``.
    epochs, lr, batch_size : optional
        Default: the paper's (:data:`PAPER_DEFAULTS`).
    masks : str
        Mask family drawn on the fly (:func:`phirm_scale.masks.parse_mask_spec`), e.g.
        ``'mix'``, ``'rect'``, ``'strokes'``, ``'artefacts'``, ``'rect:10-20'``.
    seed : int
        Seeds the shuffling, the masks and the validation masks.
    device : str
        ``'auto'`` (CUDA if available), ``'cpu'``, ``'cuda'``...
    resume : path, optional
        A checkpoint of this run to continue from (weights, optimisers, epoch, step).
    init : path, optional
        A checkpoint whose weights start this run (fine-tuning, e.g. imported official
        weights, or EdgeConnect's inpaint stage after its edge stage).
    max_steps : int, optional
        Stop after this many optimisation steps in total (smoke runs).
    val_every : int
        Validate every this many epochs (0: never; a run always validates once at its end).
    width : int, optional
        Base channel count of a new network (narrow nets for tests/smoke runs).
    stage : {'edge', 'inpaint', 'joint'}, optional
        EdgeConnect's stage (default ``'joint'``); see :class:`EdgeConnectTrainer`.
    vgg_weights : path, optional
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
    progress : callable, optional
        Called with one-line messages (epoch summaries).

    Returns
    -------
    Path
        The final checkpoint (``out_dir/final.pt``).

    Raises
    ------
    InputError
        Unknown model, bad options or tile store, options contradicting ``resume``.
    CheckpointError
        Unusable ``resume``/``init`` checkpoint (e.g. another model).
    """
    from phirm_scale.masks import parse_mask_spec, sample_masks

    if model not in LEARNED:
        raise InputError(f"cannot train {model!r}; trainable models: {', '.join(LEARNED)}")
    if resume is not None and init is not None:
        raise InputError("give either resume or init, not both")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("max_steps", max_steps)):
        if v is not None and int(v) < 1:
            raise InputError(f"{name} must be >= 1; got {v}")
    if lr is not None and not (float(lr) > 0 and math.isfinite(float(lr))):
        raise InputError(f"lr must be a positive number; got {lr}")
    if model != "edgeconnect" and stage is not None:
        raise InputError(f"--stage applies to edgeconnect only, not {model!r}")
    if model == "edgeconnect":
        stage = stage or "joint"
        if stage not in EDGECONNECT_STAGES:
            raise InputError(
                f"unknown edgeconnect stage {stage!r}; known: {', '.join(EDGECONNECT_STAGES)}"
            )
    mask_spec = parse_mask_spec(masks)
    defaults = PAPER_DEFAULTS[model]
    epochs = int(epochs or defaults["epochs"])
    lr = float(lr or defaults["lr"])
    dev = resolve_device(device)

    ck = None
    if resume is not None or init is not None:
        ck = load_checkpoint(resume if resume is not None else init, expected_model=model)
        config = dict(ck.config)
        if width is not None and int(width) != int(config["width"]):
            raise InputError(
                f"--width {width} contradicts the checkpoint's width {config['width']}"
            )
    else:
        config = default_config(model, width=width)
    prev_train = (
        (ck.provenance.get("train") or {}) if (ck is not None and resume is not None) else {}
    )
    if resume is not None:
        if prev_train.get("stage") != stage:
            raise InputError(
                f"checkpoint {resume} was trained with stage {prev_train.get('stage')!r}, not {stage!r} (use --init to change stage)"
            )
        if batch_size is None:
            batch_size = prev_train.get("batch_size")
        if prev_train.get("batch_size") not in (None, int(batch_size)):
            raise InputError(
                f"checkpoint {resume} was trained with batch size {prev_train['batch_size']}, not {batch_size}: cannot resume identically"
            )
        if prev_train.get("masks") not in (None, mask_spec.spec):
            raise InputError(
                f"checkpoint {resume} was trained with masks {prev_train['masks']!r}, not {mask_spec.spec!r}"
            )
        if prev_train.get("seed") not in (None, int(seed)):
            raise InputError(
                f"checkpoint {resume} was trained with seed {prev_train['seed']}, not {seed}"
            )
    batch_size = int(batch_size or defaults["batch_size"])

    # ---- data (validated before anything is written)
    train_set = _open_split(tiles, "train")
    if len(train_set) == 0:
        raise InputError(f"{tiles}: the train split has no tiles")
    source = _TileSource(train_set)
    shape = source.size
    pool = _artefact_pool(train_set)
    if mask_spec.kind == "artefacts" and pool is None:
        raise InputError(
            f"{tiles}: masks 'artefacts' need artefact masks in the train split; this store has none"
        )
    try:
        val_set = _open_split(tiles, "val")
    except PhirmError:
        val_set = None
    val_images = val_masks = None
    if val_set is not None and len(val_set) > 0 and val_tiles > 0:
        nv = min(int(val_tiles), len(val_set))
        val_images = np.asarray(val_set.images[:nv]).astype(np.float32)[:, None] / np.float32(255)
        val_pool = _artefact_pool(val_set) if mask_spec.kind in ("artefacts", "mix") else None
        vspec = (
            mask_spec
            if not (mask_spec.kind == "artefacts" and val_pool is None)
            else parse_mask_spec("mix")
        )
        vrng = np.random.default_rng([int(seed), 1_000_003])
        val_masks = sample_masks(
            vspec, nv, shape, rng=vrng, artefact_pool=val_pool if val_pool is not None else pool
        )[:, None]

    bsz = min(batch_size, source.n)
    if model == "context-encoder" and bsz < 2:
        raise InputError(
            f"context-encoder needs batches of at least 2 tiles (BatchNorm on a 1x1 bottleneck); got {bsz}"
        )
    steps_per_epoch = max(1, source.n // bsz)

    # ---- model and trainer
    net = build_model(model, config, dev)
    trainer = make_trainer(net, lr=lr, amp=amp, stage=stage, vgg_weights=vgg_weights)
    start_epoch, step = 0, 0
    if ck is not None:
        trainer.load(ck, optimizers=resume is not None)
        if resume is not None:
            start_epoch, step = ck.epoch, ck.step
            if step - start_epoch * steps_per_epoch not in range(steps_per_epoch + 1):
                raise InputError(
                    f"checkpoint {resume}: step {step} does not fit epoch {start_epoch} of this tile store"
                )

    out_dir = Path(out_dir)
    from phirm_scale.outputs import check_output_folder

    check_output_folder(out_dir, inputs=[getattr(train_set, "path", None)])
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    tiles_attrs = {k: v for k, v in (train_set.attrs or {}).items() if k not in ("wells", "fields")}
    provenance = {
        "tiles": str(Path(str(tiles))),
        "tiles_attrs": tiles_attrs,
        "n_train_tiles": source.n,
        "n_val_tiles": 0 if val_images is None else int(val_images.shape[0]),
        "train": {
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "masks": mask_spec.spec,
            "seed": int(seed),
            "stage": stage,
            "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off",
            "device": str(dev),
            "steps_per_epoch": steps_per_epoch,
            "vgg_weights": str(vgg_weights) if vgg_weights else None,
        },
        "init": None
        if init is None
        else {"path": str(init), "content_hash": ck.content_hash, "provenance": ck.provenance},
        "versions": {"phirm_scale": _version(), "torch": torch.__version__},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if resume is not None and ck.provenance.get("init"):
        provenance["init"] = ck.provenance["init"]

    def save(path, epoch_done):
        st = trainer.state()
        save_checkpoint(
            path,
            model=model,
            config=config,
            state_dicts=st["state_dicts"],
            optimizers=st["optimizers"],
            scaler=st["scaler"],
            epoch=epoch_done,
            step=step,
            provenance=provenance,
        )

    keep = step if resume is not None else None
    tlog = _CsvLog(out_dir / "train_log.csv", keep_until_step=keep)
    vlog = _CsvLog(out_dir / "val_log.csv", keep_until_step=keep)
    say = progress or (lambda msg: log.info(msg))
    t0 = time.perf_counter()
    last_val_step = -1

    def validate(epoch_label):
        nonlocal last_val_step
        if val_images is None or last_val_step == step:
            return None
        scores = validation_scores(net, val_images, val_masks)
        vlog.write(
            {
                "epoch": epoch_label,
                "step": step,
                "elapsed_s": round(time.perf_counter() - t0, 3),
                **scores,
            }
        )
        last_val_step = step
        return scores

    acc: dict[str, list[float]] = {}
    last_msg = [t0]

    def flush(epoch):
        if acc:
            row = {
                "epoch": epoch,
                "step": step,
                "stage": stage or "",
                "lr": lr,
                "elapsed_s": round(time.perf_counter() - t0, 3),
            }
            row.update({k: float(np.mean(v)) for k, v in sorted(acc.items())})
            tlog.write(row)
            acc.clear()

    epoch = start_epoch
    stopped = False
    for epoch in range(start_epoch, epochs):
        perm = np.random.default_rng([int(seed), epoch]).permutation(source.n)
        j0 = step - epoch * steps_per_epoch

        def load(j, perm=perm, epoch=epoch):
            # tiles and masks of step j (seeded per step: the same batches whatever the threads)
            idx = perm[j * bsz : (j + 1) * bsz]
            holes = sample_masks(
                mask_spec,
                len(idx),
                shape,
                rng=np.random.default_rng([int(seed), epoch, j]),
                artefact_pool=pool,
            )[:, None]
            return source.read(idx), holes

        batches = _prefetch(load, range(j0, steps_per_epoch))
        for j in range(j0, steps_per_epoch):
            if max_steps is not None and step >= max_steps:
                stopped = True
                break
            images, holes = next(batches)
            batch = net.prepare(images, holes != 0, train=True)
            metrics = trainer.train_step(batch)
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            if bad:
                save(out_dir / "checkpoints" / "diverged.pt", epoch)
                raise InputError(
                    f"training diverged at step {step + 1} ({', '.join(bad)} not finite); lower --lr (state saved to checkpoints/diverged.pt)"
                )
            for k, v in metrics.items():
                acc.setdefault(k, []).append(v)
            step += 1
            if log_every and step % log_every == 0:
                flush(epoch + 1)
                if time.perf_counter() - last_msg[0] > 60:
                    last_msg[0] = time.perf_counter()
                    say(
                        f"epoch {epoch + 1}/{epochs} step {step} ({last_msg[0] - t0:.0f} s) "
                        + ", ".join(
                            f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if k.startswith("g_")
                        )
                    )
            if save_every and step % save_every == 0 and j + 1 < steps_per_epoch:
                save(out_dir / "checkpoints" / "last.pt", epoch)
        batches.close()
        if stopped:
            break
        flush(epoch + 1)
        scores = validate(epoch + 1) if (val_every and (epoch + 1) % val_every == 0) else None
        if checkpoint_every and (epoch + 1) % checkpoint_every == 0:
            save(out_dir / "checkpoints" / f"epoch_{epoch + 1:04d}.pt", epoch + 1)
        save(out_dir / "checkpoints" / "last.pt", epoch + 1)
        msg = f"epoch {epoch + 1}/{epochs} step {step} ({time.perf_counter() - t0:.1f} s)"
        if scores:
            msg += f" val phirm {scores['phirm']:.4f} psnr {scores['psnr']:.2f} ssim {scores['ssim']:.4f}"
        say(msg)
    else:
        epoch = epochs
    epochs_done = epoch if stopped else max(epoch, start_epoch)
    flush(epoch + 1 if stopped else epochs_done)
    scores = validate(epochs_done)
    if scores:
        say(
            f"final step {step}: val phirm {scores['phirm']:.4f} psnr {scores['psnr']:.2f} ssim {scores['ssim']:.4f}"
        )
    final = out_dir / "final.pt"
    save(final, epochs_done)
    save(out_dir / "checkpoints" / "last.pt", epochs_done)
    try:
        plot_log(out_dir)
    except Exception as exc:  # noqa: BLE001 - a plot never fails a training run
        log.warning("could not plot the training log: %s", exc)
    return final


def _version() -> str:
    try:
        from phirm_scale import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"
