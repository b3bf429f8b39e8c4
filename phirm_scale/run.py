"""A whole screen in one call: convert, masks, inpaint, score per plate, then one report.

Every plate goes convert -> masks -> inpaint -> score, then one QC dataset and one report
for the screen, on one cluster opened once.

:func:`plan_screen` finds the plates among the sources and validates everything (nothing is
written); :func:`run_screen` runs it. Output folder::

    OUT/<plate>.ome.zarr            converted plate (TIFF sources) with labels/artefacts
    OUT/<plate>_inpainted.ome.zarr  restored plate (+ a copy of the mask it filled)
    OUT/qc.zarr, qc.csv, qc.parquet one QC dataset for the screen (phirm_scale.screenqc)
    OUT/qc_fields.csv, .parquet     one row per field: flag, per-field checks, summaries
    OUT/report/index.html           the screen report
    OUT/run.json                    inputs, settings, version, per-stage times and counts,
                                    the per-plate summary
    OUT/.phirm-run/                 per-plate QC (a rerun skips plates already scored)

OME-Zarr sources are read in place and never written, except that their artefact masks are
written as the label ``artefacts`` into them (fields that already have it keep it).

Every stage is restartable at field granularity (convert and inpaint resume missing fields,
masks skip fields that have the label, score is kept per plate), so a rerun after an
interruption finishes only what is missing. A rerun with other settings is refused unless
``overwrite``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from phirm_scale import fieldqc, flags
from phirm_scale.errors import OutputError, PhirmError, PlateError

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

    from phirm_scale.plate import FieldKeyLike

__all__ = [
    "PlateSource",
    "ScreenPlan",
    "ScreenSettings",
    "plan_screen",
    "run_screen",
    "MASK_LABEL",
    "RUN_FILE",
    "find_plates",
]

log = logging.getLogger(__name__)

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


@dataclass
class PlateSource:
    """One plate of the screen: a TIFF folder (converted) or an existing OME-Zarr plate."""

    name: str
    path: Path
    kind: str  # 'tiff' or 'zarr'
    channel_names: list[str]
    field_shape: tuple[int, int]
    n_fields: int
    conversion: Any = None  # ConversionPlan for TIFF folders

    def plate_path(self, out: Path) -> Path:
        """Return the plate the stages read: the source itself (OME-Zarr) or its conversion."""
        return self.path if self.kind == "zarr" else out / f"{self.name}.ome.zarr"

    def inpainted_path(self, out: Path) -> Path:
        """Return the restored plate's path in ``out``."""
        return out / f"{self.name}_inpainted.ome.zarr"


@dataclass
class ScreenPlan:
    """A validated screen: the plates, the output folder, the settings."""

    out: Path
    plates: list[PlateSource]
    settings: dict
    resume: bool = False
    warnings: list[str] = dc_field(default_factory=list)


# ------------------------------------------------------------------------------ sources
def _is_zarr_plate(p: Path) -> bool:
    meta = p / "zarr.json"
    if not meta.is_file():
        return False
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return "plate" in attrs.get("ome", {})


def _has_tiffs_here(p: Path) -> bool:
    """TIFFs directly in ``p`` or in its ImageXpress TimePoint_N / ZStep_N folders."""
    for f in p.iterdir():
        if f.is_file() and f.suffix.lower() in (".tif", ".tiff") and not f.name.startswith("."):
            return True
        if f.is_dir() and f.name.startswith(("TimePoint_", "ZStep_")) and _has_tiffs_deep(f):
            return True
    return False


def _has_tiffs_deep(p: Path) -> bool:
    return any(f.suffix.lower() in (".tif", ".tiff") for f in p.rglob("*") if f.is_file())


def _plate_name(p: Path) -> str:
    name = p.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def find_plates(sources: Sequence[str | Path]) -> list[tuple[str, Path, str]]:
    """Return ``(name, path, kind)`` of every plate among ``sources``.

    A source is a plate folder of TIFFs, an OME-Zarr plate, or a folder whose sub-folders
    are such plates; PlateError otherwise.
    """
    found: list[tuple[str, Path, str]] = []
    for s in sources:
        p = Path(s)
        if not p.exists():
            raise PlateError(f"{p}: source not found")
        if not p.is_dir():
            raise PlateError(f"{p}: not a folder of TIFFs nor an OME-Zarr plate")
        if _is_zarr_plate(p):
            found.append((_plate_name(p), p.resolve(), "zarr"))
        elif _has_tiffs_here(p):
            found.append((_plate_name(p), p.resolve(), "tiff"))
        else:
            subs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
            plates = []
            for d in subs:
                if _is_zarr_plate(d):
                    plates.append((_plate_name(d), d.resolve(), "zarr"))
                elif _has_tiffs_here(d):
                    plates.append((_plate_name(d), d.resolve(), "tiff"))
            if not plates:
                raise PlateError(
                    f"{p}: neither a folder of TIFFs, an OME-Zarr plate, nor a "
                    "folder whose sub-folders are plates"
                )
            found.extend(plates)
    seen: dict[str, Path] = {}
    for name, path, _ in found:
        if name in seen:
            raise PlateError(
                f"{path}: plate name {name!r} is also the name of {seen[name]}; "
                "plates of one screen need different names"
            )
        seen[name] = path
    return found


