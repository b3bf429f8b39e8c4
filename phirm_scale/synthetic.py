"""Synthetic and composite plates: the input of tests, the demo and benchmarks at any scale.

A field has three channels, as in the paper's experiment (ground truth + artefact):

``DAPI``
    nuclei with artefacts composited: ``clip(clean + artefact * 65535)``, so artefacts are
    bright and saturated where they cover the field;
``CFP``
    the artefact channel: dim camera background and noise, artefacts bright and saturated;
``DAPI_clean``
    the ground truth nuclei image (synthetic, or a real field with ``from_fields``).

and a label ``artefacts_true`` (uint8, 1 = artefact) with the exact artefact footprint.

The generators (:func:`synthetic_nuclei`, :func:`synthetic_artefacts`, :func:`composite`,
:func:`artefact_channel`) are pure numpy; :func:`make_plate` writes a plate through
:mod:`phirm_scale.plate`, one task per field, each field seeded from ``(seed, row, column,
field)`` so the result never depends on scheduling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from phirm_scale.errors import InputError
from phirm_scale.plate import ATTRS_KEY
from phirm_scale.validation import check_image

if TYPE_CHECKING:
    from phirm_scale.plate import FieldKeyLike, Plate

__all__ = [
    "CHANNELS",
    "TRUE_LABEL",
    "synthetic_nuclei",
    "synthetic_artefacts",
    "composite",
    "artefact_channel",
    "fit_to_shape",
    "make_field",
    "make_plate",
    "SyntheticFieldTask",
]

#: Channel names of a synthetic / composite plate.
CHANNELS = ("DAPI", "CFP", "DAPI_clean")
#: Label holding the true artefact mask.
TRUE_LABEL = "artefacts_true"
_U16 = 65535


def synthetic_nuclei(
    shape: tuple[int, int],
    *,
    rng: np.random.Generator,
    radius: tuple[float, float] = (7.0, 14.0),
    density: float = 1 / 2500,
    background: float = 500.0,
    peak: float = 9000.0,
    noise: float = 1.0,
) -> np.ndarray:
    """Draw a 16-bit nuclei image: textured elliptical blobs on an uneven background, with noise.

    Parameters
    ----------
    shape : (Y, X)
    rng : numpy.random.Generator
    radius : (float, float)
        Range of nucleus radii in pixels.
    density : float
        Nuclei per pixel (default one per 50x50 px).
    background : float
        Mean background level.
    peak : float
        Brightest nucleus level above the background.
    noise : float
        Scale of the (shot-like) noise; 0 gives a noiseless image.

    Returns
    -------
    (Y, X) ndarray of uint16
    """
    h, w = int(shape[0]), int(shape[1])
    img = np.zeros((h, w), np.float64)
    occ = np.zeros((h, w), bool)
    target = rng.poisson(max(h * w * density, 1.0))
    tries = 0
    placed = 0
    while placed < target and tries < 20 * target + 20:
        tries += 1
        r = rng.uniform(*radius)
        a, b = r * rng.uniform(0.85, 1.2), r * rng.uniform(0.7, 1.0)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ext = int(math.ceil(max(a, b))) + 2
        y0, y1 = max(0, int(cy) - ext), min(h, int(cy) + ext + 1)
        x0, x1 = max(0, int(cx) - ext), min(w, int(cx) + ext + 1)
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        th = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(th) + dy * np.sin(th)) / a
        v = (-dx * np.sin(th) + dy * np.cos(th)) / b
        d2 = u * u + v * v
        inside = d2 <= 1.0
        if not inside.any():
            continue
        if occ[y0:y1, x0:x1][inside].mean() > 0.15:
            continue
        level = peak * rng.uniform(0.35, 1.0)
        texture = 1.0 + 0.12 * rng.standard_normal(inside.shape)
        prof = np.clip((1.0 - d2) * 4.0, 0.0, 1.0) * level * texture
        np.maximum(img[y0:y1, x0:x1], np.where(inside, prof, 0.0), out=img[y0:y1, x0:x1])
        occ[y0:y1, x0:x1] |= inside
        placed += 1
    img = ndi.gaussian_filter(img, 1.2)
    gy = np.linspace(-1, 1, h)[:, None]
    gx = np.linspace(-1, 1, w)[None, :]
    c1, c2 = rng.uniform(-0.1, 0.1, 2)
    img += background * (1.0 + c1 * gy + c2 * gx)
    if noise > 0:
        img += noise * np.sqrt(np.maximum(img, 1.0)) * rng.standard_normal(img.shape)
    return np.clip(np.rint(img), 0, _U16).astype(np.uint16)


def _fibre(mask: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    import cv2

    h, w = mask.shape
    length = rng.uniform(40, 220) * scale
    width = int(rng.integers(6, 13))
    n = max(4, int(length / 8))
    ang = rng.uniform(0, 2 * np.pi)
    turn = rng.normal(0, 0.12, n).cumsum()
    steps = length / n
    y, x = rng.uniform(0, h), rng.uniform(0, w)
    pts = [(x, y)]
    for t in turn:
        x += steps * np.cos(ang + t)
        y += steps * np.sin(ang + t)
        pts.append((x, y))
    arr = np.round(np.array(pts) * 16).astype(np.int32)[None]  # 4 fractional bits
    cv2.polylines(
        mask, list(arr), isClosed=False, color=1, thickness=width, lineType=cv2.LINE_8, shift=4
    )


def _dust(mask: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    import cv2

    h, w = mask.shape
    r = rng.uniform(6, 26) * math.sqrt(scale)
    k = int(rng.integers(7, 14))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = r * np.exp(rng.normal(0, 0.25, k))
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], color=1, lineType=cv2.LINE_8, shift=4)


def synthetic_artefacts(
    shape: tuple[int, int],
    *,
    rng: np.random.Generator,
    density: float = 0.02,
    fibre_fraction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Fibres and dust: irregular, bright and saturated artefacts covering ~``density``.

    Parameters
    ----------
    shape : (Y, X)
    rng : numpy.random.Generator
    density : float
        Target fraction of the field covered (0 gives no artefact).
    fibre_fraction : float
        Probability that an artefact is a fibre rather than a dust particle.

    Returns
    -------
    intensity : (Y, X) ndarray of float32
        Artefact brightness in [0, 1] (0 outside the mask, mostly 1 = saturated inside).
    mask : (Y, X) ndarray of uint8
        1 where an artefact lies.
    """
    if not 0 <= density < 1:
        raise InputError(f"artefact density must be in [0, 1), got {density}")
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), np.uint8)
    if density > 0:
        scale = max(min(h, w) / 512.0, 0.5)
        target = density * h * w
        for _ in range(10_000):
            if mask.sum() >= target:
                break
            if rng.random() < fibre_fraction:
                _fibre(mask, rng, scale)
            else:
                _dust(mask, rng, scale)
    inside = mask.astype(bool)
    texture = np.clip(1.05 + 0.15 * rng.standard_normal((h, w)), 0.85, 1.0)
    intensity = np.where(inside, texture, 0.0).astype(np.float32)
    return intensity, mask


