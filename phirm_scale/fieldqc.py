"""Reference-free checks of one field: what a restoration left, and the source's image quality.

On a real screen there is no clean field to score a restoration against (DESIGN.md section
6). What can be measured on one field without a reference:

* what the restoration left -- :func:`residual_artefact_area` (PhIRM's artefact area on the
  restored field), :func:`nuclei_in_holes` (nuclei of the restored field whose pixels lie
  mostly inside the holes, i.e. nuclei the model drew) and :func:`masked_fraction`;
* the image quality of the source field, as CellProfiler's MeasureImageQuality reports it
  -- :func:`focus_score` (normalised variance), :func:`percent_saturated` /
  :func:`percent_maximal` and :func:`power_log_log_slope` (slope of the radial power
  spectrum in log-log).

:func:`field_checks` returns all of them for one field. Pure numpy/scipy; never imports Dask
or Zarr.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

from phirm_scale import metric
from phirm_scale.errors import InputError
from phirm_scale.flags import (  # re-exported: the flag rule's one home is flags
    DEFAULT_HIDDEN_THRESHOLD,
    DEFAULT_RESIDUAL_THRESHOLD,
    DEFAULT_SELFCHECK_THRESHOLD,
    FLAG_BITS,
    check_hidden_threshold,
    flag_codes,
)
from phirm_scale.validation import check_image

__all__ = [
    "CHECK_VARIABLES",
    "FLAG_BITS",
    "flag_code",
    "known_range",
    "DEFAULT_HIDDEN_RADIUS",
    "DEFAULT_HIDDEN_THRESHOLD",
    "check_hidden_threshold",
    "expected_hidden_nuclei",
    "DEFAULT_HIDDEN_RING",
    "expected_hidden_nuclear_area",
    "field_checks",
    "focus_score",
    "masked_fraction",
    "nuclei_in_holes",
    "percent_maximal",
    "percent_saturated",
    "power_log_log_slope",
    "radial_power_spectrum",
    "residual_artefact_area",
    "residual_window_terms",
    "RESIDUAL_WINDOW_VARIABLES",
    "estimated_phirm",
]

#: Per-window variables of :func:`residual_window_terms`, with (long_name, units).
RESIDUAL_WINDOW_VARIABLES = {
    "residual_artefact_window": (
        "PhIRM artefact area the restoration left in the window (restored minus its "
        "artefact-free estimate): what AAD would count against a clean reference",
        "px",
    ),
    "residual_hidden_nuclei": (
        "nuclei count of the window's artefact-free estimate minus the restored window's "
        "(positive: swallowed by residual artefacts; negative: invented by fills)",
        "1",
    ),
    "residual_hidden_nuclear_area": (
        "nuclear area of the window's artefact-free estimate minus the restored window's",
        "px",
    ),
}
#: Px the residual artefacts of :func:`residual_window_terms` are grown by (their rim).
RESIDUAL_GROW = 3
#: Px around holes and saturated specks :func:`residual_window_terms` leaves out of the
#: known range (:func:`known_range`): a blurred rim a mask missed reaches that far.
RESIDUAL_MARGIN = 8
#: A restored nucleus component at least this fraction inside the holes is a fill's
#: invention (:func:`residual_window_terms`; section 8 of docs/qc-without-ground-truth.md).
INVENTED_FRACTION = 0.8

#: Variables of :func:`field_checks`, in this order, with (long_name, units).
CHECK_VARIABLES = {
    "residual_artefact_area": (
        "PhIRM artefact area of the restored field (8 bit with the "
        "source's known-pixel range, see fieldqc.known_range)",
        "px",
    ),
    "nuclei_in_holes": ("nuclei of the restored field lying mostly inside the holes", "1"),
    "restored_nuclei_count": ("nuclei count of the restored field", "1"),
    "masked_fraction_field": ("fraction of the field's pixels inside the holes", "1"),
    "expected_hidden_nuclei": (
        "expected nuclei under the holes: local density of nucleus centres on the known "
        "pixels around each hole pixel, summed over the holes (fieldqc.expected_hidden_nuclei)",
        "1",
    ),
    "expected_hidden_nuclear_area": (
        "expected nuclear pixels under the holes: per hole component, its area times the "
        "nucleus fraction of the known pixels in an 8-px ring around it, summed "
        "(fieldqc.expected_hidden_nuclear_area; flag bit 8)",
        "px",
    ),
    "focus_score": (
        "focus score of the source field (variance / mean of intensities "
        "scaled to 0..1 by the dtype maximum; CellProfiler FocusScore)",
        "1",
    ),
    "percent_saturated": ("percent of source pixels at the dtype maximum", "percent"),
    "percent_maximal": (
        "percent of source pixels at the field's maximum (CellProfiler PercentMaximal)",
        "percent",
    ),
    "power_log_log_slope": (
        "slope of log radial power vs log spatial frequency of the "
        "source field (CellProfiler PowerLogLogSlope)",
        "1",
    ),
}


#: Half width (px) of the square around a hole pixel whose nuclei give its local density.
DEFAULT_HIDDEN_RADIUS = 64

#: Width (px) of the ring around a hole component whose nucleus fraction estimates its own.
DEFAULT_HIDDEN_RING = 8


def flag_code(
    selfcheck_phirm: float,
    residual_area: float,
    has_holes: bool,
    *,
    selfcheck_threshold: float = DEFAULT_SELFCHECK_THRESHOLD,
    residual_threshold: float = DEFAULT_RESIDUAL_THRESHOLD,
    hidden_area: float = 0.0,
    hidden_threshold: float = DEFAULT_HIDDEN_THRESHOLD,
) -> int:
    """Compute the flag of one field (0 = trusted; bits :data:`FLAG_BITS`).

    The rule of :mod:`phirm_scale.flags` (:func:`~phirm_scale.flags.flag_codes`) for one
    field: a field with holes whose mean self-check PhIRM is below ``selfcheck_threshold``
    gets 1, one whose self-check could not run (NaN: no pseudo-hole fitted) gets 4; any
    field whose restored version keeps more than ``residual_threshold`` px of PhIRM artefact
    gets 2; a field whose holes are expected to hide at least ``hidden_threshold`` nuclear
    pixels (``hidden_area``, :func:`expected_hidden_nuclear_area`) gets 8 (only a field with
    holes: one without hid nothing).

    Raises
    ------
    InputError
        A ``hidden_threshold`` that is not a finite number > 0 (:func:`check_hidden_threshold`).
    """
    return int(
        flag_codes(
            has_holes,
            selfcheck_phirm=selfcheck_phirm,
            residual_area=residual_area,
            hidden_area=hidden_area,
            selfcheck_threshold=selfcheck_threshold,
            residual_threshold=residual_threshold,
            hidden_threshold=hidden_threshold,
        )
    )


def _field(image: npt.ArrayLike, name: str) -> np.ndarray:
    return check_image(image, name)


def _unit_scale(a: np.ndarray) -> float:
    """Return the value CellProfiler maps to 1.0: the integer dtype's maximum (1 for floats)."""
    if a.dtype == np.bool_:
        return 1.0
    if a.dtype.kind in "ui":
        return float(np.iinfo(a.dtype).max)
    return 1.0


