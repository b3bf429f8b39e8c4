"""The Python API behind the file-level commands.

The plate stages live in :mod:`phirm_scale.stages`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phirm_scale.errors import InputError
from phirm_scale.imageio import IMAGE_SUFFIXES, read_image
from phirm_scale.metric import PhirmParams, Score, score, to_uint8

__all__ = ["score_images", "score_files"]


def score_images(
    reference: np.ndarray,
    reconstruction: np.ndarray,
    *,
    mode: str = "paper",
    params: PhirmParams | None = None,
    names: tuple[str, str] = ("reference", "reconstruction"),
) -> Score:
    """Score two images of any dtype as the ``metric`` command does.

    A ``uint8`` reference is used as is (the reconstruction must then be 8-bit too); any other
    reference is normalised with :func:`~phirm_scale.metric.to_uint8` over the reference's own
    min/max, and the reconstruction with the same range.
    """
    params = params or PhirmParams.for_mode(mode)
    reference = np.asarray(reference)
    reconstruction = np.asarray(reconstruction)
    if reference.shape != reconstruction.shape:
        raise InputError(
            f"{names[1]}: shape {reconstruction.shape} differs from {names[0]} "
            f"shape {reference.shape}"
        )
    if reference.size and reference.min() == reference.max():
        # both images would normalise to 0 (or compare against nothing): a blank reference
        # is bad input, not a perfect score (the plate scorer refuses it the same way)
        raise InputError(
            f"{names[0]}: reference image is constant ({reference.flat[0]}); "
            "PhIRM needs a reference with contrast"
        )
    if reference.dtype == np.uint8:
        ref8, rec8 = reference, reconstruction
    else:
        # to_uint8 refuses NaN in either image by name before the range is used
        lo, hi = float(reference.min()), float(reference.max())
        ref8 = to_uint8(reference, lo, hi, name=names[0])
        rec8 = to_uint8(reconstruction, lo, hi, name=names[1])
    return score(ref8, rec8, params, names=names)


def _image_files(folder: Path) -> dict[str, Path]:
    return {
        p.name: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    }


def score_files(
    reference: str | Path, reconstruction: str | Path, *, mode: str = "paper"
) -> list[tuple[str, dict]]:
    """Score a file pair, or every file name common to two folders.

    Returns a list of ``(name, Score.as_dict())``.  Folders with no common image name, or a
    file paired with a folder, raise :class:`~phirm_scale.errors.InputError`.
    """
    reference, reconstruction = Path(reference), Path(reconstruction)
    params = PhirmParams.for_mode(mode)
    for p in (reference, reconstruction):
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
    if reference.is_dir() != reconstruction.is_dir():
        raise InputError(f"{reconstruction}: cannot pair a file with a folder ({reference})")
    if reference.is_dir():
        refs, recs = _image_files(reference), _image_files(reconstruction)
        common = sorted(set(refs) & set(recs))
        if not common:
            raise InputError(f"{reconstruction}: no image file name in common with {reference}")
        pairs = [(n, refs[n], recs[n]) for n in common]
    else:
        pairs = [(reference.name, reference, reconstruction)]
    out = []
    for name, ref_path, rec_path in pairs:
        s = score_images(
            read_image(ref_path),
            read_image(rec_path),
            params=params,
            names=(str(ref_path), str(rec_path)),
        )
        out.append((name, s.as_dict()))
    return out
