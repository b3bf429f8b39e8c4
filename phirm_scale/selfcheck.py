"""Self-check PhIRM: how well the model restores *this* field, with no ground truth.

On a real screen nothing tells what lay under an artefact. What can be measured is how well
the model restores pixels that *are* known: pseudo-holes shaped like the plate's real
artefact masks are cut into clean parts of the field (pixels that are neither holes nor
artefacts), inpainted with the same model and settings as the real holes, and scored with
PhIRM against the pixels that were there. That estimates the PhIRM the restoration reaches on
this field (DESIGN.md section 6).

Per field and per draw (``draws`` per field, each seeded from ``(seed, row, column, field,
draw)``, so results never depend on chunking, workers or task grouping):

1. shapes: the connected components (8-connectivity, cropped to their bounding boxes) of
   the field's own holes (``shapes='own'``, the default, falling back to the pool for a
   field without holes) or of one field mask drawn from the plate's mask pool
   (``shapes='pool'``, :class:`MaskPool`);
2. each component is rotated by a multiple of 90 degrees, maybe mirrored, and placed at a
   random position where it, grown by ``margin`` px, touches no real hole, no artefact
   (PhIRM's artefact components of the source field) and no other pseudo-hole; a component
   without a free position after ``attempts`` tries (or larger than the field) is skipped;
3. the model fills real holes and pseudo-holes together (the real run's input plus the
   pseudo-holes); the *restored* field with only the pseudo-hole pixels replaced by the
   model's fill is scored against the restored field, window by window (the QC's windows,
   8-bit with the clean range estimated from the source's known pixels,
   :func:`phirm_scale.fieldqc.known_range`), so only the pseudo-holes differ.

A window the pseudo-holes do not touch is identical in both images: PhIRM 1 (it is still a
window of the field mean, as in the QC, where windows without holes score 1 too).

How it is computed (issue 23; same values as inpainting and scoring the whole field once per
draw, tested bit for bit): all draws are placed first, then :func:`pseudo_hole_fills` fills
them in one pass, only around the pseudo-holes -- Telea and Navier-Stokes on crops of each
cluster of pseudo-holes grown by the fill's reach (:func:`fill_reach`), a tiled model on
just the tiles that hold pseudo-hole pixels, every draw's tiles in one run of batches --
and only the windows a draw touches are scored (the restored field's windows once per field).

Pure numpy; never imports Dask or Zarr.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from phirm_scale import metric
from phirm_scale.errors import InputError
from phirm_scale.flags import DEFAULT_SELFCHECK_DRAWS
from phirm_scale.validation import check_image, check_same_shape

if TYPE_CHECKING:
    from phirm_scale.grid import WindowGrid
    from phirm_scale.inpaint import Model

__all__ = [
    "DEFAULT_DRAWS",
    "MaskPool",
    "SELFCHECK_FIELD_VARIABLES",
    "SELFCHECK_WINDOW_VARIABLES",
    "components_of",
    "fill_reach",
    "place_pseudo_holes",
    "pseudo_hole_fills",
    "pool_from_masks",
    "selfcheck_field",
]

#: Default number of pseudo-hole draws per field (docs/qc-without-ground-truth.md).
DEFAULT_DRAWS = DEFAULT_SELFCHECK_DRAWS  # phirm_scale.flags: the one definition

#: Per-window variables of :func:`selfcheck_field`: (long_name, units).
SELFCHECK_WINDOW_VARIABLES = {
    "selfcheck_phirm": (
        "self-check PhIRM: pseudo-holes inpainted vs the true pixels, mean over draws",
        "1",
    ),
    "selfcheck_ncd": ("self-check nuclei count difference term, mean over draws", "1"),
    "selfcheck_nad": ("self-check nuclei area difference term, mean over draws", "1"),
    "selfcheck_aad": ("self-check artefact area difference term, mean over draws", "1"),
    "selfcheck_pseudo_area": ("pseudo-hole pixels in the window, mean over draws", "px"),
}

#: Per-field variables of :func:`selfcheck_field`: (long_name, units).
SELFCHECK_FIELD_VARIABLES = {
    "selfcheck_draws": ("self-check draws that placed at least one pseudo-hole", "1"),
    "selfcheck_pseudo_area_field": ("pseudo-hole pixels per draw, mean over draws", "px"),
    "selfcheck_n_windows": ("windows touched by pseudo-holes per draw, mean over draws", "1"),
    "selfcheck_skipped_shapes": ("pseudo-hole shapes without a free position, per draw", "1"),
}


def components_of(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Split a mask into its 8-connected components, each cropped to its bounding box (bool)."""
    import cv2

    m = (np.asarray(mask) != 0).astype(np.uint8)
    if m.ndim != 2:
        raise InputError(f"components_of: expected a 2-D mask, got shape {m.shape}")
    if not m.any():
        return ()
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i, :4])
        out.append(labels[y : y + h, x : x + w] == i)
    return tuple(out)