# ------------------------------------------------------------------------- image quality
def focus_score(image: npt.ArrayLike, *, name: str = "image") -> float:
    """Normalised variance ``var(x) / mean(x)`` of the intensities scaled to 0..1.

    CellProfiler's MeasureImageQuality ``FocusScore`` (Sun et al. 2004): integer images are
    divided by their dtype maximum first, as CellProfiler loads them, so the score of a
    12-bit field stored as uint16 is comparable to CellProfiler's. The variance is the
    population variance. A field with mean 0 scores 0. Higher = more contrast (in focus).
    """
    a = _field(image, name).astype(np.float64) / _unit_scale(np.asarray(image))
    m = float(a.mean())
    if m <= 0:
        return 0.0
    return float(((a - m) ** 2).mean() / m)


def percent_saturated(
    image: npt.ArrayLike, *, saturation: float | None = None, name: str = "image"
) -> float:
    """Compute the percent of pixels at ``saturation`` or above: CellProfiler's PercentSaturation.

    ``saturation`` defaults to the integer dtype's maximum, 1.0 for floats.
    """
    a = _field(image, name)
    s = _unit_scale(a) if saturation is None else float(saturation)
    return float(100.0 * np.count_nonzero(a >= s) / a.size)


def percent_maximal(image: npt.ArrayLike, *, name: str = "image") -> float:
    """Compute the percent of pixels equal to the field's own maximum (PercentMaximal).

    CellProfiler's PercentMaximal catches detectors that saturate below the dtype maximum.
    """
    a = _field(image, name)
    return float(100.0 * np.count_nonzero(a == a.max()) / a.size)


