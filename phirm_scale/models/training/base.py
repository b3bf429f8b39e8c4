"""The GAN training step shared by every learned model: :class:`Trainer`.

A step is one discriminator update then one generator update; the losses come from the hooks
:meth:`Trainer.discriminator_loss` and :meth:`Trainer.generator_loss` (each returns
``(loss, metrics)``) of the per-model trainers in :mod:`.context_encoder`, :mod:`.deepfill_v2`
and :mod:`.edgeconnect` (which import it); :func:`.trainer.make_trainer` picks one. Never
imports Dask or Zarr.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from phirm_scale.errors import CheckpointError, InputError
from phirm_scale.models.adapters.base import TorchInpaintModel
from phirm_scale.models.checkpoint import Checkpoint, load_state
from phirm_scale.models.networks import make_discriminator
from phirm_scale.models.networks.common import seeded

__all__ = ["Metrics", "PendingMetrics", "Trainer"]

Metrics = dict[str, Any]


class PendingMetrics:
    """A step's metrics on their way to the host: read them with :meth:`result`.

    On CUDA the values are copied, without waiting, into page-locked host memory right after the
    step's kernels, and an event marks the copy. :meth:`result` waits for that event only: not
    for anything queued later (reading a device tensor with ``float`` would wait for every
    kernel queued on the stream, the next step's included). On the CPU the values are at hand.

    Parameters
    ----------
    metrics : dict of str to tensor or float
        0-d values of one step (e.g. detached losses), made on the current stream of their
        device (where the step ran).
    """

    def __init__(self, metrics: dict[str, Any]) -> None:
        self.names = list(metrics)
        dev = next(
            (v.device for v in metrics.values() if isinstance(v, torch.Tensor)),
            torch.device("cpu"),
        )
        # float64: every float32/bf16/fp16 value converts exactly, so result() gives float(v)
        values = (
            torch.stack(
                [
                    torch.as_tensor(v, dtype=torch.float64, device=dev).detach().reshape(())
                    for v in metrics.values()
                ]
            )
            if metrics
            else torch.zeros(0, dtype=torch.float64)
        )
        self._event: Any = None
        if values.is_cuda:
            self._host = torch.empty(values.shape, dtype=torch.float64, pin_memory=True)
            self._host.copy_(values, non_blocking=True)
            self._event = torch.cuda.Event()
            # on the stream the copy went to: the current one of the metrics' device
            self._event.record(torch.cuda.current_stream(values.device))
        else:
            self._host = values

    def result(self) -> dict[str, float]:
        """Return the metrics as floats (waits for the step's copy on CUDA, nothing else).

        Returns
        -------
        dict of str to float
            The step's metrics, in the order the step gave them.
        """
        if self._event is not None:
            self._event.synchronize()
        vals = self._host.tolist()
        return dict(zip(self.names, (float(v) for v in vals), strict=True))


class Trainer:
    """One GAN training step for a learned model; subclasses implement the loss hooks.

    Parameters
    ----------
    model : TorchInpaintModel
        From :func:`phirm_scale.models.registry.build_model` (its generator is trained in place).
    lr : float
        Generator learning rate.
    amp : {'auto', 'off', 'bf16', 'fp16'}
        Mixed precision: 'auto' = bf16 (or fp16 with a grad scaler) on CUDA, off on CPU.
    """

    kind = ""
    betas: tuple[float, float] = (0.5, 0.999)
    d_lr_ratio = 1.0

    def __init__(self, model: TorchInpaintModel, *, lr: float, amp: str = "auto") -> None:
        self.model = model
        self.device = model.device
        self.G = model.generator
        cfg = {k: v for k, v in model.config.items() if k != "seed"}
        with seeded(int(model.config.get("seed", 0)) + 1):
            self.D = make_discriminator(self.kind, cfg).to(self.device)
        self.lr = float(lr)
        self._setup_amp(amp)
        g_params, d_params = self.trainable()
        self.opt_g = torch.optim.Adam(g_params, lr=self.lr, betas=self.betas)
        self.opt_d = torch.optim.Adam(d_params, lr=self.lr * self.d_lr_ratio, betas=self.betas)

    # -- configuration
    def _setup_amp(self, amp: str) -> None:
        dev = torch.device(self.device)
        if amp not in ("auto", "off", "bf16", "fp16"):
            raise InputError(f"amp must be auto, off, bf16 or fp16; got {amp!r}")
        self.amp_dtype: torch.dtype | None
        if dev.type != "cuda" or amp == "off":
            self.amp_dtype = None
        elif amp == "auto":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.amp_dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler) if use_scaler else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Return the autocast context of this run (a null context without mixed precision).

        Returns
        -------
        context manager
            ``torch.autocast`` or ``contextlib.nullcontext``.
        """
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def trainable(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """Return the generator and discriminator parameters optimised in this run.

        Returns
        -------
        tuple of list
            ``(generator parameters, discriminator parameters)``.
        """
        return list(self.G.parameters()), list(self.D.parameters())

    # -- hooks
    def forward(self, batch: dict) -> dict:
        """Run the generator forward pass.

        Parameters
        ----------
        batch : dict
            From the model's ``prepare(..., train=True)``.

        Returns
        -------
        dict
            At least ``'output'``.
        """
        return self.model.generate(batch)

    def discriminator_loss(
        self, batch: dict, out: dict
    ) -> tuple[torch.Tensor, Metrics]:  # pragma: no cover - abstract
        """Return ``(loss, metrics)`` of the discriminator (generator outputs detached).

        Parameters
        ----------
        batch : dict
            The prepared batch.
        out : dict
            :meth:`forward`'s result.

        Returns
        -------
        tuple
            The loss tensor and a dict of metric tensors.
        """
        raise NotImplementedError

    def generator_loss(
        self, batch: dict, out: dict
    ) -> tuple[torch.Tensor, Metrics]:  # pragma: no cover - abstract
        """Return ``(loss, metrics)`` of the generator.

        Parameters
        ----------
        batch : dict
            The prepared batch.
        out : dict
            :meth:`forward`'s result.

        Returns
        -------
        tuple
            The loss tensor and a dict of metric tensors.
        """
        raise NotImplementedError

    # -- one step
    def _backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
        else:
            loss.backward()
            opt.step()

    def train_step(self, batch: dict) -> dict[str, float]:
        """Run one discriminator and one generator update.

        Parameters
        ----------
        batch : dict
            From the model's ``prepare(..., train=True)``.

        Returns
        -------
        dict of str to float
            The step's metrics (losses, and per model e.g. edge precision/recall).
        """
        return self.train_step_async(batch).result()

    def train_step_async(self, batch: dict) -> PendingMetrics:
        """:meth:`train_step` without waiting for the device to finish the step.

        A loop that reads a step's metrics only after queuing the next step lets the host
        prepare and queue while the device computes (:class:`PendingMetrics` waits for the
        step's own metrics only).

        Parameters
        ----------
        batch : dict
            From the model's ``prepare(..., train=True)``.

        Returns
        -------
        PendingMetrics
            The step's metrics (:meth:`PendingMetrics.result` gives them as floats).
        """
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
        return PendingMetrics({**d_metrics, **g_metrics, "g_loss": g_loss})

    # -- state
    def state(self) -> dict[str, Any]:
        """Return the weights, optimiser and scaler states (what a checkpoint stores).

        Returns
        -------
        dict
            ``state_dicts``, ``optimizers`` and ``scaler``.
        """
        return {
            "state_dicts": {"generator": self.G.state_dict(), "discriminator": self.D.state_dict()},
            "optimizers": {
                "generator": self.opt_g.state_dict(),
                "discriminator": self.opt_d.state_dict(),
            },
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load(self, ck: Checkpoint, *, optimizers: bool = True) -> None:
        """Load weights (and optimiser/scaler state) from a checkpoint.

        Parameters
        ----------
        ck : Checkpoint
            From :func:`phirm_scale.models.checkpoint.load_checkpoint`.
        optimizers : bool
            Also restore the optimisers and the grad scaler (resuming; not fine-tuning).

        Raises
        ------
        CheckpointError
            Weights of another architecture, or no/unfitting optimiser state.
        """
        load_state(self.G, ck.state_dicts["generator"], what="generator", source=ck.path)
        if "discriminator" in ck.state_dicts:
            load_state(
                self.D, ck.state_dicts["discriminator"], what="discriminator", source=ck.path
            )
        if not optimizers:
            return
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