@dataclass(frozen=True)
class MaskPool:
    """Artefact-mask shapes of a plate: per pool field, its components (bool crops).

    Attributes
    ----------
    shape : (int, int)
        Field shape of the plate the masks come from.
    fields : tuple of tuple of ndarray
        One entry per pool field (only fields with at least one hole), its components.
    source : str
        Where the masks came from (plate and label), for the record.
    """

    shape: tuple
    fields: tuple
    source: str = ""

    def __len__(self) -> int:
        return len(self.fields)

    @property
    def area(self) -> int:
        """Count the hole pixels of all components."""
        return int(sum(int(c.sum()) for f in self.fields for c in f))


def pool_from_masks(
    masks: Iterable[np.ndarray], shape: Sequence[int], *, size: int = 64, source: str = ""
) -> MaskPool:
    """Build a :class:`MaskPool` of the first ``size`` non-empty masks of ``masks`` (in order).

    Every mask must have ``shape``; empty masks are skipped.
    """
    shape = tuple(int(s) for s in shape)
    if size < 1:
        raise InputError(f"mask pool size must be >= 1, got {size}")
    fields = []
    for m in masks:
        m = np.asarray(m)
        if m.shape != shape:
            raise InputError(
                f"{source or 'mask pool'}: mask of shape {m.shape}, expected "
                f"the field shape {shape}"
            )
        comps = components_of(m)
        if comps:
            fields.append(comps)
            if len(fields) >= size:
                break
    return MaskPool(shape, tuple(fields), source)


def _grow(comp: np.ndarray, margin: int) -> np.ndarray:
    """``comp`` padded by ``margin`` on every side and dilated by a disk of ``margin``."""
    if margin <= 0:
        return comp
    import cv2
    from skimage.morphology import disk

    padded = np.pad(comp.astype(np.uint8), margin)
    return cv2.dilate(padded, disk(int(margin)).astype(np.uint8)).astype(bool)


def _try_place(
    occupied: np.ndarray,
    pseudo: np.ndarray,
    shape: np.ndarray,
    grown: np.ndarray,
    y: int,
    x: int,
    margin: int,
) -> bool:
    """Place ``shape`` at ``(y, x)`` unless its grown copy meets an occupied pixel.

    ``shape`` goes into ``pseudo`` with its top-left corner at ``(y, x)`` if ``grown`` (the
    shape grown by ``margin``, :func:`_grow`) meets no ``occupied`` pixel there; the grown
    shape is then marked occupied. The shape must lie inside the field; its grown rim may
    reach past the border (clipped). Returns whether it was placed; both arrays change only
    then.
    """
    h_f, w_f = occupied.shape
    h, w = shape.shape
    y0, x0 = y - margin, x - margin
    gy0, gx0 = max(0, -y0), max(0, -x0)
    gy1 = grown.shape[0] - max(0, y0 + grown.shape[0] - h_f)
    gx1 = grown.shape[1] - max(0, x0 + grown.shape[1] - w_f)
    region = occupied[y0 + gy0 : y0 + gy1, x0 + gx0 : x0 + gx1]
    if (region & grown[gy0:gy1, gx0:gx1]).any():
        return False
    region |= grown[gy0:gy1, gx0:gx1]
    pseudo[y : y + h, x : x + w] |= shape
    return True