@functools.lru_cache(maxsize=8)
def _ring_radius(h: int, w: int) -> npt.NDArray[np.int64]:
    """Return :func:`radial_power_spectrum`'s ring of every pixel of an ``h x w`` spectrum.

    Read-only; a plate's fields share one shape, so it is made once per process.
    """
    ry = np.minimum(np.arange(h), np.arange(h)[::-1])
    rx = np.minimum(np.arange(w), np.arange(w)[::-1])
    radius = np.floor(np.sqrt(ry[:, None] ** 2 + rx[None, :] ** 2)).astype(np.int64) + 1
    radius.flags.writeable = False
    return radius


def radial_power_spectrum(
    image: npt.ArrayLike, *, name: str = "image"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Radial power spectrum as CellProfiler computes it (``centrosome`` ``rps``).

    The field minus its mean is divided by its median absolute deviation from the mean
    (intensity invariant, when the field is not constant), Fourier transformed; ``|F|**2``
    is summed over rings of integer radius ``floor(sqrt(ry**2 + rx**2)) + 1`` where ``ry =
    min(i, Y - 1 - i)`` and ``rx = min(j, X - 1 - j)`` (CellProfiler's distance to the
    nearest corner of the unshifted spectrum), for radii ``2 .. floor(min(Y, X) / 8) - 1``
    (the DC ring and the high frequencies beyond 1/8 of the field are left out).

    Returns
    -------
    radii, power : (K,) ndarrays (empty when the field is smaller than 24 px)
    """
    a = _field(image, name).astype(np.float64)
    h, w = a.shape
    radius = _ring_radius(h, w)
    top = int(math.floor(min(h, w) / 8.0))
    radii = np.arange(2, top, dtype=np.int64)
    if radii.size == 0:
        return radii, np.zeros(0)
    centred = a - a.mean()
    if a.max() > a.min():
        mad = float(np.median(np.abs(centred)))
        if mad > 0:
            centred = centred / mad
    power = np.abs(np.fft.fft2(centred)) ** 2
    sums = np.bincount(radius.ravel(), weights=power.ravel(), minlength=top + 1)
    return radii, sums[radii]  # type: ignore[return-value]  # weighted bincount: float64


def power_log_log_slope(image: npt.ArrayLike, *, name: str = "image") -> float:
    """Fit the slope of ``log(power)`` against ``log(radius)`` (``PowerLogLogSlope``).

    A least-squares fit on :func:`radial_power_spectrum`, as CellProfiler's
    ``PowerLogLogSlope``.

    Blurred fields lose high frequencies and have steeper (more negative) slopes. NaN for a
    constant field or one too small to have two rings (< 24 px).
    """
    radii, power = radial_power_spectrum(image, name=name)
    ok = power > 0
    if ok.sum() < 2:
        return math.nan
    x = np.log(radii[ok].astype(np.float64))
    y = np.log(power[ok])
    xm, ym = x.mean(), y.mean()
    return float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())


# ------------------------------------------------------------------ what the restoration left
def _restored8(
    restored: npt.ArrayLike, lo: float | None, hi: float | None, name: str
) -> npt.NDArray[np.uint8]:
    a = _field(restored, name)
    return metric.to_uint8(a, lo=lo, hi=hi, name=name)


def residual_artefact_area(
    restored: npt.ArrayLike,
    *,
    lo: float | None = None,
    hi: float | None = None,
    params: metric.PhirmParams | None = None,
    name: str = "restored",
) -> int:
    """PhIRM's artefact area (Algorithm 1, whole field) of the restored field.

    The field is normalised to 8 bit with ``lo``/``hi`` -- by default its *own* min and max,
    as PhIRM sees the restored field alone: artefact brightness an inpainting smeared into a
    hole (far below the source's saturated maximum, far above any nucleus) is then the
    field's maximum again and counts -- and segmented by
    :func:`phirm_scale.metric.components` with ``params``. 0 for a field whose artefacts were
    all removed (a clean field's brightest nucleus reaches 255 but its mean stays far below
    210).
    """
    u8 = _restored8(restored, lo, hi, name)
    return int(metric.components(u8, params).artefact_area)


def known_range(
    source: npt.ArrayLike, holes: npt.ArrayLike, *, margin: int = 4, name: str = "field"
) -> tuple[float, float]:
    """Estimate the 8-bit range the clean field would have from the source's known pixels.

    ``lo`` and ``hi`` are the minimum and maximum of the source pixels farther than
    ``margin`` px from every hole and from every saturated speck (a component PhIRM would
    call an artefact, of any size). Those are left out: a rim or a speck a mask missed is
    saturated, and with it as ``hi`` the brightness an inpainting smeared into the
    hole stays far below 255 and is never called an artefact, while the nuclei are squeezed
    into a few 8-bit levels. (A high percentile instead of the maximum is no good either: it
    saturates the brightest nuclei of a field that has few of them.)
    """
    from phirm_scale.masks import dilate_mask, saturation_mask

    src = np.asarray(source)
    near = dilate_mask(np.asarray(holes) != 0, int(margin)) != 0
    # saturated specks the mask missed, of any size (PhIRM's artefact rule without its 50 px
    # floor), and their surroundings are not the clean field either
    near |= (
        saturation_mask(src, dilation=int(margin), params=metric.PhirmParams(min_area=1), name=name)
        != 0
    )
    known = src[~near]
    if known.size == 0:
        known = src[np.asarray(holes) == 0]
    if known.size == 0:
        raise InputError(f"{name}: every pixel is a hole; no known pixel to take a range from")
    return float(known.min()), float(known.max())


def _known_nuclei(
    src: np.ndarray,
    hole: np.ndarray,
    p: metric.PhirmParams,
    name: str,
    known: tuple[float, float] | None = None,
) -> metric.ComponentLabels:
    """Segment the source as PhIRM does, with its holes set to the clean range's minimum.

    ``known``: :func:`known_range` of ``src`` and ``hole`` when the caller has it.
    """
    lo, hi = known if known is not None else known_range(src, hole, name=name)
    img = src.astype(np.float64)
    img[hole] = lo
    return metric.label_components(metric.to_uint8(img, lo=lo, hi=hi, name=name), p, name=name)


def expected_hidden_nuclear_area(
    source: npt.ArrayLike,
    holes: npt.ArrayLike,
    *,
    ring: int = DEFAULT_HIDDEN_RING,
    params: metric.PhirmParams | None = None,
    name: str = "field",
) -> float:
    """Estimate how many nuclear pixels lay under the holes, from the pixels at their rims.

    The flag of bad fills (bit 8; docs/qc-without-ground-truth.md, section 7): a hole over
    background is filled well, a large hole over nuclei loses or misdraws them. The source
    field is segmented as PhIRM segments it, with its hole pixels set to the clean range's
    minimum (:func:`known_range`; 8 bit with that range,
    :func:`phirm_scale.metric.label_components`). For each 8-connected hole component, the
    ring of pixels within ``ring`` px of it (a dilation by OpenCV's elliptic element of
    ``2 ring + 1`` px) that are not holes gives the
    fraction of nucleus pixels (components PhIRM calls nuclei) around it; that fraction times
    the component's area is what it is expected to hide. The result is the sum over the
    components. 0 for a field without holes (or a component whose ring is all holes).
    """
    p = params or metric.PhirmParams()
    src, hole = _source_and_holes(source, holes, name)
    _check_hidden_ring(ring, name)
    if not hole.any():
        return 0.0
    return _hidden_area(_known_nuclei(src, hole, p, name), hole, ring)


def _source_and_holes(
    source: npt.ArrayLike, holes: npt.ArrayLike, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return the checked source field and its holes as booleans of the same shape."""
    src = _field(source, name)
    hole = np.asarray(holes) != 0
    if hole.shape != src.shape:
        raise InputError(f"{name}: holes shape {hole.shape} != field shape {src.shape}")
    return src, hole


def _check_hidden_ring(ring: int, name: str) -> None:
    if ring < 1:
        raise InputError(f"{name}: hidden-area ring must be >= 1 px, got {ring}")


def _check_hidden_radius(radius: int, name: str) -> None:
    if radius < 1:
        raise InputError(f"{name}: hidden-nuclei radius must be >= 1, got {radius}")


def _hidden_area(seg: metric.ComponentLabels, hole: np.ndarray, ring: int) -> float:
    """:func:`expected_hidden_nuclear_area` from the source's segmentation (``_known_nuclei``)."""
    import cv2

    nuc_ids = seg.ids[~seg.artefact]
    nuc = np.zeros(int(seg.labels.max()) + 1, bool)
    nuc[nuc_ids] = True
    nucleus = nuc[seg.labels]
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    h_f, w_f = hole.shape
    total = 0.0
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i, :4])
        ya, xa = max(0, y - ring), max(0, x - ring)
        yb, xb = min(h_f, y + h + ring), min(w_f, x + w + ring)
        comp = labels[ya:yb, xa:xb] == i
        around = cv2.dilate(comp.astype(np.uint8), disk).astype(bool) & ~hole[ya:yb, xa:xb]
        if around.any():
            total += float(nucleus[ya:yb, xa:xb][around].mean()) * float(stats[i, 4])
    return total


