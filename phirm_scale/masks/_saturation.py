"""Artefact masks without an artefact channel: the components PhIRM itself calls artefacts.

Many screens image the nuclei channel only (the shipped BBBC039 fields have one channel), so
the paper's recipe (Otsu x 0.7 on a CFP channel, :func:`phirm_scale.masks.artefact_mask`) has
nothing to threshold.  What PhIRM calls an artefact is defined on the nuclei channel itself:
on the field normalised to 8 bit (:func:`phirm_scale.metric.to_uint8`), a component of
Algorithm 1 whose max is at saturation (255) and whose mean is at least 210.  This module
takes exactly those components -- PhIRM's own segmentation and classification,
:func:`phirm_scale.metric.label_components`, not a copy -- and grows them by a dilation
radius, because a real artefact's blurred rim lies below Otsu's threshold yet is still
brighter than the nuclei an inpainting model should restore there.

Pure numpy/OpenCV; never imports Dask or Zarr.
"""

from __future__ import annotations

import numpy as np

from phirm_scale import metric
from phirm_scale.errors import InputError
from phirm_scale.validation import check_image

__all__ = ["saturation_mask", "dilate_mask", "DEFAULT_DILATION"]

#: Default dilation radius of :func:`saturation_mask`, px: the masks stage's and ``run``'s
#: (docs/qc-without-ground-truth.md section 8a, measured on blurred-rim composites; it was 1).
DEFAULT_DILATION = 4


def dilate_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a binary mask with a disk of ``radius`` (skimage's ``disk``); 0 = unchanged.

    Pixels outside the image are ignored (a mask never grows from beyond the border).
    Returns uint8, 1 = hole.
    """
    m: np.ndarray = (np.asarray(mask) != 0).astype(np.uint8)
    if radius < 0:
        raise InputError(f"dilate_mask: radius must be >= 0, got {radius}")
    if radius == 0 or not m.any():
        return m
    import cv2
    from skimage.morphology import disk

    footprint = disk(int(radius)).astype(np.uint8)  # type: ignore[no-untyped-call]  # skimage is untyped
    return cv2.dilate(m, footprint)


def saturation_mask(
    image: np.ndarray,
    *,
    dilation: int = DEFAULT_DILATION,
    params: metric.PhirmParams | None = None,
    lo: float | None = None,
    hi: float | None = None,
    name: str = "image",
) -> np.ndarray:
    """Mask of the components PhIRM calls artefacts in ``image``, grown by ``dilation`` px.

    The field is normalised to 8 bit with :func:`phirm_scale.metric.to_uint8` (its own
    min/max unless ``lo``/``hi`` are given) and segmented by
    :func:`phirm_scale.metric.label_components` with ``params``: Otsu threshold times
    ``params.otsu_factor``, connected components, components below ``params.min_area``
    dropped, and a component is an artefact when its max equals ``params.saturation`` and its
    mean is at least ``params.artefact_mean`` (the paper: 255 and 210; in ``'reference'``
    mode the published code's bounding-box statistics).  The artefact components are then
    dilated with a disk of radius ``dilation``.

    Parameters
    ----------
    image : (Y, X) ndarray
        The nuclei channel (e.g. DAPI / Hoechst), any integer or float dtype.
    dilation : int
        Radius of the disk the artefact components are dilated with (0 = PhIRM's components
        exactly).
    params : PhirmParams, optional
        PhIRM's parameters (default: the paper's); the same fields the score stage uses.
    lo, hi : float, optional
        Normalisation range (default: the image's min and max).
    name : str
        Field name for error messages.

    Returns
    -------
    (Y, X) ndarray of uint8
        1 = artefact (hole).  A field without a saturated, bright component (e.g. a clean
        field, whose brightest nucleus reaches 255 but has a mean far below 210) gives an
        empty mask.

    Examples
    --------
    >>> img = np.full((64, 64), 100, np.uint16); img[10:20, 10:30] = 4000   # artefact
    >>> img[40:50, 40:50] = 1500                                           # a nucleus
    >>> int(saturation_mask(img, dilation=0).sum())
    200
    """
    a = check_image(image, name, allow_empty=True, finite=False)  # to_uint8 checks the rest
    if int(dilation) != dilation or dilation < 0:
        raise InputError(f"{name}: dilation must be an integer >= 0, got {dilation!r}")
    u8 = metric.to_uint8(a, lo=lo, hi=hi, name=name)
    seg = metric.label_components(u8, params or metric.PhirmParams(), name=name)
    art_ids = seg.ids[seg.artefact]
    if art_ids.size == 0:
        return np.zeros(a.shape, np.uint8)
    lut = np.zeros(int(seg.labels.max()) + 1, np.uint8)
    lut[art_ids] = 1
    return dilate_mask(lut[seg.labels], int(dilation))