def _inside(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


# ------------------------------------------------------------------------------ planning
def plan_screen(
    sources: Sequence[str | Path],
    out: str | Path,
    settings: ScreenSettings | None = None,
    *,
    overwrite: bool = False,
) -> ScreenPlan:
    """Find and validate the plates and the output; nothing is written.

    Parameters
    ----------
    sources : sequence of path-like
        Plate folders of TIFFs, folders whose sub-folders are plates, OME-Zarr plates.
    out : path-like
        Output folder.
    settings : ScreenSettings, optional
        How the screen is processed (default: ``ScreenSettings()``).
    overwrite : bool
        Accept an output folder holding a run with other settings (:func:`run_screen`
        replaces it).

    Returns
    -------
    ScreenPlan
        The plates, the output and the settings recorded in ``run.json``.

    Raises
    ------
    PlateError
        A source that is neither a TIFF folder nor a plate, two plates of one name, plates
        with different channels or field shapes, a missing channel, a window larger than the
        fields, OUT inside a source (or a source inside OUT).
    OutputError
        OUT existing with other settings (unless ``overwrite``) or not the output of a run.
    TypeError
        ``settings`` that is not a :class:`ScreenSettings`.
    """
    from phirm_scale import __version__
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.convert import plan_conversion

    if settings is None:
        settings = ScreenSettings()
    if not isinstance(settings, ScreenSettings):
        raise TypeError(
            "plan_screen and run_screen take a ScreenSettings (phirm_scale.run.ScreenSettings); "
            f"got {type(settings).__name__}"
        )
    st = settings
    out = Path(out)
    found = find_plates(sources)
    for _, path, _ in found:
        if _inside(out, path):
            raise PlateError(
                f"{out}: the output folder is inside the source {path}; choose an "
                "output outside every source"
            )
        if _inside(path, out):
            raise PlateError(
                f"{path}: source lies inside the output folder {out}; choose another output folder"
            )
    plates: list[PlateSource] = []
    for name, path, kind in found:
        if kind == "tiff":
            plan = plan_conversion(
                path,
                layout=st.layout,
                pattern=st.pattern,
                plate_name=name,
                channel_names=st.channel_names,
            )
            plates.append(
                PlateSource(
                    name,
                    path,
                    kind,
                    list(plan.channel_names),
                    (int(plan.shape[0]), int(plan.shape[1])),
                    len(plan.fields),
                    plan,
                )
            )
        else:
            zp = open_plate(path)
            if st.channel_names is not None:
                raise PlateError(
                    f"{path}: --channel-names applies to TIFF folders; this "
                    f"OME-Zarr plate names its channels {','.join(zp.channel_names)}"
                )
            plates.append(
                PlateSource(
                    name,
                    path,
                    kind,
                    list(zp.channel_names),
                    (int(zp.field_shape[0]), int(zp.field_shape[1])),
                    len(zp.fields),
                )
            )
    first = plates[0]
    for p in plates[1:]:
        if p.channel_names != first.channel_names:
            raise PlateError(
                f"{p.path}: channels {','.join(p.channel_names)} differ from "
                f"plate {first.name!r} ({','.join(first.channel_names)}); one "
                "screen needs one channel set"
            )
        if p.field_shape != first.field_shape:
            raise PlateError(
                f"{p.path}: fields are {p.field_shape[0]}x{p.field_shape[1]}, "
                f"plate {first.name!r} has {first.field_shape[0]}x"
                f"{first.field_shape[1]}; one screen needs one field shape"
            )
    chans = first.channel_names
    hint = (
        ""
        if st.channel_names
        else " (name them with --channel-names, e.g. "
        f"--channel-names {','.join(['DAPI', 'CFP', 'GFP', 'RFP'][: len(chans)])})"
    )
    for what, c in (
        ("--channel", st.channel),
        ("--reference-channel", st.reference_channel),
        ("--artefact-channel", st.artefact_channel),
    ):
        if c is not None and c not in chans:
            # a screen without an artefact channel is run on saturation masks
            none = (
                "; without an artefact channel, pass --artefact-channel none (masks from the "
                "saturated artefacts of --channel)"
                if what == "--artefact-channel"
                else ""
            )
            raise PlateError(
                f"{first.path}: {what} {c!r} is not a channel of the screen "
                f"(channels: {','.join(chans)}){hint}{none}"
            )
    win = st.window_px()
    shape = first.field_shape
    if win is not None and win > min(shape):
        raise PlateError(
            f"--window {win} is larger than the fields ({shape[0]}x{shape[1]}); use a "
            "smaller window or 'field'"
        )
    for src in plates:
        if src.kind == "zarr":
            _check_zarr_source(
                src, channel=st.channel, artefact_channel=st.artefact_channel, dilate=st.dilate_px
            )
    ckpt_hash = None
    if st.checkpoint is not None:
        from phirm_scale.models import get_model

        ckpt_hash = get_model(st.model, checkpoint=st.checkpoint, device="cpu").checkpoint_hash
    record = {
        "sources": [str(p.path) for p in plates],
        "plates": [p.name for p in plates],
        "layout": st.layout,
        "pattern": st.pattern,
        "channel_names": list(st.channel_names) if st.channel_names else None,
        "channel": st.channel,
        "artefact_channel": st.artefact_channel,
        "mask_method": st.mask_method,
        "model": st.model,
        "checkpoint": str(st.checkpoint) if st.checkpoint else None,
        "checkpoint_hash": ckpt_hash,
        "dilate": st.dilate_px,
        # where --dilate acts (runs before 0.x grew old-default masks at the inpaint stage)
        "dilate_at": "masks",
        "reference_channel": st.reference_channel or st.channel,
        # no ground truth: every plate gets the self-check and the reference-free checks
        "selfcheck": st.selfcheck,
        "selfcheck_draws": DEFAULT_SELFCHECK_DRAWS,
        "residual_threshold": DEFAULT_RESIDUAL_THRESHOLD,
        "hidden_threshold": float(st.hidden_threshold),
        "window": str(st.window),
        "threshold": float(st.threshold),
        "mode": st.mode,
        "version": __version__,
    }
    resume = False
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out}: exists and is not a folder")
        rec = out / RUN_FILE
        prev = None
        if rec.is_file():
            try:
                prev = json.loads(rec.read_text()).get("settings")
            except (OSError, ValueError):
                prev = None
        if prev == record or _upgradable(prev, record):
            # a run from before the hidden-nuclei flag (no hidden_threshold recorded) is
            # resumed with the flag: its kept field checks lack the new measures, so every
            # field's are recomputed (_kept) and bit 8 applies to all of them, as run.json
            # then says
            resume = True
        elif overwrite:
            resume = False
        elif prev is not None:
            diff = sorted(
                k
                for k in set(prev) | set(record)
                if prev.get(k) != record.get(k)
                and (k not in _ADDED_SETTINGS or k in prev)  # a run from before them
            )
            changed = _changed_defaults(prev, st)
            raise OutputError(
                f"{out}: holds a run with other settings ({', '.join(diff)})"
                + (f"; {changed}" if changed else "")
                + "; pass --overwrite to replace it, or choose another output folder"
            )
        elif any(out.iterdir()):
            raise OutputError(
                f"{out}: exists and is not the output of `phirm-scale run`; "
                "choose an empty or new folder"
            )
    return ScreenPlan(out=out, plates=plates, settings=record, resume=resume)