def expected_hidden_nuclei(
    source: npt.ArrayLike,
    holes: npt.ArrayLike,
    *,
    radius: int = DEFAULT_HIDDEN_RADIUS,
    params: metric.PhirmParams | None = None,
    name: str = "field",
) -> float:
    """Estimate how many nuclei lay under the holes, from the nuclei around them.

    What makes a restoration bad is what the holes hid: a hole over background is filled
    well, a large hole over nuclei loses or misdraws them, and PhIRM counts every nucleus
    lost (docs/qc-without-ground-truth.md, section 7). That is not visible, but its
    expectation is: the source field, with its hole pixels set to the clean range's minimum
    (:func:`known_range`), is segmented as PhIRM segments it (8 bit with that range,
    :func:`phirm_scale.metric.label_components`); each nucleus component puts its weight
    (``params.clump_count`` for a clump of ``>= params.clump_area`` px, else 1) at its
    centroid; a hole pixel's density is the weight in the ``(2 radius + 1)``-px square
    around it divided by the known (non-hole) pixels of that square; the result is the sum
    of the densities over the hole pixels. 0 for a field without holes.
    """
    p = params or metric.PhirmParams()
    src, hole = _source_and_holes(source, holes, name)
    _check_hidden_radius(radius, name)
    if not hole.any():
        return 0.0
    return _hidden_nuclei(_known_nuclei(src, hole, p, name), hole, radius, p)


