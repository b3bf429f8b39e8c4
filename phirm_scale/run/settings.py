"""What a screen run is told: :class:`ScreenSettings`, its defaults and its checks.

Also the names every part of the run shares: the artefact label, the run record, the work
folder and the restored-area variable (:mod:`phirm_scale.run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phirm_scale import fieldqc, flags
from phirm_scale.errors import PhirmError, PlateError

#: Label of the artefact masks in every plate.
MASK_LABEL = "artefacts"
#: Run record written into the output folder.
RUN_FILE = "run.json"
_WORK = ".phirm-run"
#: Self-check draws per field and the residual-artefact flag threshold of `run`
#: (the defaults of `score --self-check`, docs/qc-without-ground-truth.md).
DEFAULT_SELFCHECK_DRAWS = flags.DEFAULT_SELFCHECK_DRAWS
DEFAULT_RESIDUAL_THRESHOLD = flags.DEFAULT_RESIDUAL_THRESHOLD
#: Flag fields whose holes are expected to hide this many nuclear px (fieldqc's default).
DEFAULT_HIDDEN_THRESHOLD = flags.DEFAULT_HIDDEN_THRESHOLD
#: ``--dilate`` default: the dilation (px, a disk) of the artefact masks ``run`` makes, the
#: masks stage's default (``stages.masks.DEFAULT_DILATIONS``), measured best on composite
#: plates with blurred-rim artefacts (docs/qc-without-ground-truth.md, section 8). ``run
#: --dilate N`` makes the masks ``phirm-scale masks --dilation N`` makes, so labels made by
#: ``masks`` with its defaults are the ones ``run`` would make; the inpainting adds nothing.
DEFAULT_DILATE = 4
#: The ``--dilate`` default before it was measured (the paper's recipe: no dilation); a
#: rerun of an output made with it is refused with an error naming the change.
PREVIOUS_DILATE = 0

#: Per-field variable added by `run`: the pixels the inpainting filled (the mask copied
#: into the restored plate, dilation included), counted once per field.
RESTORED_AREA = "field_restored_area"


@dataclass(frozen=True)
class ScreenSettings:
    """How a screen is processed: what :func:`plan_screen` and :func:`run_screen` take.

    Checked when made (everything that needs no file); the checks against the plates (their
    channels and field shape) and the checkpoint are :func:`plan_screen`'s. Recorded in
    ``OUT/run.json`` (``settings``), so a rerun with other settings is refused.

    Parameters
    ----------
    layout, pattern, channel_names
        How TIFF file names are read (see :func:`phirm_scale.stages.convert.plan_conversion`).
    channel : str
        Channel to restore (inpaint) and score.
    artefact_channel : str or None
        Channel the artefact masks are made from (Otsu x 0.7); None: saturation masks on
        ``channel`` (for plates without an artefact channel).
    model, checkpoint
        Inpainting model (see :func:`phirm_scale.stages.inpaint.inpaint_plate`); a learned
        model needs a checkpoint.
    dilate : int or None
        Dilation (px) of the artefact masks ``run`` makes; None: :data:`DEFAULT_DILATE` (4,
        measured best, the masks stage's default), 0 is the paper's recipe.
    reference_channel : str, optional
        Channel of the source plate scored against the restored ``channel`` (default
        ``channel`` itself: how much the restoration changed the phenotype). Without one,
        every plate also gets the self-check and the reference-free field checks.
    window, threshold, mode
        Scoring (see :func:`phirm_scale.stages.score.score_plates`); fields with a mean
        PhIRM below ``threshold`` are flagged.
    hidden_threshold : float
        Without a reference channel, flag (bit 8) fields whose holes are expected to hide at
        least this many nuclear px (:func:`phirm_scale.fieldqc.expected_hidden_nuclear_area`;
        default :data:`phirm_scale.fieldqc.DEFAULT_HIDDEN_THRESHOLD`); a finite number > 0.

    Raises
    ------
    PlateError
        An unknown model, a learned model without a checkpoint, a bad window, mode,
        threshold, hidden-nuclei threshold or dilation.

    Examples
    --------
    >>> ScreenSettings(channel="DAPI", artefact_channel=None, window="field").mask_method
    'saturation'
    """

    layout: str = "auto"
    pattern: str | None = None
    channel_names: tuple[str, ...] | None = None
    channel: str = "DAPI"
    artefact_channel: str | None = "CFP"
    model: str = "telea"
    checkpoint: str | Path | None = None
    reference_channel: str | None = None
    window: int | str = 256
    threshold: float = flags.DEFAULT_SELFCHECK_THRESHOLD
    mode: str = "paper"
    dilate: int | None = None
    hidden_threshold: float = DEFAULT_HIDDEN_THRESHOLD

    def __post_init__(self) -> None:
        import math

        from phirm_scale.metric import PhirmParams
        from phirm_scale.models import list_models
        from phirm_scale.models.registry import LEARNED
        from phirm_scale.qc import parse_window

        if self.channel_names is not None:
            object.__setattr__(self, "channel_names", tuple(self.channel_names))
        if self.model not in list_models():
            raise PlateError(f"unknown model {self.model!r}; known: {', '.join(list_models())}")
        if self.model in LEARNED and self.checkpoint is None:
            raise PlateError(
                f"model {self.model!r} is learned and has no checkpoint: pass --checkpoint PATH "
                "(train one with `phirm-scale train`)"
            )
        try:
            parse_window(self.window)
            PhirmParams.for_mode(self.mode)
        except PhirmError as exc:
            raise PlateError(str(exc)) from None
        t = self.threshold
        if isinstance(t, bool) or not (isinstance(t, (int, float)) and math.isfinite(t)):
            raise PlateError(f"--threshold must be a number, got {t!r}")
        d = self.dilate
        if d is not None and (
            isinstance(d, bool) or not isinstance(d, (int, float)) or int(d) != d or d < 0
        ):
            raise PlateError(f"--dilate must be an integer >= 0, got {d!r}")
        try:
            h = fieldqc.check_hidden_threshold(self.hidden_threshold)
        except PhirmError as exc:
            raise PlateError(str(exc)) from None
        object.__setattr__(self, "hidden_threshold", h)

    @property
    def mask_method(self) -> str:
        """Return how the artefact masks are made: ``'otsu'`` or ``'saturation'``."""
        return "otsu" if self.artefact_channel is not None else "saturation"

    @property
    def dilate_px(self) -> int:
        """Return the masks' dilation in px: the setting, else :data:`DEFAULT_DILATE`."""
        return DEFAULT_DILATE if self.dilate is None else int(self.dilate)

    @property
    def selfcheck(self) -> bool:
        """Whether plates get the self-check (no reference channel: no ground truth)."""
        return self.reference_channel is None

    def window_px(self) -> int | None:
        """Return the scoring window edge in pixels (None: the whole field)."""
        from phirm_scale.qc import parse_window

        return parse_window(self.window)
