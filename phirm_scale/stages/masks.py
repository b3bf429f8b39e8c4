"""Artefact masks of a plate as NGFF labels, one Dask task per field.

Two methods (:class:`MaskSettings`):

``otsu``
    the paper's recipe (3.3) on an artefact channel (CFP): Otsu x factor, opening, closing
    (:func:`phirm_scale.masks.artefact_mask`);
``saturation``
    no artefact channel needed: the components PhIRM itself calls artefacts on the nuclei
    channel, grown by a dilation radius (:func:`phirm_scale.masks.saturation_mask`).

Each task reads one channel of one field, runs the pure-numpy mask function and writes
``labels/<name>`` of that field (one writer per field), with the method and its parameters
in the label's attributes. Image data is never modified. Fields whose label is complete and
was made with the same settings are skipped unless ``overwrite``, so a killed run resumes; a
label made with other settings is never silently kept or mixed: without ``overwrite`` that is
an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phirm_scale.errors import PlateError
from phirm_scale.masks._saturation import DEFAULT_DILATION as SATURATION_DILATION
from phirm_scale.plate import ATTRS_KEY

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from phirm_scale.metric import PhirmParams

__all__ = [
    "MASK_METHODS",
    "MaskSettings",
    "MaskTask",
    "make_artefact_masks",
    "mask_field",
    "mask_image",
]

#: Mask methods of :func:`make_artefact_masks`.
MASK_METHODS = ("otsu", "saturation")

#: Default final dilation (px, a disk) of each method: the measured best on composite
#: plates whose artefacts have blurred rims (docs/qc-without-ground-truth.md, section 8a:
#: 4 px is the best, or within 0.003 of it, on all 16 plate/method pairs; 0 px loses
#: 0.40-0.86 of true plate PhIRM). The saturation value is the maths function's default.
DEFAULT_DILATIONS = {"otsu": 4, "saturation": SATURATION_DILATION}
#: The defaults before they were measured: the paper's recipe for ``otsu`` (no dilation)
#: and 1 px for ``saturation``. Named in the error when a label made with them is met.
PREVIOUS_DILATIONS = {"otsu": 0, "saturation": 1}


@dataclass(frozen=True)
class MaskSettings:
    """How an artefact mask is made (recorded with every label it makes).

    Parameters
    ----------
    method : {'otsu', 'saturation'}
    otsu_factor : float or None
        ``otsu``: multiplier of the artefact channel's Otsu threshold (default 0.7, the
        paper). ``saturation``: PhIRM's own Otsu factor (default: that of ``metric_mode``,
        1.0 for the paper, 1.1 for the published code).
    radius : int
        ``otsu`` only: disk radius of the opening and closing (2).
    min_separability : float or None
        ``otsu`` only: fields whose Otsu separability is below this get an empty mask (0.9).
    dilation : int or None
        Radius of a final dilation of the mask, px. Default :data:`DEFAULT_DILATIONS` (4 for
        both methods, measured best on blurred-rim artefacts); 0 is the paper's recipe for
        ``otsu``.
    metric_mode : {'paper', 'reference'}
        ``saturation`` only: PhIRM's mode (:meth:`PhirmParams.for_mode`).
    saturation, artefact_mean, min_area : optional
        ``saturation`` only: overrides of the PhirmParams fields of that name (255, 210, 50
        in paper mode).
    """

    method: str = "otsu"
    otsu_factor: float | None = None
    radius: int = 2
    min_separability: float | None = 0.9
    dilation: int | None = None
    metric_mode: str = "paper"
    saturation: int | None = None
    artefact_mean: float | None = None
    min_area: int | None = None

    def __post_init__(self) -> None:
        if self.method not in MASK_METHODS:
            raise PlateError(
                f"mask method must be one of {', '.join(MASK_METHODS)}, got {self.method!r}"
            )
        if self.otsu_factor is not None and not self.otsu_factor > 0:
            raise PlateError(f"otsu_factor must be > 0, got {self.otsu_factor}")
        if self.radius < 0:
            raise PlateError(f"radius must be >= 0, got {self.radius}")
        if self.dilation is not None and (int(self.dilation) != self.dilation or self.dilation < 0):
            raise PlateError(f"dilation must be an integer >= 0, got {self.dilation}")
        if self.method == "saturation":
            self.phirm_params()  # raises InputError on bad fields

    @property
    def dilation_px(self) -> int:
        """Return the dilation in pixels: the setting, else the method's default."""
        if self.dilation is not None:
            return int(self.dilation)
        return DEFAULT_DILATIONS[self.method]

    def phirm_params(self) -> PhirmParams:
        """PhirmParams of the ``saturation`` method."""
        from phirm_scale.metric import PhirmParams

        over: dict[str, Any] = {}
        for k in ("otsu_factor", "saturation", "artefact_mean", "min_area"):
            v = getattr(self, k)
            if v is not None:
                over[k] = v
        return PhirmParams.for_mode(self.metric_mode, **over)

    def as_attrs(self) -> dict:
        """JSON-able record of the method and every parameter that shaped the mask."""
        if self.method == "otsu":
            return {
                "method": "otsu",
                "otsu_factor": float(0.7 if self.otsu_factor is None else self.otsu_factor),
                "radius": int(self.radius),
                "min_separability": (
                    None if self.min_separability is None else float(self.min_separability)
                ),
                "dilation": self.dilation_px,
            }
        p = self.phirm_params()
        return {
            "method": "saturation",
            "dilation": self.dilation_px,
            "normalisation": "rint((x - min) / (max - min) * 255) of the field",
            "phirm_params": dataclasses.asdict(p),
        }