def _hidden_nuclei(
    seg: metric.ComponentLabels, hole: np.ndarray, radius: int, p: metric.PhirmParams
) -> float:
    """:func:`expected_hidden_nuclei` from the source's segmentation (``_known_nuclei``)."""
    import cv2

    nuc = ~seg.artefact
    ids, area = seg.ids[nuc], seg.area[nuc]
    if ids.size == 0:
        return 0.0
    weight = np.where(area >= p.clump_area, p.clump_count, 1).astype(np.float64)
    # centroids of the nucleus components (ids are sorted: OpenCV numbers them in order)
    lut = np.full(int(seg.labels.max()) + 1, -1, np.int64)
    lut[ids] = np.arange(ids.size)
    ys, xs = np.nonzero(lut[seg.labels] >= 0)
    which = lut[seg.labels[ys, xs]]
    cy = np.bincount(which, weights=ys, minlength=ids.size) / area
    cx = np.bincount(which, weights=xs, minlength=ids.size) / area
    centres = np.zeros(hole.shape, np.float64)
    np.add.at(centres, (np.rint(cy).astype(np.int64), np.rint(cx).astype(np.int64)), weight)
    box = (2 * int(radius) + 1, 2 * int(radius) + 1)
    near = cv2.boxFilter(centres, -1, box, normalize=False, borderType=cv2.BORDER_CONSTANT)
    known = cv2.boxFilter(
        (~hole).astype(np.float64), -1, box, normalize=False, borderType=cv2.BORDER_CONSTANT
    )
    density = near / np.maximum(known, 1.0)
    return float(density[hole].sum())