#: Settings added since the first runs; a run recorded without them is resumed with them
#: (every kept per-field result lacking what they need is recomputed: :func:`_kept`).
_ADDED_SETTINGS = ("hidden_threshold",)


def _changed_defaults(prev: dict, st: ScreenSettings) -> str:
    """Name the defaults that changed since ``prev`` was run, where they explain the refusal.

    A run recorded before ``--dilate`` set the masks' dilation (no ``dilate_at``) made its
    masks at the masks stage's old defaults and grew them at inpainting, by 0 px unless told.
    """
    if "dilate_at" not in prev:
        return (
            f"it is from before --dilate set the masks' dilation (it grew the old masks by "
            f"--dilate {prev.get('dilate')} at inpainting; the default changed from "
            f"{PREVIOUS_DILATE}, the paper's recipe, to {DEFAULT_DILATE} px masks, measured "
            "best, docs/qc-without-ground-truth.md section 8)"
        )
    return ""


def _upgradable(prev: object, record: dict) -> bool:
    """Whether ``prev`` differs from ``record`` only by settings added since it was made."""
    if not isinstance(prev, dict) or any(k in prev for k in _ADDED_SETTINGS):
        return False
    return prev == {k: v for k, v in record.items() if k not in _ADDED_SETTINGS}


def mask_record(channel_name: str, artefact_channel: str | None, dilate: int) -> dict:
    """Return the settings record ``run --dilate dilate`` gives its artefact masks.

    The masks stage records the same in each label; it is compared with a source's existing
    labels before anything is written.
    """
    from phirm_scale.stages.masks import MaskSettings

    method = "saturation" if artefact_channel is None else "otsu"
    settings = MaskSettings(method=method, dilation=int(dilate))
    return {"channel": channel_name, **settings.as_attrs()}


def _check_zarr_source(
    p: PlateSource, *, channel: str, artefact_channel: str | None, dilate: int
) -> None:
    """Check an OME-Zarr source before anything is written.

    It must not be being written by another run, every field must be completely written,
    and labels ``artefacts`` already there must have been made with this run's settings.
    """
    from phirm_scale.outputs import check_inputs_not_locked
    from phirm_scale.plate import open_plate

    check_inputs_not_locked([p.path])
    plate = open_plate(p.path)
    missing = plate.missing_fields()
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise PlateError(f"{p.path}: field {missing[0]}{more} not (completely) written")
    want = mask_record(
        artefact_channel if artefact_channel is not None else channel, artefact_channel, dilate
    )
    for k in plate.fields:
        la = plate.label_attrs(k, MASK_LABEL)
        if not la.get("complete", False):
            continue
        made = la.get("mask")
        if made != want:
            if not isinstance(made, dict):
                how = "no recorded settings"
            else:
                how = (
                    f"method {made.get('method')} on channel {made.get('channel')}, "
                    f"dilation {made.get('dilation')}"
                )
            hint = "choose other --artefact-channel settings or remove that label"
            if (
                isinstance(made, dict)
                and {
                    **made,
                    "dilation": want["dilation"],
                }
                == want
                and isinstance(made.get("dilation"), int)
            ):
                hint = f"pass --dilate {made['dilation']} to use it"
            raise PlateError(
                f"{p.path}: field {k} already has labels/{MASK_LABEL} made with {how}, "
                f"not the masks this run makes (method {want['method']} on channel "
                f"{want['channel']}, dilation {want['dilation']}); {hint}"
            )