def composite(clean: np.ndarray, intensity: np.ndarray) -> np.ndarray:
    """Paper-style composite: ground truth + artefact, saturating at the dtype maximum.

    ``clip(clean + intensity * max, 0, max)`` where ``max`` is the integer dtype's maximum
    (65535 for uint16): artefact pixels are (mostly) saturated.
    """
    clean = np.asarray(clean)
    if clean.shape != np.shape(intensity):
        raise InputError(
            f"composite: clean {clean.shape} and artefact {np.shape(intensity)} differ in shape"
        )
    top = np.iinfo(clean.dtype).max if np.issubdtype(clean.dtype, np.integer) else 1.0
    out = clean.astype(np.float64) + np.asarray(intensity, np.float64) * top
    out = np.clip(np.rint(out) if top != 1.0 else out, 0, top)
    return out.astype(clean.dtype)


def artefact_channel(
    intensity: np.ndarray,
    *,
    rng: np.random.Generator,
    background: float = 200.0,
    noise: float = 20.0,
) -> np.ndarray:
    """Draw the artefact (CFP) channel: dim noisy background, artefacts bright and saturated."""
    bg = background + noise * rng.standard_normal(np.shape(intensity))
    out = bg + np.asarray(intensity, np.float64) * _U16
    return np.clip(np.rint(out), 0, _U16).astype(np.uint16)