def masked_fraction(holes: npt.ArrayLike, *, name: str = "holes") -> float:
    """Fraction of the field's pixels that are holes (nonzero)."""
    m = check_image(holes, name, what="mask")
    return float(np.count_nonzero(m) / m.size)


def nuclei_in_holes(
    restored: npt.ArrayLike,
    holes: npt.ArrayLike,
    *,
    lo: float | None = None,
    hi: float | None = None,
    params: metric.PhirmParams | None = None,
    min_fraction: float = 0.5,
    name: str = "restored",
) -> tuple[int, int]:
    """Nuclei of the restored field whose pixels lie mostly inside the holes.

    The restored field (8 bit with ``lo``/``hi``, by default its own range, as
    :func:`residual_artefact_area`) is
    segmented by :func:`phirm_scale.metric.label_components`; a nucleus component with more
    than ``min_fraction`` of its pixels in ``holes`` was drawn by the model rather than
    imaged. Nuclei are counted as PhIRM counts them (a clump of ``>= params.clump_area`` px
    counts ``params.clump_count``).

    Returns
    -------
    (in_holes, total) : (int, int)
        Nuclei mostly inside the holes, and all nuclei of the restored field.
    """
    p = params or metric.PhirmParams()
    u8 = _restored8(restored, lo, hi, name)
    m = np.asarray(holes)
    if m.shape != u8.shape:
        raise InputError(f"{name}: holes shape {m.shape} != field shape {u8.shape}")
    if not 0 <= min_fraction < 1:
        raise InputError(f"{name}: min_fraction must be in [0, 1), got {min_fraction}")
    seg = metric.label_components(u8, p, name=name)
    nuc = ~seg.artefact
    ids, area = seg.ids[nuc], seg.area[nuc]
    weight = np.where(area >= p.clump_area, p.clump_count, 1)
    total = int(weight.sum())
    if ids.size == 0:
        return 0, 0
    inside = np.bincount(seg.labels[m != 0], minlength=int(seg.labels.max()) + 1)[ids]
    mostly = inside > min_fraction * area
    return int(weight[mostly].sum()), total