# ------------------------------------------------------------------------------- running
def _remove_previous(out: Path, plan: ScreenPlan) -> None:
    """--overwrite: remove what an earlier run wrote (never a source)."""
    import shutil

    from phirm_scale.plate import remove_store

    for child in out.iterdir():
        if child.name.endswith(".ome.zarr") and (child / "zarr.json").exists():
            remove_store(child)
        elif child.name in (RUN_FILE, "qc.csv", "qc.parquet", "qc_fields.csv", "qc_fields.parquet"):
            child.unlink()
        elif child.name in ("qc.zarr", "report", _WORK):
            shutil.rmtree(child)


def _write_json(path: Path, obj: object) -> None:
    from phirm_scale.outputs import atomic_store

    with atomic_store(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def _previous_record(out: Path) -> dict | None:
    """Return the run.json record a resumed run continues (None when none is readable).

    That is the last complete record: an interrupted resume's own ``previous``.
    """
    try:
        prev = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(prev, dict):
        return None
    if prev.get("status") == "complete":
        return prev
    earlier = prev.get("previous")
    return earlier if isinstance(earlier, dict) else None


def run_screen(
    sources: Sequence[str | Path],
    out: str | Path,
    settings: ScreenSettings | None = None,
    *,
    cluster: Any = "local",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Process a whole screen; returns the summary (also stored in ``OUT/run.json``).

    Parameters
    ----------
    sources : sequence of path-like
        Plate folders of TIFFs, folders whose sub-folders are plates, OME-Zarr plates.
    out : path-like
        Output folder (see the module doc).
    settings : ScreenSettings, optional
        How the screen is processed: channels, masks, model, scoring (default:
        ``ScreenSettings()``); recorded in ``run.json``.
    cluster : str or distributed.Client
        Opened once and used by every stage.
    overwrite : bool
        Replace an output folder holding a run with other settings.
    progress : bool
        Progress bars on stderr (:func:`phirm_scale.progress.progress_bar`). What the run
        does is logged (``phirm_scale.run``, info); warnings (e.g. no artefact found) are
        logged as warnings.

    Returns
    -------
    dict
        ``out``, ``report``, ``plates`` (per-plate summary rows), ``screen`` (totals),
        ``warnings``, ``stages`` (seconds and fields per stage).

    Examples
    --------
    >>> from phirm_scale.run import ScreenSettings, run_screen
    >>> settings = ScreenSettings(channel="DAPI", artefact_channel="CFP")
    >>> summary = run_screen(["composite.ome.zarr"], "composite_qc", settings,
    ...                      cluster="threads")  # doctest: +SKIP
    """
    from phirm_scale.cluster import open_cluster
    from phirm_scale.outputs import output_lock

    t_start = time.perf_counter()
    plan = plan_screen(sources, out, settings, overwrite=overwrite)
    out = plan.out
    # one run per output folder at a time: its lock (host, PID) for the whole run
    with output_lock(out, command="run"):
        if out.exists() and overwrite and not plan.resume:
            _remove_previous(out, plan)
        out.mkdir(parents=True, exist_ok=True)
        (out / _WORK).mkdir(exist_ok=True)
        record: dict[str, Any] = {
            "status": "running",
            "settings": plan.settings,
            "inputs": [
                {"plate": p.name, "source": str(p.path), "kind": p.kind, "fields": p.n_fields}
                for p in plan.plates
            ],
        }
        previous = _previous_record(out) if plan.resume else None
        if previous is not None:  # a resumed run keeps what it resumes until it completes
            record["previous"] = previous
        _write_json(out / RUN_FILE, record)
        stages: dict[str, dict] = {
            s: {"seconds": 0.0, "fields": 0}
            for s in ("convert", "masks", "inpaint", "score", "selfcheck", "report")
        }
        per_plate: dict[str, dict] = {}
        qcs = {}
        n_fields = sum(p.n_fields for p in plan.plates)
        log.info(
            "screen: %d plate(s), %d fields%s",
            len(plan.plates),
            n_fields,
            " (resuming)" if plan.resume else "",
        )
        with open_cluster(cluster, quiet=not progress) as client:
            spec = client if client is not None else "threads"
            for p in plan.plates:
                per_plate[p.name] = _run_plate(p, plan, spec, client, stages, progress)
                qcs[p.name] = per_plate[p.name].pop("_qc")
            if plan.settings["selfcheck"]:
                _selfcheck_screen(plan, qcs, spec, stages, progress)
        summary = _finish(plan, qcs, per_plate, stages, progress)
        summary["stages"]["total"] = {
            "seconds": round(time.perf_counter() - t_start, 3),
            "fields": sum(p.n_fields for p in plan.plates),
        }
        record.pop("previous", None)
        record.update({"status": "complete", **summary})
        _write_json(out / RUN_FILE, record)
        return summary


def _selfcheck_screen(
    plan: ScreenPlan,
    qcs: dict[str, xr.Dataset],
    spec: Client | str,
    stages: dict[str, dict[str, Any]],
    progress: bool,
) -> None:
    """Self-check every plate (no reference channel).

    Pseudo-holes are shaped like the plate's own artefact masks, or, for a plate without
    any, like those of the first plate of the screen that has some. A screen without any
    hole records the skip (a warning), never a silent 1.0.
    """
    import numpy as np

    with_holes = [p for p in plan.plates if float(np.nansum(qcs[p.name][RESTORED_AREA].values)) > 0]
    if not with_holes:
        plan.warnings.append(
            "self-check not run: no field of the screen has an artefact mask to shape "
            "pseudo-holes from (nothing was restored, so there is nothing to verify); the "
            "reference-free field checks (image quality, residual artefact) were made"
        )
        for p in plan.plates:  # image quality and residual artefact still mean something
            with _timed(stages, "selfcheck", p.n_fields):
                qcs[p.name] = _fieldchecks_kept(
                    qcs[p.name], p, plan, cluster=spec, progress=progress
                )
        return
    for p in plan.plates:
        own = p in with_holes
        pool = (p if own else with_holes[0]).plate_path(plan.out)
        if not own:
            log.info(
                "self-check %s: no holes in this plate, shapes from %s", p.name, with_holes[0].name
            )
        with _timed(stages, "selfcheck", p.n_fields):
            qcs[p.name] = _selfcheck_kept(
                qcs[p.name], p, pool, plan, cluster=spec, progress=progress
            )


def _timed(stages: dict[str, dict[str, Any]], name: str, n: int) -> AbstractContextManager[None]:
    class _T:
        def __enter__(self) -> None:
            self.t = time.perf_counter()

        def __exit__(self, *exc: object) -> Literal[False]:
            stages[name]["seconds"] = round(
                stages[name]["seconds"] + time.perf_counter() - self.t, 3
            )
            stages[name]["fields"] += n
            return False

    return _T()


def _run_plate(
    p: PlateSource,
    plan: ScreenPlan,
    spec: Client | str,
    client: Client | None,
    stages: dict[str, dict[str, Any]],
    progress: bool,
) -> dict[str, Any]:
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.convert import convert
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.masks import make_artefact_masks

    s = plan.settings
    out = plan.out
    plate_path = p.plate_path(out)
    inpainted = p.inpainted_path(out)
    log.info("== plate %s (%d fields)", p.name, p.n_fields)
    if p.kind == "tiff":
        with _timed(stages, "convert", p.n_fields):
            convert(
                p.path,
                plate_path,
                layout=s["layout"],
                pattern=s["pattern"],
                plate_name=p.name,
                channel_names=s["channel_names"],
                cluster=spec,
                progress=progress,
            )
    with _timed(stages, "masks", p.n_fields):
        kw: dict[str, Any] = {}
        if s["artefact_channel"] is None:
            kw = {"method": "saturation", "channel": s["channel"]}
        else:
            kw = {"method": "otsu", "channel": s["artefact_channel"]}
        kw["dilation"] = s["dilate"]
        areas = make_artefact_masks(
            plate_path, name=MASK_LABEL, cluster=spec, progress=progress, **kw
        )
    plate = open_plate(plate_path)
    hole_fields = sum(1 for a in areas.values() if a)
    with _timed(stages, "inpaint", p.n_fields):
        res = inpaint_plate(
            plate_path,
            inpainted,
            channel=s["channel"],
            mask_label=MASK_LABEL,
            model=s["model"],
            checkpoint=s["checkpoint"],
            dilate=0,  # the masks are made at --dilate already
            cluster=spec,
            progress=progress,
        )
    with _timed(stages, "score", p.n_fields):
        ds = _score_kept(
            plate_path,
            inpainted,
            out / _WORK / f"score_{p.name}",
            s,
            cluster=client if client is not None else "threads",
            progress=progress,
        )
    return {
        "plate": str(plate_path),
        "inpainted": str(inpainted),
        "fields": len(plate.fields),
        "wells": len(plate.wells),
        "fields_masked_now": hole_fields,
        "hole_pixels_now": res["hole_pixels"],
        "_qc": ds,
    }


def nothing_done_warnings(ds: xr.Dataset, artefact_channel: str | None = None) -> list[str]:
    """Loud warnings for a screen where a stage found nothing to do.

    * no hole pixel in any field (empty masks: nothing was inpainted);
    * every field identical to its reference (PSNR infinite in every scored window: the
      restoration changed nothing the scoring can see), or, failing that, every field with
      the same mean PhIRM (the QC cannot tell one field from another).

    ``ds`` is the screen QC Dataset (:func:`phirm_scale.screenqc.screen_dataset`).
    """
    import numpy as np

    out = []
    if "masked_fraction" in ds and float(np.nansum(ds["masked_fraction"].values)) == 0:
        out.append(
            "no artefact pixels were found in the whole screen: masks are empty, "
            "nothing was inpainted and every PhIRM is 1 by construction"
            + (f" (artefact channel {artefact_channel!r})" if artefact_channel else "")
        )
    fm = ds["field_phirm_mean"].values
    fm = fm[~np.isnan(fm)]
    if fm.size == 0:
        return out
    psnr = ds["psnr"].values
    psnr = psnr[~np.isnan(ds["phirm"].values)]
    if psnr.size and np.all(np.isposinf(psnr)):
        out.append(
            f"every field is identical to its reference ({fm.size} of {fm.size} fields): the "
            "restoration changed nothing the QC can see, so every score is perfect by "
            "construction"
        )
    elif fm.size > 1 and np.all(fm == fm[0]):
        out.append(
            f"every field has the same mean PhIRM ({fm[0]:.4f}, {fm.size} fields): the QC "
            "cannot tell good fields from bad ones"
        )
    return out


# --------------------------------------------------------- per-field results kept on disk
#: Per-field variable added by `run`: the pixels the inpainting filled (the mask copied
#: into the restored plate, dilation included), counted once per field.
RESTORED_AREA = "field_restored_area"


def _field_file(folder: Path, key: FieldKeyLike) -> Path:
    return folder / f"{key[0]}{key[1]}_{int(key[2])}.npz"


def _save_result(path: Path, result: dict) -> None:
    """One field's results, written beside and renamed (never half written)."""
    import numpy as np

    from phirm_scale._atomic import atomic_store

    arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.float64) for k, v in result.items()}
    with atomic_store(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load_result(path: Path) -> dict | None:
    """Return a kept result (None when unreadable: then the field is recomputed)."""
    import numpy as np

    try:
        with np.load(path) as z:
            return {k: (z[k] if z[k].ndim else float(z[k])) for k in z.files}
    except (OSError, ValueError, EOFError):
        return None


def _kept(folder: Path, keys: Iterable[FieldKeyLike], required: Iterable[str] = ()) -> dict:
    """``{key: result}`` of the fields of ``keys`` already kept in ``folder``.

    A kept result lacking any of the ``required`` variables (one written by an earlier
    version, before a check was added) counts as not kept: the field is recomputed.
    """
    need = set(required)
    out = {}
    for k in keys:
        f = _field_file(folder, k)
        if f.is_file():
            r = _load_result(f)
            if r is not None and need <= r.keys():
                out[k] = r
    return out


@dataclass(frozen=True)
class KeptTask:
    """A stage task whose per-field results are also saved, one file per field."""

    task: Any  # a ScoreTask or SelfCheckTask
    files: tuple  # one path per key of the task
    restored: str = ""  # score tasks: the restored plate (its mask label gives the area)


def _score_and_keep(t: KeptTask) -> list[dict]:
    from phirm_scale.plate import open_field_view
    from phirm_scale.stages import score as score_stage

    out = []
    for key, r, f in zip(
        t.task.keys, score_stage._score_plate_fields(t.task), t.files, strict=True
    ):
        view = open_field_view(t.restored, key)
        r = {**r, RESTORED_AREA: int((view.read_label(key, MASK_LABEL) > 0).sum())}
        _save_result(Path(f), r)
        out.append(r)
    return out


def _selfcheck_and_keep(t: KeptTask) -> list[dict]:
    from phirm_scale.stages import selfcheck as sc_stage

    out = sc_stage._task(t.task)
    for r, f in zip(out, t.files, strict=True):
        _save_result(Path(f), r)
    return out


def _score_kept(
    plate_path: Path,
    inpainted: Path,
    folder: Path,
    s: dict[str, Any],
    *,
    cluster: Client | str,
    progress: bool,
) -> xr.Dataset:
    """Score a plate, keeping every field's result in ``folder``.

    A rerun scores only the fields not kept yet (identical results: the same kernel on the
    same pixels).
    """
    from phirm_scale import qc
    from phirm_scale.metric import PhirmParams
    from phirm_scale.stages._runner import run_tasks
    from phirm_scale.stages.score import plan_score, score_tasks

    plan = plan_score(
        f"{plate_path}:{s['reference_channel']}",
        f"{inpainted}:{s['channel']}",
        window=s["window"],
        mask_label=MASK_LABEL,
    )
    params = PhirmParams.for_mode(s["mode"])
    folder.mkdir(parents=True, exist_ok=True)
    results = _kept(folder, plan.keys)
    todo = [k for k in plan.keys if k not in results]
    if todo:
        import dataclasses

        tasks = [
            KeptTask(t, tuple(str(_field_file(folder, k)) for k in t.keys), plan.reconstruction)
            for t in score_tasks(dataclasses.replace(plan, keys=tuple(todo)), params=params)
        ]
        done = run_tasks(
            _score_and_keep, tasks, cluster=cluster, progress=progress, description="score"
        )
        for t, res in zip(tasks, done, strict=True):
            results.update(zip(t.task.keys, res, strict=True))
    ds = qc.to_dataset(
        results,
        qc.window_grid(plan.field_shape, plan.window),
        rows=plan.rows,
        columns=plan.columns,
        params=params,
        threshold=float(s["threshold"]),
        attrs=plan.attrs(),
    )
    return qc.add_field_results(
        ds,
        {k: {RESTORED_AREA: r[RESTORED_AREA]} for k, r in results.items()},
        {RESTORED_AREA: ("pixels filled by the inpainting (the mask it filled)", "px")},
    )


@dataclass(frozen=True)
class FieldCheckTask:
    """Reference-free checks of a few fields (:func:`phirm_scale.fieldqc.field_checks`)."""

    source: str
    channel: str
    restored: str
    keys: tuple
    params: Any


def _fieldchecks_and_keep(t: KeptTask) -> list[dict]:
    from phirm_scale import fieldqc
    from phirm_scale.plate import open_field_view

    task = t.task
    out = []
    for key, f in zip(task.keys, t.files, strict=True):
        rec = open_field_view(task.restored, key)
        name = f"{task.source}/{key.path}"
        r = fieldqc.field_checks(
            open_field_view(task.source, key).read_field(key, task.channel),
            rec.read_field(key, task.channel),
            rec.read_label(key, MASK_LABEL) > 0,  # the mask the inpainting filled
            params=task.params,
            name=name,
        )
        _save_result(Path(f), r)
        out.append(r)
    return out


def _fieldchecks_kept(
    ds: xr.Dataset, p: PlateSource, plan: ScreenPlan, *, cluster: Client | str, progress: bool
) -> xr.Dataset:
    """Reference-free field checks (no self-check) of plate ``p``, kept per field."""
    from phirm_scale import fieldqc, qc
    from phirm_scale.metric import PhirmParams
    from phirm_scale.plate import FieldKey, open_plate
    from phirm_scale.stages._runner import run_tasks

    s = plan.settings
    inpainted = p.inpainted_path(plan.out)
    keys = [FieldKey(*k) for k in open_plate(inpainted).fields]
    folder = plan.out / _WORK / f"fieldqc_{p.name}"
    folder.mkdir(parents=True, exist_ok=True)
    results = _kept(folder, keys, fieldqc.CHECK_VARIABLES)
    todo = [k for k in keys if k not in results]
    if todo:
        params = PhirmParams.for_mode(s["mode"])
        src = str(p.plate_path(plan.out).resolve())
        tasks = [
            KeptTask(
                FieldCheckTask(src, s["channel"], str(inpainted.resolve()), (k,), params),
                (str(_field_file(folder, k)),),
            )
            for k in todo
        ]
        done = run_tasks(
            _fieldchecks_and_keep,
            tasks,
            cluster=cluster,
            progress=progress,
            description="field checks",
        )
        for t, res in zip(tasks, done, strict=True):
            results.update(zip(t.task.keys, res, strict=True))
    ds = qc.add_field_results(ds, results, fieldqc.CHECK_VARIABLES)
    return qc.flag_fields(
        ds,
        selfcheck_threshold=float(s["threshold"]),
        residual_threshold=float(s["residual_threshold"]),
        hidden_threshold=float(s["hidden_threshold"]),
    )


def _selfcheck_kept(
    ds: xr.Dataset,
    p: PlateSource,
    pool_plate: Path,
    plan: ScreenPlan,
    *,
    cluster: Client | str,
    progress: bool,
) -> xr.Dataset:
    """Add the self-check and reference-free field checks to plate ``p``'s QC.

    Every field's result is kept in ``OUT/.phirm-run/selfcheck_<plate>`` (a rerun computes
    only the fields not kept yet). Pseudo-hole shapes come from ``pool_plate``'s masks.
    """
    from phirm_scale.metric import PhirmParams
    from phirm_scale.plate import FieldKey
    from phirm_scale.stages import selfcheck as sc
    from phirm_scale.stages._runner import run_tasks

    s = plan.settings
    inpainted = p.inpainted_path(plan.out)
    spec = sc.selfcheck_spec(inpainted, draws=s["selfcheck_draws"], seed=0)
    rec = sc._plate(str(inpainted.resolve()))
    rc = rec.channel_index(s["channel"])
    keys = [FieldKey(*k) for k in rec.fields]
    recipe = sc.PoolRecipe(
        str(Path(pool_plate).resolve()),
        MASK_LABEL,
        spec.dilate,
        16,
        spec.seed,
        tuple(rec.field_shape),
    )
    pool = sc._pool_from_recipe(recipe)
    folder = plan.out / _WORK / f"selfcheck_{p.name}"
    folder.mkdir(parents=True, exist_ok=True)
    results = _kept(folder, keys, sc.result_variables())
    todo = [k for k in keys if k not in results]
    if todo:
        tasks = [
            KeptTask(t, tuple(str(_field_file(folder, k)) for k in t.keys))
            for t in sc.selfcheck_tasks(
                spec,
                str(rec.path),
                rc,
                todo,
                recipe,
                window=ds.attrs.get("window", 256),
                params=PhirmParams.for_mode(s["mode"]),
            )
        ]
        done = run_tasks(
            _selfcheck_and_keep, tasks, cluster=cluster, progress=progress, description="self-check"
        )
        for t, res in zip(tasks, done, strict=True):
            results.update({FieldKey(*k): r for k, r in zip(t.task.keys, res, strict=True)})
    return sc.add_to_dataset(
        ds,
        results,
        spec,
        pool=pool,
        selfcheck_threshold=float(s["threshold"]),
        residual_threshold=float(s["residual_threshold"]),
        hidden_threshold=float(s["hidden_threshold"]),
    )


def _finish(plan: ScreenPlan, qcs: dict, per_plate: dict, stages: dict, progress: bool) -> dict:
    import numpy as np

    from phirm_scale.report import recorded_hidden_threshold, write_screen_report
    from phirm_scale.screenqc import screen_dataset, write_screen_qc

    out = plan.out
    s = plan.settings
    ds = screen_dataset(qcs, attrs={"run_settings": json.dumps(plan.settings)})
    write_screen_qc(
        ds,
        out / "qc.zarr",
        csv=out / "qc.csv",
        parquet=out / "qc.parquet",
        field_csv=out / "qc_fields.csv",
        field_parquet=out / "qc_fields.parquet",
        overwrite=True,
    )
    thr = float(s["threshold"])
    rows = []
    warnings_: list[str] = []
    for name in ds["plate"].values.tolist():
        d = ds.sel(plate=name)
        fm = d["field_phirm_mean"].values
        scored = ~np.isnan(fm)
        if "flag" in d:  # self-check: the reference-free flag (PhIRM against the damaged
            # source counts every removed artefact as damage)
            flagged = int(np.sum(np.nan_to_num(d["flag"].values) > 0))
        else:
            flagged = int(np.sum(fm[scored] < thr))
        sc_mean = (
            round(float(d["plate_selfcheck_phirm_mean"]), 6)
            if "plate_selfcheck_phirm_mean" in d
            else None
        )
        est = (
            round(float(d["plate_estimated_phirm_mean"]), 6)
            if "plate_estimated_phirm_mean" in d
            and np.isfinite(float(d["plate_estimated_phirm_mean"]))
            else None
        )
        restored = int(np.nansum(d[RESTORED_AREA].values)) if RESTORED_AREA in d else None
        masked = (
            float(d["plate_masked_fraction_mean"])
            if "plate_masked_fraction_mean" in d
            else float("nan")
        )
        info = per_plate[name]
        rows.append(
            {
                "plate": name,
                "fields": int(scored.sum()),
                "wells": info["wells"],
                "masked_fraction": round(masked, 6),
                "fields_flagged": flagged,
                "phirm_mean": round(float(d["plate_phirm_mean"]), 6),
                "phirm_min": round(float(d["plate_phirm_min"]), 6),
                "phirm_p05": round(float(d["plate_phirm_p05"]), 6),
                "windows_below": round(float(d["plate_phirm_frac_below"]), 6),
                "ssim_mean": round(float(d["plate_ssim_mean"]), 6),
                "restored_px": restored,
                "selfcheck_mean": sc_mean,
                "estimated_phirm": est,
            }
        )
    warnings_.extend(nothing_done_warnings(ds, s.get("artefact_channel")))
    warnings_.extend(plan.warnings)
    for w in warnings_:  # loud, whatever --no-progress / --json / --quiet say (stderr)
        log.warning("%s", w)
    with _timed(stages, "report", sum(r["fields"] for r in rows)):
        report = write_screen_report(
            ds,
            out / "report",
            warnings=warnings_,
            links={
                "qc.csv": "../qc.csv",
                "qc.zarr": "../qc.zarr",
                "qc.parquet": "../qc.parquet",
                "qc_fields.csv": "../qc_fields.csv",
                "qc_fields.parquet": "../qc_fields.parquet",
                "run.json": "../run.json",
            },
        )
    n_fields = sum(r["fields"] for r in rows)
    # the rules the QC records (a store's text never claims a rule that was not applied)
    hid_thr = recorded_hidden_threshold(ds["flag"].attrs) if "flag" in ds else None
    res_thr = float(ds["flag"].attrs["residual_threshold"]) if "flag" in ds else None
    hidden = " and hidden nuclei" if hid_thr is not None else ""
    screen = {
        "plates": len(rows),
        "fields": n_fields,
        "fields_flagged": sum(r["fields_flagged"] for r in rows),
        "flagged_by": (
            ("self-check, residual artefact" if hidden else "self-check and residual artefact")
            + hidden
            if "selfcheck_phirm" in ds
            else "residual artefact" + hidden
            if "flag" in ds
            else "PhIRM"
        ),
        "residual_threshold": res_thr,
        "hidden_threshold": hid_thr,
        "restored_px": int(np.nansum(ds[RESTORED_AREA].values)) if RESTORED_AREA in ds else None,
        "phirm_mean": round(float(np.nanmean(ds["field_phirm_mean"].values)), 6)
        if n_fields
        else None,
        # the reference-free estimate of the true PhIRM (no reference channel), over fields
        "estimated_phirm": round(float(np.nanmean(ds["field_estimated_phirm_mean"].values)), 6)
        if "field_estimated_phirm_mean" in ds
        and np.isfinite(ds["field_estimated_phirm_mean"].values).any()
        else None,
        "threshold": thr,
    }
    return {
        "out": str(out),
        "report": str(report),
        "qc": str(out / "qc.zarr"),
        "plates": rows,
        "screen": screen,
        "warnings": warnings_,
        "stages": stages,
    }