def place_pseudo_holes(
    shape: Sequence[int],
    forbidden: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    margin: int = 4,
    attempts: int = 100,
) -> tuple[np.ndarray, int]:
    """Place ``shapes`` (rotated/mirrored at random) on pixels free of ``forbidden``.

    A shape is placed where no pixel of it, grown by ``margin``, meets a ``forbidden`` pixel
    or an earlier pseudo-hole; ``attempts`` random positions are tried, then it is skipped.

    Returns
    -------
    (pseudo, skipped) : ((Y, X) bool ndarray, int)
    """
    pseudo, skipped, _ = _place(shape, forbidden, shapes, rng, margin=margin, attempts=attempts)
    return pseudo, skipped


#: a placed pseudo-hole: (y, x, shape) with the shape's top-left corner at (y, x)
Placed = tuple[int, int, np.ndarray]


def _place(
    shape: Sequence[int],
    forbidden: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    margin: int,
    attempts: int,
) -> tuple[np.ndarray, int, list[Placed]]:
    """:func:`place_pseudo_holes`, also returning where each placed shape went."""
    h_f, w_f = (int(s) for s in shape)
    occupied = np.asarray(forbidden, dtype=bool).copy()
    if occupied.shape != (h_f, w_f):
        raise InputError(f"forbidden mask shape {occupied.shape} != field shape {(h_f, w_f)}")
    pseudo = np.zeros((h_f, w_f), bool)
    skipped = 0
    placed_at: list[Placed] = []
    for comp in shapes:
        c = np.rot90(np.asarray(comp, dtype=bool), int(rng.integers(4)))
        if rng.integers(2):
            c = c[:, ::-1]
        grown = _grow(c, margin)  # (h + 2m, w + 2m)
        h, w = c.shape
        if h > h_f or w > w_f:
            skipped += 1
            continue
        # the grown shape may reach past the border: check it against a padded view
        placed = False
        for _ in range(attempts):
            y = int(rng.integers(0, h_f - h + 1))
            x = int(rng.integers(0, w_f - w + 1))
            if _try_place(occupied, pseudo, c, grown, y, x, margin):
                placed = True
                placed_at.append((y, x, c))
                break
        if not placed:
            skipped += 1
    return pseudo, skipped, placed_at


#: a window index: a Python int or a numpy integer (np.flatnonzero's)
_Index = TypeVar("_Index", bound=int | np.integer[Any])


def _window_terms(
    ref8: np.ndarray,
    pseudo: np.ndarray | None,
    fill8: np.ndarray | None,
    grid: WindowGrid,
    idx: Iterable[_Index],
    params: metric.PhirmParams | None,
) -> dict[_Index, tuple[int, int, int]]:
    """PhIRM components of windows ``idx``: {i: (count, nuclei area, artefact area)}.

    Of the 8-bit restored field ``ref8``, or (``pseudo`` given) of it with its ``pseudo``
    pixels replaced by those of ``fill8``.
    """
    out: dict[_Index, tuple[int, int, int]] = {}
    for i in idx:
        y, x = int(grid.y0[i]), int(grid.x0[i])
        sl = np.s_[y : y + grid.height, x : x + grid.width]
        win = np.ascontiguousarray(ref8[sl])  # a copy unless the window is the whole field
        if pseudo is not None and fill8 is not None:
            if win is ref8:
                win = win.copy()
            m = pseudo[sl]
            win[m] = fill8[sl][m]
        c = metric.components(win, params)
        out[i] = (c.nuclei_count, c.nuclei_area, c.artefact_area)
    return out


def fill_reach(model: Model) -> int | None:
    """How far (px) from a hole a whole-field model's fill looks, or None when unknown.

    ``model.fill_reach`` when it has one; for OpenCV's Telea and Navier-Stokes
    (:class:`~phirm_scale.models.adapters.classical.ClassicalModel`) ``4 * (ceil(radius) + 1)``:
    ``cv2.inpaint`` reads pixels within ``radius`` of a hole pixel, their gradients (one
    more) and a distance map grown ``radius`` out of the holes; a crop of that margin around
    a hole was found to fill it exactly as the whole field does from ``radius + 1`` on (real
    BBBC039 fields, 16 components, 6 draws), so this is four times that.
    """
    reach = getattr(model, "fill_reach", None)
    if reach is not None:
        return int(reach)
    if getattr(model, "name", None) in ("telea", "navier-stokes"):
        radius = getattr(model, "config", {}).get("radius")
        if radius is not None:
            return 4 * (int(np.ceil(float(radius))) + 1)
    return None