def field_checks(
    source: npt.ArrayLike,
    restored: npt.ArrayLike,
    holes: npt.ArrayLike,
    *,
    params: metric.PhirmParams | None = None,
    min_fraction: float = 0.5,
    hidden_radius: int = DEFAULT_HIDDEN_RADIUS,
    hidden_ring: int = DEFAULT_HIDDEN_RING,
    name: str = "field",
) -> dict[str, float]:
    """Every reference-free check of one field (keys :data:`CHECK_VARIABLES`).

    ``source`` is the field before restoration (its image quality is measured, and its
    known pixels give the 8-bit range of the restored field, :func:`known_range`),
    ``restored`` the inpainted field, ``holes`` the mask (nonzero = inpainted).
    """
    src = _field(source, f"{name}: source")
    rec = _field(restored, f"{name}: restored")
    if rec.shape != src.shape:
        raise InputError(f"{name}: restored shape {rec.shape} != source shape {src.shape}")
    lo, hi = known_range(src, holes, name=name)
    in_holes, total = nuclei_in_holes(
        rec, holes, lo=lo, hi=hi, params=params, min_fraction=min_fraction, name=f"{name}: restored"
    )
    hole = np.asarray(holes) != 0
    _check_hidden_radius(hidden_radius, name)
    _check_hidden_ring(hidden_ring, name)
    hidden, hidden_area = 0.0, 0.0
    if hole.any():  # one segmentation of the source for both hidden-nuclei measures
        p = params or metric.PhirmParams()
        seg = _known_nuclei(src, hole, p, name, known=(lo, hi))  # the same known_range
        hidden = _hidden_nuclei(seg, hole, hidden_radius, p)
        hidden_area = _hidden_area(seg, hole, hidden_ring)
    return {
        "residual_artefact_area": float(residual_artefact_area(rec, lo=lo, hi=hi, params=params)),
        "nuclei_in_holes": float(in_holes),
        "restored_nuclei_count": float(total),
        "masked_fraction_field": masked_fraction(holes, name=f"{name}: holes"),
        "expected_hidden_nuclei": hidden,
        "expected_hidden_nuclear_area": hidden_area,
        "focus_score": focus_score(src),
        "percent_saturated": percent_saturated(src),
        "percent_maximal": percent_maximal(src),
        "power_log_log_slope": power_log_log_slope(src),
    }


def residual_window_terms(
    source: npt.ArrayLike,
    restored: npt.ArrayLike,
    holes: npt.ArrayLike,
    slices: list[tuple[slice, slice]],
    *,
    params: metric.PhirmParams | None = None,
    name: str = "field",
) -> dict[str, np.ndarray]:
    """Measure what the restoration left, per window, as PhIRM would score it.

    Keys :data:`RESIDUAL_WINDOW_VARIABLES`. docs/qc-without-ground-truth.md, section 8.

    PhIRM compares the restored window's segmentation with the clean one's. Without the
    clean field, this compares it with an estimate of it made from the restored field
    itself, by taking out the two things a restoration leaves that a clean field lacks:

    1. *residual artefacts*: components PhIRM calls artefacts in the restored windows (8 bit
       with the source's known-pixel range, :func:`known_range`); they, grown by
       :data:`RESIDUAL_GROW` px (the rim around them), are set to the median of the other
       known pixels;
    2. *invented fills*: nucleus components lying at least :data:`INVENTED_FRACTION` inside
       the holes -- an inpainting does not redraw a nucleus it never saw, so a blob there is
       a rim left at the hole's edge smeared inwards; set to the same background.

    Both images are normalised with :func:`known_range` of the source outside the residual
    artefacts and holes (a residual rim brighter than the clean field would otherwise set
    ``hi``) and segmented per window as PhIRM segments them. Per window:

    * ``residual_artefact_window``: artefact area of the restored window minus the
      estimate's (what AAD counts);
    * ``residual_hidden_nuclei``: nuclei count of the estimate minus the restored window's
      (positive: nuclei a residual artefact swallowed -- its saturation raises the window's
      Otsu threshold above them; negative: invented by fills; NCD's argument);
    * ``residual_hidden_nuclear_area``: the same for the nuclear area (NAD's argument).

    All three are 0 for a window the restoration left nothing in.
    """
    import cv2

    p = params or metric.PhirmParams()
    src, hole = _source_and_holes(source, holes, name)
    rec = _field(restored, f"{name}: restored")
    if rec.shape != src.shape:
        raise InputError(f"{name}: restored shape {rec.shape} != source shape {src.shape}")
    lo, hi = u8_range = known_range(src, hole, margin=RESIDUAL_MARGIN, name=name)
    # residual artefacts as PhIRM finds them: per window (its Otsu threshold is the window's;
    # on the whole field a rim can merge with nuclei into one dimmer component)
    u8 = metric.to_uint8(rec, lo=lo, hi=hi, name=name)
    art = np.zeros(src.shape, bool)
    for sl in slices:
        w = metric.label_components(np.ascontiguousarray(u8[sl]), p, name=name)
        if w.artefact.any():
            art[sl] |= np.isin(w.labels, w.ids[w.artefact])
    if art.any():
        size = 2 * RESIDUAL_GROW + 1
        art = cv2.dilate(
            art.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        ).astype(bool)
        if (~(art | hole)).any():
            lo, hi = known_range(src, art | hole, margin=RESIDUAL_MARGIN, name=name)
    keep = ~art & ~hole
    background = float(np.median(rec[keep])) if keep.any() else lo
    # the first normalisation stands unless the range re-taken without the artefacts moved
    rec_u8 = u8 if (lo, hi) == u8_range else metric.to_uint8(rec, lo=lo, hi=hi, name=name)
    est = rec.astype(np.float64, copy=True)
    est[art] = background
    # invented fills: nucleus components of the restored field mostly inside the holes
    seg = metric.label_components(rec_u8, p, name=name)
    nuc = seg.ids[~seg.artefact]
    if nuc.size and hole.any():
        inside = np.bincount(seg.labels[hole], minlength=int(seg.labels.max()) + 1)[nuc]
        invented = nuc[inside >= INVENTED_FRACTION * seg.area[~seg.artefact]]
        if invented.size:
            est[np.isin(seg.labels, invented)] = background
    est_u8 = metric.to_uint8(est, lo=lo, hi=hi, name=name)
    changed = est_u8 != rec_u8
    n = len(slices)
    out = {k: np.zeros(n) for k in RESIDUAL_WINDOW_VARIABLES}
    for i, sl in enumerate(slices):
        if not changed[sl].any():  # the same pixels segment the same: all three terms 0
            continue
        r = metric.components(np.ascontiguousarray(rec_u8[sl]), p)
        e = metric.components(np.ascontiguousarray(est_u8[sl]), p)
        out["residual_artefact_window"][i] = float(r.artefact_area - e.artefact_area)
        out["residual_hidden_nuclei"][i] = float(e.nuclei_count - r.nuclei_count)
        out["residual_hidden_nuclear_area"][i] = float(e.nuclei_area - r.nuclei_area)
    return out


