"""Artefact masks from an artefact channel (paper 3.3). Pure numpy/scikit-image."""

from __future__ import annotations

import numpy as np

from phirm_scale.errors import InputError
from phirm_scale.validation import check_image

__all__ = ["artefact_mask", "otsu_separability", "otsu_threshold_midgap"]


def otsu_separability(image: np.ndarray, threshold: float) -> float:
    """Otsu's separability ``eta = sigma_between**2 / sigma_total**2`` at ``threshold``.

    In [0, 1]: close to 1 for a clearly two-level image (dim background, bright artefacts),
    about 0.64 for pure Gaussian noise (no object at all), 0 for a constant image.
    """
    x = np.asarray(image, dtype=np.float64).ravel()
    var = x.var()
    if var == 0:
        return 0.0
    fg = x > threshold
    w1 = fg.mean()
    if w1 in (0.0, 1.0):
        return 0.0
    m1, m0 = x[fg].mean(), x[~fg].mean()
    return float(w1 * (1 - w1) * (m1 - m0) ** 2 / var)


def otsu_threshold_midgap(image: np.ndarray, *, nbins: int = 256) -> float:
    """Otsu's threshold of any real image, the middle of the maximum when it is a plateau.

    A plateau is an empty gap between two modes. Unlike
    :func:`phirm_scale.metric.otsu_threshold_u8` (8-bit images, the lowest level of a
    plateau, as skimage; used by PhIRM), this returns a float in image units.

    Equals :func:`skimage.filters.threshold_otsu` (same 256-bin histogram) whenever the
    between-class variance has a single maximum. Artefact channels often have two modes
    with an empty gap between them (dim background, saturated artefacts); every split in that
    gap is optimal and skimage returns the lowest one, just above the background, where
    ``0.7 x`` threshold falls inside the background noise. The middle of the gap is the
    threshold the paper's ``0.7 x Otsu`` rule assumes.

    Pixels ``> threshold`` are foreground.
    """
    from skimage.exposure import histogram

    a = np.asarray(image)
    if a.min() == a.max():
        return float(a.min())
    hist, centers = histogram(a.reshape(-1), nbins, source_range="image")
    hist = hist.astype(np.float64)
    centers = centers.astype(np.float64)
    w1 = np.cumsum(hist)
    w2 = np.cumsum(hist[::-1])[::-1]
    m1 = np.cumsum(hist * centers) / w1
    m2 = (np.cumsum((hist * centers)[::-1]) / w2[::-1])[::-1]
    var = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    best = var.max()
    idx = int(np.argmax(var))
    tol = 1e-12 * best
    lo = hi = idx
    while lo > 0 and var[lo - 1] >= best - tol:
        lo -= 1
    while hi + 1 < var.size and var[hi + 1] >= best - tol:
        hi += 1
    if hi == lo:
        return float(centers[lo])
    # A plateau: no pixel moves class between centers[lo] and centers[hi], but bin lo
    # reaches half a bin above its centre. The middle of the empty gap between the two
    # classes' pixels keeps skimage's partition (x > centers[lo]) exactly.
    x = a.reshape(-1).astype(np.float64)
    above = x > centers[lo]
    gap_lo, gap_hi = float(x[~above].max()), float(x[above].min())
    mid = (gap_lo + gap_hi) / 2
    return mid if gap_lo <= mid < gap_hi else gap_lo


def artefact_mask(
    image: np.ndarray,
    *,
    otsu_factor: float = 0.7,
    radius: int = 2,
    min_separability: float | None = 0.9,
    min_threshold: float | None = None,
) -> np.ndarray:
    """Binary artefact mask of an artefact-channel image (paper 3.3).

    Otsu's threshold of ``image`` (:func:`otsu_threshold_midgap`) times ``otsu_factor``; pixels
    above it are artefact; the binary image is opened, then closed, with a disk of
    ``radius``. Pixels outside the image are ignored by both operations.

    Parameters
    ----------
    image : (Y, X) ndarray
        Artefact channel (e.g. CFP), any real dtype.
    otsu_factor : float
        Multiplier of Otsu's threshold (paper: 0.7).
    radius : int
        Radius of the disk footprint of the opening and closing (0 = no morphology).
    min_separability : float or None
        Guard for artefact-free fields, which the paper does not discuss: Otsu always splits
        an image in two, even pure noise. When Otsu's separability (see
        :func:`otsu_separability`) is below this value the image has no distinct bright
        population and the mask is empty. ``None`` disables the guard (the paper's rule).
    min_threshold : float or None
        Optional absolute floor of the threshold (in image units).

    Returns
    -------
    (Y, X) ndarray of uint8
        1 = artefact (hole), 0 elsewhere.

    Raises
    ------
    InputError
        If ``image`` is not 2-D, contains NaN/inf, or a parameter is out of range.

    Examples
    --------
    >>> img = np.full((32, 32), 100, np.uint16); img[8:20, 8:20] = 60000
    >>> int(artefact_mask(img).sum())    # 12 x 12 square, corners rounded by the opening
    132
    """
    from skimage.morphology import disk

    a = check_image(image, "artefact_mask", allow_empty=True)
    if otsu_factor <= 0:
        raise InputError(f"artefact_mask: otsu_factor must be > 0, got {otsu_factor}")
    if radius < 0:
        raise InputError(f"artefact_mask: radius must be >= 0, got {radius}")
    if a.dtype == bool:
        a = a.astype(np.uint8)
    out = np.zeros(a.shape, np.uint8)
    if a.size == 0 or a.min() == a.max():
        return out
    t = otsu_threshold_midgap(a)
    if min_separability is not None and otsu_separability(a, t) < min_separability:
        return out
    thr = t * otsu_factor
    if min_threshold is not None:
        thr = max(thr, float(min_threshold))
    binary = a > thr
    if radius > 0:
        import cv2

        fp = disk(int(radius)).astype(np.uint8)  # type: ignore[no-untyped-call]  # skimage is untyped
        # cv2's default border: pixels outside the image are ignored by both the erosion
        # and the dilation (skimage's ``mode='ignore'``), so field edges make no artefact
        b = cv2.morphologyEx(binary.astype(np.uint8), cv2.MORPH_OPEN, fp)
        b = cv2.morphologyEx(b, cv2.MORPH_CLOSE, fp)
        return b
    out[binary] = 1
    return out