def pseudo_hole_fills(
    source: np.ndarray,
    holes: np.ndarray,
    pseudos: Sequence[np.ndarray],
    model: Model,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 16,
    gap: int = 1,
    placements: Sequence[Sequence[Placed]] | None = None,
) -> list[np.ndarray]:
    """Fill every draw's pseudo-holes as ``inpaint_field(source, holes | pseudo, model)`` does.

    Returns, per mask of ``pseudos``, a field of the source's dtype whose ``pseudo`` pixels
    hold the model's fill (other pixels are 0), equal bit for bit to the pseudo pixels of
    :func:`phirm_scale.inpaint.inpaint_field` on the whole field with the real holes and that
    draw's pseudo-holes, but only around the pseudo-holes:

    * a whole-field model on an integer field with a known :func:`fill_reach` (Telea,
      Navier-Stokes): one call per cluster of pseudo-holes (those closer than twice the
      reach), on the cluster's bounding box grown by the reach, with the real holes and the
      draw's pseudo-holes inside it as holes; needs ``gap >= 1`` (the placement margin:
      pseudo-holes then never touch a real hole, whose whole extent would matter);
    * a tiled model: only the inpainting tiles that hold a pseudo-hole pixel (the only ones
      whose predictions are blended into those pixels), cut with the whole hole mask, and the
      tiles of all draws in one run of batches (``batch_size`` tiles per model call);
    * otherwise (another whole-field model): the whole field per draw.

    ``placements`` (per draw, the ``(y, x, shape)`` of each pseudo-hole, as the self-check
    placed them) saves finding the pseudo-holes' components again; they must make up the
    masks exactly.
    """
    from phirm_scale.inpaint import blend_hole_tiles, cut_hole_tiles, hole_tiles, inpaint_field

    src = np.asarray(source)
    hole = np.asarray(holes) != 0
    masks = [np.asarray(p) != 0 for p in pseudos]
    for m in (hole, *masks):
        if m.shape != src.shape:
            raise InputError(f"pseudo_hole_fills: mask of shape {m.shape}, field {src.shape}")
    if not masks:
        return []
    integer = np.issubdtype(src.dtype, np.integer)
    direct = getattr(model, "inpaint_integer", None)
    if getattr(model, "whole_field", False):
        reach = fill_reach(model)
        if direct is None or reach is None or gap < 1 or src.dtype not in (np.uint8, np.uint16):
            return [
                _where(
                    p,
                    inpaint_field(
                        src, hole | p, model, tile=tile, overlap=overlap, batch_size=batch_size
                    ),
                )
                for p in masks
            ]
        if placements is None:
            placements = [_placements(p) for p in masks]
        if len(placements) != len(masks):
            raise InputError(f"{len(placements)} placements for {len(masks)} pseudo-hole masks")
        return [
            _crop_fills(src, hole, p, at, direct, reach)
            for p, at in zip(masks, placements, strict=True)
        ]

    # tiled: the tiles holding pseudo pixels of every draw, in one run of batches
    cuts = []
    for p in masks:
        tiles = cut_hole_tiles(src, hole | p, tile, overlap)
        want = set(hole_tiles(_pad(p, tile), tile, overlap))
        keep = np.array([(int(y), int(x)) in want for y, x in tiles.starts], bool)
        cuts.append(_subset(tiles, keep))
    images = np.concatenate([c.images for c in cuts])
    tmasks = np.concatenate([c.masks for c in cuts])
    per_call = bool(getattr(model, "per_call_batch_size", False))
    preds = []
    for b in range(0, len(images), batch_size):
        x, m = images[b : b + batch_size], tmasks[b : b + batch_size]
        pr = np.asarray(model(x, m, batch_size=batch_size) if per_call else model(x, m))  # type: ignore[call-arg]
        if pr.shape != x.shape:
            raise InputError(f"model returned shape {pr.shape}, expected {x.shape}")
        preds.append(pr)
    pred = np.concatenate(preds)
    out = []
    at = 0
    for p, c in zip(masks, cuts, strict=True):
        n = len(c)
        values = blend_hole_tiles(c, pred[at : at + n], p, tile, overlap)
        at += n
        if integer:
            info = np.iinfo(src.dtype)
            values = np.clip(np.rint(values), info.min, info.max)
        f = np.zeros(src.shape, src.dtype)
        f[p] = values.astype(src.dtype)
        out.append(f)
    return out