def estimated_phirm(
    selfcheck_phirm: npt.ArrayLike,
    residual_artefact: npt.ArrayLike,
    hidden_nuclei: npt.ArrayLike,
    hidden_nuclear_area: npt.ArrayLike,
    *,
    params: metric.PhirmParams | None = None,
) -> np.ndarray:
    """Estimate the true PhIRM per window without a reference.

    docs/qc-without-ground-truth.md, section 8.

    The self-check's deficit (``10 (1 - s)``: how much the model's fills of holes of this
    field's shapes cost) plus what PhIRM would charge for what the restoration left
    (:func:`residual_window_terms`: artefact area ``R``, count difference ``n`` and area
    difference ``a`` against the window's artefact-free estimate), charged with PhIRM's own
    NCD, NAD and AAD (:func:`phirm_scale.metric.phirm_from_components`)::

        D = 10 (1 - s) + NCD(n) + area_weight |a| + artefact_weight |R|
        estimate = max(0, 10 - D) / 10

    NaN where the self-check is NaN (no pseudo-hole placed).
    """
    p = params or metric.PhirmParams()
    s = np.asarray(selfcheck_phirm, np.float64)
    r = np.asarray(residual_artefact, np.float64)
    n = np.asarray(hidden_nuclei, np.float64)
    a = np.asarray(hidden_nuclear_area, np.float64)
    zero = np.zeros_like(n)
    ncd, nad, aad, _ = metric.phirm_from_components(n, a, r, zero, zero, zero, p)
    d = 10.0 * (1.0 - s) + ncd + nad + aad
    with np.errstate(invalid="ignore"):
        return np.maximum(0.0, 10.0 - d) / 10.0
