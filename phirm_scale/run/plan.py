"""A screen planned before anything is written: plates found, settings checked, run.json.

:func:`find_plates` finds the plates among the sources, :func:`plan_screen` validates them
and the output folder against the settings (a rerun with other settings is refused), and
the run record helpers read and write ``OUT/run.json`` (:mod:`phirm_scale.run`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from phirm_scale.errors import OutputError, PlateError
from phirm_scale.run.settings import (
    _WORK,
    DEFAULT_DILATE,
    DEFAULT_RESIDUAL_THRESHOLD,
    DEFAULT_SELFCHECK_DRAWS,
    MASK_LABEL,
    PREVIOUS_DILATE,
    RUN_FILE,
    ScreenSettings,
)


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