def fit_to_shape(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop (top-left) or mirror-pad a 2-D image to ``shape``.

    Padding is ``numpy.pad(mode='symmetric')``, i.e. mirrored tiling.
    """
    a = np.asarray(image)
    h, w = shape
    a = a[:h, :w]
    ph, pw = h - a.shape[0], w - a.shape[1]
    while ph > 0 or pw > 0:  # symmetric pad grows at most by the image size each round
        sy, sx = min(ph, a.shape[0]), min(pw, a.shape[1])
        a = np.pad(a, ((0, sy), (0, sx)), mode="symmetric")
        ph, pw = h - a.shape[0], w - a.shape[1]
    return a


def _field_rng(seed: int, key: FieldKeyLike) -> np.random.Generator:
    from phirm_scale.plate import row_index

    return np.random.default_rng(
        np.random.SeedSequence([int(seed), row_index(key[0]), int(key[1]), int(key[2])])
    )


def _to_u16(image: npt.ArrayLike, path: str | Path) -> npt.NDArray[np.uint16]:
    a = np.asarray(image)
    if a.ndim != 2:
        a = np.squeeze(a)
    a = check_image(a, str(path), allow_empty=True, kinds=None)  # NaN/inf refused
    if a.dtype == np.uint16:
        return a
    if a.dtype == np.uint8:
        return a.astype(np.uint16) * 257
    if np.issubdtype(a.dtype, np.floating):
        lo, hi = float(a.min()), float(a.max())
        if hi == lo:
            return np.zeros(a.shape, np.uint16)
        return np.rint((a - lo) / (hi - lo) * _U16).astype(np.uint16)
    return np.clip(a, 0, _U16).astype(np.uint16)


def make_field(
    key: FieldKeyLike,
    *,
    size: tuple[int, int],
    seed: int = 0,
    artefacts: float = 0.02,
    source: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Make one field: returns ``(data (3, Y, X) uint16 [DAPI, CFP, DAPI_clean], true mask)``.

    ``source`` is a TIFF used as the ground truth (fitted to ``size``) instead of synthetic
    nuclei. Deterministic in ``(seed, key)``.
    """
    rng = _field_rng(seed, key)
    if source is None:
        clean = synthetic_nuclei(size, rng=rng)
    else:
        import tifffile

        try:
            img = tifffile.imread(str(source))
        except Exception as exc:
            raise InputError(f"{source}: unreadable TIFF ({type(exc).__name__}: {exc})") from exc
        clean = fit_to_shape(_to_u16(img, source), size)
    intensity, mask = synthetic_artefacts(size, rng=rng, density=artefacts)
    dapi = composite(clean, intensity)
    cfp = artefact_channel(intensity, rng=rng)
    return np.stack([dapi, cfp, clean]), mask


def _list_sources(from_fields: str | Path) -> list[Path]:
    d = Path(from_fields)
    if not d.is_dir():
        raise InputError(f"{d}: --from-fields is not a folder")
    files = sorted(
        p
        for p in d.rglob("*")
        if p.suffix.lower() in (".tif", ".tiff") and "_thumb" not in p.name.lower() and p.is_file()
    )
    if not files:
        raise InputError(f"{d}: no TIFF files to take fields from")
    return files


@dataclass(frozen=True)
class SyntheticFieldTask:
    """Arguments of one make-plate task: one field."""

    path: str
    key: tuple
    size: tuple
    seed: int
    artefacts: float
    source: str | None


def _write_one(task: SyntheticFieldTask) -> tuple:
    from phirm_scale.plate import RANGE_KEY, FieldKey, intensity_range, open_field_view

    key = FieldKey(*task.key)
    plate = open_field_view(task.path, key, mode="r+")
    data, mask = make_field(
        key, size=task.size, seed=task.seed, artefacts=task.artefacts, source=task.source
    )
    plate.write_label(key, TRUE_LABEL, mask)  # label first: 'complete' then means both
    # the damaged DAPI's window leaves the artefacts out (they are known here), so that the
    # nuclei, not the saturated blobs, span it; CFP and DAPI_clean: all their pixels
    ranges = intensity_range(data)
    ranges[0] = intensity_range(data[0], exclude=mask > 0)[0]
    plate.write_field(key, data, field_attrs={RANGE_KEY: ranges})
    return tuple(key)


def make_plate(
    out_path: str | Path,
    *,
    rows: int = 2,
    columns: int = 2,
    fields: int = 1,
    size: int | Sequence[int] = 256,
    seed: int = 0,
    from_fields: str | Path | None = None,
    artefacts: float = 0.02,
    overwrite: bool = False,
    n_levels: int = 1,
    cluster: Any = None,
    progress: bool = False,
    pixel_size: float | None = None,
) -> Plate:
    """Write a synthetic (or composite) HCS plate and return it opened.

    Parameters
    ----------
    out_path : str or Path
        Output ``*.ome.zarr``.
    rows, columns, fields : int
        Plate grid (rows 'A'.., columns '01'..) and fields per well.
    size : int or (int, int)
        Field shape (square if an int).
    seed : int
        Seed; every field is seeded from ``(seed, row, column, field)``.
    from_fields : str or Path, optional
        Folder of TIFFs used as ground truth (sorted, reused cyclically, cropped or
        mirror-padded to ``size``) instead of synthetic nuclei.
    artefacts : float
        Fraction of each field covered by artefacts (0: clean plate).
    overwrite : bool
        Replace an existing output.
    n_levels : int
        Multiscale levels.
    cluster : str or distributed.Client, optional
        ``None`` writes fields in this process; otherwise a ``--cluster`` spec (or an open
        client, left open) and one Dask
        task per field.
    progress : bool
        Show a progress bar.
    pixel_size : float, optional
        Pixel size in micrometres (viewer metadata); default the one every ``from_fields``
        TIFF's metadata gives, none for synthetic nuclei.

    Returns
    -------
    phirm_scale.plate.Plate
    """
    from phirm_scale.plate import (
        FieldKey,
        create_plate,
        open_plate,
        row_name,
        write_viewer_metadata,
    )

    shape = (
        (int(cast(int, size)),) * 2
        if np.ndim(size) == 0
        else tuple(int(s) for s in cast(Sequence[int], size))
    )
    if len(shape) != 2 or min(shape) < 16:
        raise InputError(f"field size must be >= 16 pixels, got {size}")
    if rows < 1 or columns < 1 or fields < 1:
        raise InputError(f"rows, columns and fields must be >= 1, got {rows}, {columns}, {fields}")
    if not 0 <= artefacts < 1:
        raise InputError(f"artefact density must be in [0, 1), got {artefacts}")
    from phirm_scale.stages.convert import check_pixel_size

    check_pixel_size(pixel_size)
    sources = _list_sources(from_fields) if from_fields is not None else None
    rnames = [row_name(i) for i in range(rows)]
    width = max(2, len(str(columns)))
    cnames = [str(c + 1).zfill(width) for c in range(columns)]
    keys = [FieldKey(r, c, f) for r in rnames for c in cnames for f in range(fields)]
    attrs = {
        ATTRS_KEY: {
            "command": "make-plate",
            "synthetic": {
                "seed": int(seed),
                "artefacts": float(artefacts),
                "size": list(shape),
                "from_fields": str(Path(from_fields).resolve())
                if from_fields is not None
                else None,
                "channels": {
                    "DAPI": "ground truth + artefacts (saturated)",
                    "CFP": "artefact channel",
                    "DAPI_clean": "ground truth",
                },
                "true_label": TRUE_LABEL,
            },
        }
    }
    from phirm_scale.outputs import guard_output

    with guard_output(out_path, command="make-plate", inputs=[from_fields], overwrite=overwrite):
        create_plate(
            out_path,
            rows=rnames,
            columns=cnames,
            fields=keys,
            channel_names=CHANNELS,
            shape=shape,
            dtype=np.uint16,
            name=Path(out_path).name.split(".")[0],
            n_levels=n_levels,
            attrs=attrs,
        )
        tasks = [
            SyntheticFieldTask(
                str(out_path),
                tuple(k),
                tuple(shape),
                int(seed),
                float(artefacts),
                str(sources[i % len(sources)]) if sources else None,
            )
            for i, k in enumerate(keys)
        ]
        if cluster is None:
            for t in tasks:
                _write_one(t)
        else:
            from phirm_scale.stages._runner import run_tasks

            run_tasks(
                _write_one, tasks, cluster=cluster, progress=progress, description="make-plate"
            )
        # viewer-ready: windows from the data, the damaged DAPI shown (CFP and DAPI_clean a
        # click away), the source TIFFs' pixel size when they all give the same one
        write_viewer_metadata(
            out_path,
            keys,
            active=[CHANNELS[0]],
            pixel_size=pixel_size if pixel_size is not None else _sources_pixel_size(sources),
        )
    return open_plate(out_path)


def _sources_pixel_size(sources: Sequence[Path] | None) -> float | None:
    """Return the pixel size (um) every source TIFF's metadata gives.

    None for synthetic nuclei, or when no source gives one or they differ.
    """
    from phirm_scale.stages.convert import tiff_pixel_size

    sizes = {tiff_pixel_size(s) for s in sources or []}
    return sizes.pop() if len(sizes) == 1 else None