def _label_difference(made: object, record: dict, *, explicit: bool) -> str:
    """Say how an existing label's settings differ from ``record`` (for one error line).

    Names the changed dilation default when the label was made with the old one and this
    call did not set ``dilation``.
    """
    if not isinstance(made, dict):
        return "no recorded settings"
    how = f"method {made.get('method')} on channel {made.get('channel')}"
    diff = sorted(k for k in set(made) | set(record) if made.get(k) != record.get(k))
    if not diff:  # pragma: no cover - only called when they differ
        return how
    said = ", ".join(f"{k} {made.get(k)!r} (now {record.get(k)!r})" for k in diff)
    text = f"{how}, {said}"
    method = record.get("method")
    if (
        not explicit
        and made.get("method") == method
        and "dilation" in diff
        and made.get("dilation") == PREVIOUS_DILATIONS.get(str(method))
    ):
        text += (
            f" -- the default --dilation of --method {method} changed from "
            f"{PREVIOUS_DILATIONS[str(method)]} to {DEFAULT_DILATIONS[str(method)]} "
            f"(pass --dilation {PREVIOUS_DILATIONS[str(method)]} to keep that label)"
        )
    return text


def mask_image(
    image: npt.NDArray[Any], settings: MaskSettings, *, name: str = "image"
) -> npt.NDArray[np.bool_]:
    """Compute the artefact mask of one channel image with ``settings`` (pure numpy)."""
    from phirm_scale.masks import artefact_mask, dilate_mask, saturation_mask

    if settings.method == "otsu":
        m = artefact_mask(
            image,
            otsu_factor=0.7 if settings.otsu_factor is None else settings.otsu_factor,
            radius=settings.radius,
            min_separability=settings.min_separability,
        )
        return dilate_mask(m, settings.dilation_px)
    return saturation_mask(
        image, dilation=settings.dilation_px, params=settings.phirm_params(), name=name
    )


@dataclass(frozen=True)
class MaskTask:
    """Arguments of one masks task: one field of one plate."""

    plate: str
    key: tuple  # (row, column, field)
    channel: int
    name: str
    settings: MaskSettings
    record: dict  # written into the label's attributes


