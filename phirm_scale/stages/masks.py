"""Artefact masks of a plate (paper 3.3) as NGFF labels, one Dask task per field.

Each task reads the artefact channel of one field, runs the pure-numpy
:func:`phirm_scale.masks._artefacts.artefact_mask` and writes ``labels/<name>`` of that field
(one writer per field). Image data is never modified. Fields that already have the label
(complete) are skipped unless ``overwrite``, so a killed run resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from phirm_scale.errors import PlateError

__all__ = ["make_artefact_masks", "mask_field"]

log = logging.getLogger(__name__)


def mask_field(plate_path: str, key: tuple, channel: int, name: str, otsu_factor: float,
               radius: int, min_separability: float | None) -> tuple[tuple, int]:
    """One task: artefact mask of one field, written as label ``name``; returns (key, area)."""
    from phirm_scale.masks._artefacts import artefact_mask
    from phirm_scale.plate import FieldKey, open_field_view

    key = FieldKey(*key)
    plate = open_field_view(plate_path, key)
    image = plate.read_field(key, channel)
    try:
        mask = artefact_mask(image, otsu_factor=otsu_factor, radius=radius,
                             min_separability=min_separability)
    except PlateError:
        raise
    except Exception as exc:  # InputError and friends: name the field
        raise PlateError(f"{plate_path}: field {key}: {exc}") from exc
    plate.write_label(key, name, mask)
    return tuple(key), int(mask.sum())


def make_artefact_masks(plate: str | Path, *, channel: str | int = "CFP",
                        name: str = "artefacts", otsu_factor: float = 0.7, radius: int = 2,
                        min_separability: float | None = 0.9, overwrite: bool = False,
                        cluster: str = "local", progress: bool = True) -> dict:
    """Write the artefact mask of every field of ``plate`` as label ``name``.

    Parameters
    ----------
    plate : str or Path
        An HCS plate.
    channel : str or int
        Artefact channel (name or index).
    name : str
        Label name.
    otsu_factor, radius, min_separability
        See :func:`phirm_scale.masks._artefacts.artefact_mask`.
    overwrite : bool
        Recompute fields that already have the label.
    cluster : str
        ``--cluster`` spec.
    progress : bool
        Progress bar on stderr.

    Returns
    -------
    dict
        ``{FieldKey: masked pixel count}`` for the fields computed in this call.
    """
    from phirm_scale.plate import FieldKey, open_plate
    from phirm_scale.stages._runner import run_field_tasks

    p = open_plate(plate)
    c = p.channel_index(channel)
    if otsu_factor <= 0 or radius < 0:
        raise PlateError(f"{plate}: otsu_factor must be > 0 and radius >= 0")
    todo = [k for k in p.fields if overwrite or not p.has_label(k, name)]
    jobs = [(str(p.path), tuple(k), c, name, float(otsu_factor), int(radius), min_separability)
            for k in todo]
    res = run_field_tasks(mask_field, jobs, cluster=cluster, progress=progress,
                          description="masks")
    p.update_attrs({"phirm_scale": {**p.attrs.get("phirm_scale", {}), f"labels_{name}": {
        "channel": p.channel_names[c], "otsu_factor": float(otsu_factor), "radius": int(radius),
        "min_separability": min_separability}}})
    return {FieldKey(*k): a for k, a in res}
