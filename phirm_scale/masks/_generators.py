"""Artificial hole masks for training and evaluation (paper 3.4), pure numpy.

Every mask is a ``uint8`` array of 0/1 with **1 = hole**.  Every generator takes a
:class:`numpy.random.Generator` as ``rng`` so that a seeded generator reproduces the same
masks.  Never imports Dask or Zarr.

Mask families (the ``spec`` strings used by ``train`` and ``evaluate``):

``rect:LO-HI``
    One axis-aligned rectangle covering ``[LO, HI)`` percent of the tile area, at a random
    position (paper 3.4; the paper's bins are 10-20, 20-30, 30-40 and 40-50).
``rect``
    A rectangle from one of the four paper bins, the bin drawn uniformly.
``strokes``
    DeepFill v2 free-form brush strokes (1-3 polylines of 4-11 vertices, angles around
    2*pi/5, segment length ~ N(R, R/2) clipped to [0, 2R] with R = diagonal / 8, brush width
    12-40 px, a filled circle at every vertex, random flips).
``strokes+box``
    Strokes plus one random box, as DeepFill v2 trains with.
``artefacts``
    A mask drawn from a pool of real artefact masks (tiles of an artefact label).
``mix``
    One of ``rect``, ``strokes`` or (when a pool is given) ``artefacts``, drawn uniformly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from phirm_scale.errors import InputError

__all__ = [
    "MASK_FAMILIES",
    "RECT_BINS",
    "MaskSpec",
    "artefact_pool_mask",
    "parse_mask_spec",
    "rect_mask",
    "sample_mask",
    "sample_masks",
    "stroke_mask",
]

#: The paper's rectangular mask area bins, as fractions of the tile area ``[lo, hi)``.
RECT_BINS: tuple[tuple[float, float], ...] = (
    (0.10, 0.20),
    (0.20, 0.30),
    (0.30, 0.40),
    (0.40, 0.50),
)

#: The mask families of the paper's experiment, in the order of its figures.
MASK_FAMILIES: tuple[str, ...] = (
    "rect:10-20",
    "rect:20-30",
    "rect:30-40",
    "rect:40-50",
    "strokes",
    "artefacts",
)


@dataclass(frozen=True)
class MaskSpec:
    """A parsed mask family.

    Attributes
    ----------
    kind : {'rect', 'strokes', 'artefacts', 'mix'}
        The family.
    area_range : tuple of float or None
        ``(lo, hi)`` area fractions for a rectangle with a fixed bin, ``None`` for ``rect``
        (any paper bin) and the other kinds.
    with_box : bool
        For ``strokes``: also draw one random box (``strokes+box``).
    spec : str
        The normalised spec string.
    """

    kind: str
    area_range: tuple[float, float] | None = None
    with_box: bool = False
    spec: str = ""

    @property
    def name(self) -> str:
        """The normalised spec string (alias of ``spec``; the kind when ``spec`` is empty)."""
        return self.spec or self.kind


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputError(f"mask shape must be (height, width); got {shape!r}") from None
    if h < 1 or w < 1:
        raise InputError(f"mask shape must be positive; got {shape!r}")
    return h, w


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    return rng


def rect_mask(
    shape: Sequence[int] = (256, 256),
    area_range: tuple[float, float] = (0.10, 0.20),
    *,
    rng: np.random.Generator,
    max_aspect: float = 3.0,
) -> npt.NDArray[np.uint8]:
    """Draw one random rectangle whose area fraction lies in ``[lo, hi)``.

    The rectangle's pixel count ``h * w`` satisfies ``lo * H * W <= h * w < hi * H * W``
    exactly (integer arithmetic on pixel counts, not an approximation).  The height is
    drawn among the heights for which such a width exists (preferring aspect ratios within
    ``[1/max_aspect, max_aspect]``), the width uniformly in its admissible range, and the
    position uniformly inside the tile.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the mask.
    area_range : tuple of float
        ``(lo, hi)``, fractions of the tile area with ``0 <= lo < hi <= 1``.
    rng : numpy.random.Generator
        Source of randomness.
    max_aspect : float, optional
        Preferred maximum ratio between the rectangle's sides.

    Returns
    -------
    mask : (H, W) ndarray of uint8
        1 inside the rectangle (the hole), 0 elsewhere.

    Raises
    ------
    InputError
        If ``area_range`` is not a valid bin or no rectangle of whole pixels fits it.

    Examples
    --------
    >>> m = rect_mask((256, 256), (0.3, 0.4), rng=np.random.default_rng(0))
    >>> bool(0.3 <= m.mean() < 0.4)
    True
    """
    h_img, w_img = _check_shape(shape)
    rng = _check_rng(rng)
    try:
        lo, hi = (float(v) for v in area_range)
    except (TypeError, ValueError):
        raise InputError(f"area_range must be (lo, hi); got {area_range!r}") from None
    if not (0.0 <= lo < hi <= 1.0):
        raise InputError(f"area_range must satisfy 0 <= lo < hi <= 1; got {area_range!r}")
    total = h_img * w_img
    a_lo = max(1, math.ceil(lo * total - 1e-9))  # smallest admissible pixel count
    a_hi = math.ceil(hi * total - 1e-9) - 1  # largest admissible pixel count (< hi * total)
    heights = np.arange(1, h_img + 1)
    w_min = np.maximum(1, -(-a_lo // heights))  # ceil(a_lo / h)
    w_max = np.minimum(w_img, a_hi // heights)
    ok = w_min <= w_max
    if not ok.any():
        raise InputError(
            f"no rectangle of whole pixels covers {lo:.0%}-{hi:.0%} of a {h_img}x{w_img} mask"
        )
    # Prefer heights whose admissible widths allow a moderate aspect ratio.
    pref = ok & (w_max * max_aspect >= heights) & (w_min <= heights * max_aspect)
    cand = np.flatnonzero(pref if pref.any() else ok)
    # Height uniformly among the admissible heights, then the width uniformly in its range.
    i = int(cand[rng.integers(len(cand))])
    h = int(heights[i])
    lo_w, hi_w = int(w_min[i]), int(w_max[i])
    if pref.any():
        lo_w = max(lo_w, math.ceil(h / max_aspect))
        hi_w = min(hi_w, math.floor(h * max_aspect))
        if lo_w > hi_w:
            lo_w, hi_w = int(w_min[i]), int(w_max[i])
    w = int(rng.integers(lo_w, hi_w + 1))
    y0 = int(rng.integers(0, h_img - h + 1))
    x0 = int(rng.integers(0, w_img - w + 1))
    mask = np.zeros((h_img, w_img), np.uint8)
    mask[y0 : y0 + h, x0 : x0 + w] = 1
    return mask


def _random_box(h_img: int, w_img: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Draw a random box of 1/8 to 1/2 of each side, anywhere in the tile (DeepFill's bbox)."""
    bh = int(rng.integers(max(1, h_img // 8), max(1, h_img // 2) + 1))
    bw = int(rng.integers(max(1, w_img // 8), max(1, w_img // 2) + 1))
    y0 = int(rng.integers(0, h_img - bh + 1))
    x0 = int(rng.integers(0, w_img - bw + 1))
    return y0, x0, bh, bw


def stroke_mask(
    shape: Sequence[int] = (256, 256),
    *,
    rng: np.random.Generator,
    max_vertices: int = 11,
    min_vertices: int = 4,
    min_width: int = 12,
    max_width: int = 40,
    max_strokes: int = 3,
    mean_angle: float = 2 * math.pi / 5,
    angle_range: float = 2 * math.pi / 15,
    with_box: bool = False,
) -> npt.NDArray[np.uint8]:
    """Draw a DeepFill v2 free-form brush-stroke mask.

    Follows ``brush_stroke_mask`` of the DeepFill v2 release: 1 to ``max_strokes``
    polylines; each has ``min_vertices``-``max_vertices`` vertices, turns by angles drawn
    around ``mean_angle`` (alternating direction) with jitter ``angle_range``, and segment
    lengths ~ N(R, R/2) clipped to [0, 2R] with R = image diagonal / 8; the line is drawn
    with a brush width drawn in [``min_width``, ``max_width``) and a filled circle at every
    vertex; the mask is then flipped left-right / up-down with probability 1/2 each.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the mask.
    rng : numpy.random.Generator
        Source of randomness.
    max_vertices, min_vertices : int, optional
        Range of the number of vertices per stroke (inclusive).
    min_width, max_width : int, optional
        Brush width range in pixels.
    max_strokes : int, optional
        Maximum number of strokes.
    mean_angle, angle_range : float, optional
        Turning angle mean and jitter in radians.
    with_box : bool, optional
        Also mark one random box (1/8 to 1/2 of each side) as hole.

    Returns
    -------
    mask : (H, W) ndarray of uint8
        1 on the strokes (the hole), 0 elsewhere; never empty.

    Examples
    --------
    >>> m = stroke_mask((256, 256), rng=np.random.default_rng(0))
    >>> set(np.unique(m)) <= {0, 1}
    True
    """
    h_img, w_img = _check_shape(shape)
    rng = _check_rng(rng)
    if not (1 <= min_vertices <= max_vertices):
        raise InputError(
            f"need 1 <= min_vertices <= max_vertices; got {min_vertices}, {max_vertices}"
        )
    if not (1 <= min_width <= max_width):
        raise InputError(f"need 1 <= min_width <= max_width; got {min_width}, {max_width}")
    if max_strokes < 1:
        raise InputError(f"max_strokes must be >= 1; got {max_strokes}")
    radius = math.sqrt(h_img * h_img + w_img * w_img) / 8
    mask = np.zeros((h_img, w_img), np.uint8)
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        n_vertex = int(rng.integers(min_vertices, max_vertices + 1))
        angle_min = mean_angle - rng.uniform(0, angle_range)
        angle_max = mean_angle + rng.uniform(0, angle_range)
        angles = [
            (2 * math.pi - rng.uniform(angle_min, angle_max))
            if i % 2 == 0
            else rng.uniform(angle_min, angle_max)
            for i in range(n_vertex)
        ]
        x, y = int(rng.integers(0, w_img)), int(rng.integers(0, h_img))
        vertices = [(x, y)]
        for ang in angles:
            r = float(np.clip(rng.normal(radius, radius / 2), 0, 2 * radius))
            x = int(np.clip(vertices[-1][0] + r * math.cos(ang), 0, w_img - 1))
            y = int(np.clip(vertices[-1][1] + r * math.sin(ang), 0, h_img - 1))
            vertices.append((x, y))
        width = (
            int(rng.integers(min_width, max_width + 1)) if max_width > min_width else int(min_width)
        )
        pts = np.asarray(vertices, np.int32)
        cv2.polylines(mask, [pts.reshape(-1, 1, 2)], False, 1, thickness=width, lineType=cv2.LINE_8)
        for vx, vy in vertices:
            cv2.circle(mask, (int(vx), int(vy)), max(1, width // 2), 1, thickness=-1)
    if rng.random() < 0.5:
        mask = mask[:, ::-1]
    if rng.random() < 0.5:
        mask = mask[::-1, :]
    mask = np.ascontiguousarray(mask)
    if with_box:
        y0, x0, bh, bw = _random_box(h_img, w_img, rng)
        mask[y0 : y0 + bh, x0 : x0 + bw] = 1
    return mask


def artefact_pool_mask(
    pool: Any,
    *,
    rng: np.random.Generator,
    shape: Sequence[int] | None = None,
    min_fraction: float = 0.0,
    augment: bool = True,
) -> npt.NDArray[np.uint8]:
    """Draw a real artefact mask at random from a pool of artefact-label tiles.

    Parameters
    ----------
    pool : (N, H, W) array_like of {0, 1}
        Artefact mask tiles (for example ``TileSet.artefacts``); non-zero = artefact.
    rng : numpy.random.Generator
        Source of randomness.
    shape : tuple of int, optional
        Expected ``(H, W)``; an :class:`InputError` is raised if the pool's tiles differ.
    min_fraction : float, optional
        Only masks covering more than this fraction of the tile are drawn (masks with no
        hole pixel are never drawn).
    augment : bool, optional
        Apply a random flip / 90-degree rotation (rotations only for square tiles).

    Returns
    -------
    mask : (H, W) ndarray of uint8
        1 = hole.

    Raises
    ------
    InputError
        If the pool is empty, has the wrong shape, or holds no mask above ``min_fraction``.
    """
    rng = _check_rng(rng)
    if pool is None:
        raise InputError(
            "mask family 'artefacts' needs an artefact pool (tiles written with --label)"
        )
    arr = np.asarray(pool) if not hasattr(pool, "shape") else pool
    if len(arr.shape) != 3 or arr.shape[0] == 0:
        raise InputError(
            f"artefact pool must be a non-empty (N, H, W) stack; got shape {tuple(arr.shape)}"
        )
    if shape is not None and tuple(arr.shape[1:]) != tuple(_check_shape(shape)):
        raise InputError(
            f"artefact pool tiles are {tuple(arr.shape[1:])}, masks must be {tuple(shape)}"
        )
    idx = _eligible(arr, min_fraction)
    if idx.size == 0:
        raise InputError(
            f"artefact pool holds no mask covering more than {min_fraction:.1%} of a tile"
        )
    mask = (np.asarray(arr[int(idx[rng.integers(idx.size)])]) != 0).astype(np.uint8)
    if augment:
        if rng.random() < 0.5:
            mask = mask[:, ::-1]
        if rng.random() < 0.5:
            mask = mask[::-1, :]
        if mask.shape[0] == mask.shape[1]:
            mask = np.rot90(mask, int(rng.integers(4)))
    return np.ascontiguousarray(mask)


_ELIGIBLE_CACHE: dict[tuple[int, float], tuple[object, np.ndarray]] = {}


def _eligible(arr: Any, min_fraction: float) -> np.ndarray:
    """Find the pool tiles with hole fraction > min_fraction (cached per pool object)."""
    key = (id(arr), float(min_fraction))
    hit = _ELIGIBLE_CACHE.get(key)
    if hit is not None and hit[0] is arr:
        return hit[1]
    a = np.asarray(arr[:])
    frac = (a.reshape(a.shape[0], -1) != 0).mean(axis=1)
    idx = np.flatnonzero(frac > min_fraction)
    if len(_ELIGIBLE_CACHE) > 16:
        _ELIGIBLE_CACHE.clear()
    _ELIGIBLE_CACHE[key] = (arr, idx)
    return idx


def parse_mask_spec(spec: str | MaskSpec) -> MaskSpec:
    """Parse a mask family string.

    Parameters
    ----------
    spec : str or MaskSpec
        ``'rect:LO-HI'`` (percent, ``0 <= LO < HI <= 100``), ``'rect'``, ``'strokes'``,
        ``'strokes+box'``, ``'artefacts'`` or ``'mix'``.

    Returns
    -------
    MaskSpec

    Raises
    ------
    InputError
        For an unknown family or a malformed bin.

    Examples
    --------
    >>> parse_mask_spec("rect:10-20").area_range
    (0.1, 0.2)
    """
    if isinstance(spec, MaskSpec):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"mask spec must be a string; got {spec!r}")
    s = spec.strip().lower()
    known = "rect:LO-HI, rect, strokes, strokes+box, artefacts, mix"
    if s.startswith("rect:"):
        body = s[5:]
        try:
            lo_s, hi_s = body.split("-")
            lo, hi = float(lo_s), float(hi_s)
        except ValueError:
            raise InputError(
                f"bad mask spec {spec!r}: expected rect:LO-HI in percent, e.g. rect:10-20"
            ) from None
        if not (0 <= lo < hi <= 100):
            raise InputError(f"bad mask spec {spec!r}: need 0 <= LO < HI <= 100")
        return MaskSpec(
            "rect", (round(lo / 100, 6), round(hi / 100, 6)), False, f"rect:{lo_s}-{hi_s}"
        )
    if s == "rect":
        return MaskSpec("rect", None, False, "rect")
    if s in ("strokes", "stroke", "free-form", "irregular"):
        return MaskSpec("strokes", None, False, "strokes")
    if s in ("strokes+box", "strokes-box"):
        return MaskSpec("strokes", None, True, "strokes+box")
    if s in ("artefacts", "artefact", "artifacts"):
        return MaskSpec("artefacts", None, False, "artefacts")
    if s == "mix":
        return MaskSpec("mix", None, False, "mix")
    raise InputError(f"unknown mask spec {spec!r}; known: {known}")


def sample_mask(
    spec: str | MaskSpec,
    shape: Sequence[int] = (256, 256),
    *,
    rng: np.random.Generator,
    artefact_pool: Any = None,
) -> npt.NDArray[np.uint8]:
    """Draw one mask of a family.

    Parameters
    ----------
    spec : str or MaskSpec
        A mask family (see :func:`parse_mask_spec`).
    shape : tuple of int
        ``(H, W)`` of the mask.
    rng : numpy.random.Generator
        Source of randomness.
    artefact_pool : (N, H, W) array_like, optional
        Real artefact masks, required by ``'artefacts'``; used by ``'mix'`` when given.

    Returns
    -------
    mask : (H, W) ndarray of uint8
        1 = hole.
    """
    ms = parse_mask_spec(spec)
    rng = _check_rng(rng)
    kind = ms.kind
    if kind == "mix":
        kinds = ["rect", "strokes"] + (["artefacts"] if artefact_pool is not None else [])
        kind = kinds[int(rng.integers(len(kinds)))]
        ms = MaskSpec(kind, spec=kind)
    if kind == "rect":
        area = (
            ms.area_range
            if ms.area_range is not None
            else RECT_BINS[int(rng.integers(len(RECT_BINS)))]
        )
        return rect_mask(shape, area, rng=rng)
    if kind == "strokes":
        return stroke_mask(shape, rng=rng, with_box=ms.with_box)
    return artefact_pool_mask(artefact_pool, rng=rng, shape=shape)


def sample_masks(
    spec: str | MaskSpec,
    n: int,
    shape: Sequence[int] = (256, 256),
    *,
    rng: np.random.Generator,
    artefact_pool: Any = None,
) -> npt.NDArray[np.uint8]:
    """Draw ``n`` masks of a family as an ``(n, H, W)`` uint8 stack (see :func:`sample_mask`)."""
    h, w = _check_shape(shape)
    out = np.empty((int(n), h, w), np.uint8)
    for i in range(int(n)):
        out[i] = sample_mask(spec, (h, w), rng=rng, artefact_pool=artefact_pool)
    return out