def _where(pseudo: np.ndarray, filled: np.ndarray) -> np.ndarray:
    f = np.zeros_like(filled)
    f[pseudo] = filled[pseudo]
    return f


def _pad(mask: np.ndarray, tile: int) -> np.ndarray:
    """``mask`` padded with False to at least one tile (as the inpainting pads the field)."""
    ph, pw = max(0, tile - mask.shape[0]), max(0, tile - mask.shape[1])
    return np.pad(mask, ((0, ph), (0, pw))) if ph or pw else mask


def _subset(tiles: Any, keep: np.ndarray) -> Any:
    import dataclasses

    return dataclasses.replace(
        tiles,
        starts=tiles.starts[keep],
        images=tiles.images[keep],
        masks=tiles.masks[keep],
        holes=tiles.holes[keep],
        lo=tiles.lo[keep],
        hi=tiles.hi[keep],
    )


def _placements(pseudo: np.ndarray) -> list[Placed]:
    """Split a mask into placements ``(y, x, shape)``, one per 8-connected component."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(pseudo.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i, :4])
        out.append((y, x, labels[y : y + h, x : x + w] == i))
    return out


def _clusters(placed: Sequence[Placed], reach: int) -> list[list[int]]:
    """Group placements whose boxes, grown by ``reach``, overlap (transitively)."""
    n = len(placed)
    box = np.array(
        [
            (y - reach, x - reach, y + c.shape[0] + reach, x + c.shape[1] + reach)
            for y, x, c in placed
        ],
        np.int64,
    ).reshape(n, 4)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        meet = (
            (box[:, 0] < box[i, 2])
            & (box[i, 0] < box[:, 2])
            & (box[:, 1] < box[i, 3])
            & (box[i, 1] < box[:, 3])
        )
        for j in np.flatnonzero(meet[i + 1 :]) + i + 1:
            parent[root(int(j))] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _crop_fills(
    src: np.ndarray,
    hole: np.ndarray,
    pseudo: np.ndarray,
    placed: Sequence[Placed],
    direct: Any,
    reach: int,
) -> np.ndarray:
    """One draw's fills by crops: per cluster of pseudo-holes, its box grown by ``reach``.

    Holes in the box: the draw's pseudo-holes (those of another cluster are more than twice
    the reach away; only the cluster's own pixels are taken) and the real holes' pixels
    within the reach of one of them (the rest of a real hole is too far to change a fill, so
    it is neither filled nor cut out).
    """
    import cv2

    h_f, w_f = src.shape
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * reach + 1, 2 * reach + 1))
    out = np.zeros(src.shape, src.dtype)
    for group in _clusters(placed, reach):
        y0 = max(0, min(placed[i][0] for i in group) - reach)
        x0 = max(0, min(placed[i][1] for i in group) - reach)
        y1 = min(h_f, max(placed[i][0] + placed[i][2].shape[0] for i in group) + reach)
        x1 = min(w_f, max(placed[i][1] + placed[i][2].shape[1] for i in group) + reach)
        sl = np.s_[y0:y1, x0:x1]
        here = pseudo[sl]
        # the real holes within the reach of a pseudo-hole: farther ones change no fill
        near = cv2.dilate(here.astype(np.uint8), kernel).astype(bool)
        mask = here | (hole[sl] & near)
        filled = np.asarray(direct(np.ascontiguousarray(src[sl]), mask))
        for i in group:
            y, x, c = placed[i]
            h, w = c.shape
            dst = out[y : y + h, x : x + w]
            dst[c] = filled[y - y0 : y - y0 + h, x - x0 : x - x0 + w][c]
    return out


def selfcheck_field(
    source: np.ndarray,
    holes: np.ndarray,
    model: Model,
    *,
    restored: np.ndarray | None = None,
    pool: MaskPool | None = None,
    seed_key: Sequence[int] = (0,),
    draws: int = DEFAULT_DRAWS,
    shapes: str = "own",
    margin: int = 4,
    attempts: int = 100,
    window: int | str | None = 256,
    params: metric.PhirmParams | None = None,
    inpaint_kwargs: dict | None = None,
    name: str = "field",
) -> dict:
    """Self-check PhIRM of one field (see the module docstring).

    Parameters
    ----------
    source : (Y, X) ndarray
        The field before restoration (integer or float).
    holes : (Y, X) ndarray
        The holes the model fills in the real run (nonzero), already grown by any dilation
        the inpainting applies.
    model : callable
        The inpainting model (:func:`phirm_scale.models.get_model`), used through
        :func:`phirm_scale.inpaint.inpaint_field` with ``inpaint_kwargs``.
    restored : (Y, X) ndarray, optional
        The real restoration (``inpaint_field(source, holes, model)``; computed when None).
    pool : MaskPool, optional
        Shapes for fields without holes of their own (and for ``shapes='pool'``).
    seed_key : sequence of int
        Seed of this field (e.g. ``(seed, row index, column, field)``); draw ``d`` uses
        ``SeedSequence([*seed_key, d])``.
    draws : int
        Pseudo-hole draws per field (filled together, :func:`pseudo_hole_fills`).
    shapes : {'own', 'pool'}
        Where the pseudo-hole shapes come from (see the module docstring).
    margin, attempts : int
        Placement: gap to real holes, artefacts and other pseudo-holes (px), random tries
        per shape.
    window : int, 'field' or None
        The QC's windows (:func:`phirm_scale.grid.window_grid`).
    params : PhirmParams, optional
        PhIRM parameters (the QC's).
    inpaint_kwargs : dict, optional
        ``tile``, ``overlap``, ``batch_size`` of the real run.
    name : str
        Field name for error messages.

    Returns
    -------
    dict
        Per-window (W,) float64 arrays :data:`SELFCHECK_WINDOW_VARIABLES` (NaN when no draw
        placed a pseudo-hole) and per-field floats :data:`SELFCHECK_FIELD_VARIABLES`.

    Raises
    ------
    InputError
        No shapes at all (a field without holes and no pool), a pool of another field
        shape, mismatched shapes, or bad parameters.
    """
    from phirm_scale import fieldqc
    from phirm_scale.grid import window_grid
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.masks import saturation_mask

    src = check_image(source, name, what="source", allow_empty=True, kinds=None, finite=False)
    hole = np.asarray(holes) != 0
    check_same_shape(src, hole, name, what=("source", "holes"))
    if draws < 1:
        raise InputError(f"{name}: draws must be >= 1, got {draws}")
    if shapes not in ("own", "pool"):
        raise InputError(f"{name}: shapes must be 'own' or 'pool', got {shapes!r}")
    if margin < 0 or attempts < 1:
        raise InputError(f"{name}: margin must be >= 0 and attempts >= 1")
    if pool is not None and tuple(pool.shape) != src.shape:
        raise InputError(
            f"{name}: the mask pool ({pool.source or 'given'}) has fields of "
            f"shape {tuple(pool.shape)}, this plate {src.shape}"
        )
    params = params or metric.PhirmParams()
    kw = dict(inpaint_kwargs or {})
    own = components_of(hole) if shapes == "own" else ()
    if not own and (pool is None or len(pool) == 0):
        raise InputError(
            f"{name}: no real holes to shape pseudo-holes on (the field has "
            "none and there is no mask pool); give a mask pool"
        )
    if restored is None:
        restored = inpaint_field(src, hole, model, **kw)
    restored = np.asarray(restored)
    if restored.shape != src.shape:
        raise InputError(f"{name}: restored shape {restored.shape} != source {src.shape}")

    grid = window_grid(src.shape, window)
    nwin = len(grid)
    # the clean field's range, estimated from the source's known pixels: the restored field's
    # own maximum may be a saturated rim a mask missed, which would squeeze the nuclei into a
    # few 8-bit levels and make every fill look perfect
    lo, hi = fieldqc.known_range(src, hole, name=name)
    if hi <= lo:
        raise InputError(
            f"{name}: the source's known pixels are constant ({lo:g}); nothing to score"
        )
    ref8 = metric.to_uint8(restored, lo=lo, hi=hi)
    artefacts = saturation_mask(src, dilation=0, params=params, name=name) != 0
    forbidden = hole | artefacts

    # every draw's pseudo-holes first (the same random streams as one draw at a time), then
    # all their fills in one pass, then the touched windows of each draw scored
    pseudos: list[np.ndarray] = []
    placements: list[list[Placed]] = []
    skipped_total = 0
    for d in range(int(draws)):
        rng = np.random.default_rng(np.random.SeedSequence([*map(int, seed_key), d]))
        if own:
            comps = own
        else:
            assert pool is not None  # checked above: no own holes needs a pool
            comps = pool.fields[int(rng.integers(len(pool)))]
        pseudo, skipped, at = _place(
            src.shape, forbidden, comps, rng, margin=margin, attempts=attempts
        )
        skipped_total += skipped
        if at:
            pseudos.append(pseudo)
            placements.append(at)
    fills = pseudo_hole_fills(src, hole, pseudos, model, gap=margin, placements=placements, **kw)

    sums = {k: np.zeros(nwin) for k in ("phirm", "ncd", "nad", "aad", "area")}
    ref_cache: dict = {}
    ok_draws = len(pseudos)
    pseudo_total = 0.0
    windows_total = 0.0
    slices = list(grid.slices())
    for pseudo, fill in zip(pseudos, fills, strict=True):
        area = np.array([np.count_nonzero(pseudo[sl]) for sl in slices], np.float64)
        touched = np.flatnonzero(area > 0)
        new = [int(i) for i in touched if i not in ref_cache]
        ref_cache.update(_window_terms(ref8, None, None, grid, new, params))
        # to_uint8 is per pixel: only the pseudo pixels' fills need converting
        fill8 = np.zeros(src.shape, np.uint8)
        fill8[pseudo] = metric.to_uint8(fill[pseudo], lo=lo, hi=hi)
        rec_c = _window_terms(ref8, pseudo, fill8, grid, touched, params)
        ref_arr = np.array([ref_cache[i] for i in touched], np.float64).reshape(-1, 3)
        rec_arr = np.array([rec_c[i] for i in touched], np.float64).reshape(-1, 3)
        ncd, nad, aad, ph = metric.phirm_from_components(
            ref_arr[:, 0],
            ref_arr[:, 1],
            ref_arr[:, 2],
            rec_arr[:, 0],
            rec_arr[:, 1],
            rec_arr[:, 2],
            params,
        )
        phirm = np.ones(nwin)
        phirm[touched] = ph
        for k, v in (("ncd", ncd), ("nad", nad), ("aad", aad)):
            full = np.zeros(nwin)
            full[touched] = v
            sums[k] += full
        sums["phirm"] += phirm
        sums["area"] += area
        pseudo_total += float(pseudo.sum())
        windows_total += float(touched.size)

    out: dict = {}
    names = {
        "phirm": "selfcheck_phirm",
        "ncd": "selfcheck_ncd",
        "nad": "selfcheck_nad",
        "aad": "selfcheck_aad",
        "area": "selfcheck_pseudo_area",
    }
    for k, var in names.items():
        out[var] = sums[k] / ok_draws if ok_draws else np.full(nwin, np.nan)
    out["selfcheck_draws"] = float(ok_draws)
    out["selfcheck_pseudo_area_field"] = pseudo_total / ok_draws if ok_draws else 0.0
    out["selfcheck_n_windows"] = windows_total / ok_draws if ok_draws else 0.0
    out["selfcheck_skipped_shapes"] = skipped_total / int(draws)
    return out