def mask_field(task: MaskTask) -> tuple[tuple, int]:
    """Run one task: write the artefact mask of one field as label ``name``.

    ``record`` goes into the label's attributes. Opens only that field
    (:func:`~phirm_scale.plate.open_field_view`).

    Returns
    -------
    tuple
        The field key and the masked pixel count.
    """
    from phirm_scale.plate import FieldKey, open_field_view

    key = FieldKey(*task.key)
    plate = open_field_view(task.plate, key)
    image = plate.read_field(key, task.channel)
    try:
        mask = mask_image(image, task.settings, name=f"{task.plate}: field {key}")
    except PlateError:
        raise
    except Exception as exc:  # InputError and friends: name the field
        raise PlateError(f"{task.plate}: field {key}: {exc}") from exc
    plate.write_label(key, task.name, mask, attrs={"mask": task.record})
    return tuple(key), int(mask.sum())


def make_artefact_masks(
    plate: str | Path,
    *,
    channel: str | int = "CFP",
    name: str = "artefacts",
    method: str = "otsu",
    otsu_factor: float | None = None,
    radius: int = 2,
    min_separability: float | None = 0.9,
    dilation: int | None = None,
    metric_mode: str = "paper",
    saturation: int | None = None,
    artefact_mean: float | None = None,
    min_area: int | None = None,
    overwrite: bool = False,
    cluster: Any = "local",
    progress: bool = True,
) -> dict:
    """Write the artefact mask of every field of ``plate`` as label ``name``.

    Parameters
    ----------
    plate : str or Path
        An HCS plate.
    channel : str or int
        The channel the mask is made from (name or index): the artefact channel (CFP) for
        ``otsu``, the nuclei channel (DAPI) for ``saturation``.
    name : str
        Label name.
    method : {'otsu', 'saturation'}
        See :class:`MaskSettings` (which documents every other parameter).
    overwrite : bool
        Recompute fields that already have the label.
    cluster : str or distributed.Client
        ``--cluster`` spec (opened and closed here) or an open client (left open).
    progress : bool
        Progress bar on stderr.

    Returns
    -------
    dict
        ``{FieldKey: masked pixel count}`` for the fields computed in this call.

    The label attributes (``phirm_scale.mask``) and the plate attributes
    (``phirm_scale.labels_<name>``) record the channel, method and parameters.
    """
    from phirm_scale.outputs import output_lock
    from phirm_scale.plate import FieldKey, open_plate
    from phirm_scale.stages._runner import run_tasks

    p = open_plate(plate)
    try:
        c = p.channel_index(channel)
    except PlateError as exc:
        if method != "otsu":
            raise
        raise PlateError(
            f"{exc}; a plate without an artefact channel: --method saturation --channel "
            "<the nuclei channel> (masks from its saturated artefacts)"
        ) from None
    try:
        settings = MaskSettings(
            method=method,
            otsu_factor=otsu_factor,
            radius=int(radius),
            min_separability=min_separability,
            dilation=dilation,
            metric_mode=metric_mode,
            saturation=saturation,
            artefact_mean=artefact_mean,
            min_area=min_area,
        )
    except PlateError as exc:
        raise PlateError(f"{plate}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - InputError from PhirmParams or a bad value: one error line
        raise PlateError(f"{plate}: {exc}") from None
    record = {"channel": p.channel_names[c], **settings.as_attrs()}
    # labels are written into the plate (its pixel data is never touched): one run at a time
    with output_lock(p.path, command="masks"):
        todo = []
        for k in p.fields:
            if overwrite:
                todo.append(k)
                continue
            la = p.label_attrs(k, name)
            if not la.get("complete", False):
                todo.append(k)
            elif la.get("mask") != record:
                raise PlateError(
                    f"{plate}: field {k} already has labels/{name} made with "
                    f"{_label_difference(la.get('mask'), record, explicit=dilation is not None)}"
                    ", not these settings; pass --overwrite to replace it or choose another --name"
                )
        tasks = [MaskTask(str(p.path), tuple(k), c, name, settings, record) for k in todo]
        res = run_tasks(mask_field, tasks, cluster=cluster, progress=progress, description="masks")
        p.update_attrs({ATTRS_KEY: {**p.attrs.get(ATTRS_KEY, {}), f"labels_{name}": record}})
        return {FieldKey(*k): a for k, a in res}
