"""Metric validation (paper 4.1): PhIRM, PSNR and SSIM against graded phenotype corruption.

The paper checked PhIRM against expert opinion on images manipulated "to corrupt the
phenotype": nuclei removed, nuclear area cut, artefacts added (its Figure 1), and showed that
SSIM misses those changes while PhIRM follows them.  This module builds such manipulations at
graded strengths from real nuclei fields and scores each against its original:

``nuclei_removed`` (strength = number of nuclei)
    ``k`` nuclei components (the components PhIRM counts, in a seeded random order, so
    strength ``k + 1`` removes the same nuclei as ``k`` plus one) are replaced, with a 1-px
    halo, by the local background.
``nuclei_eroded`` (strength = radius in px)
    every nucleus loses the pixels within ``r`` px of its border (binary erosion by a disk),
    replaced by the local background.
``artefacts_added`` (strength = added artefact area as a fraction of the image)
    saturated (255) blobs and fibres are drawn, in a seeded sequence and away from the nuclei,
    until their area reaches the fraction; a larger strength adds to the same sequence.

"Local background" is a smooth background level (normalised Gaussian convolution of the
pixels away from the foreground) plus residual noise resampled from those pixels, clipped
below the Otsu level, so filled regions look like background and are not foreground.

Pure numpy/OpenCV (no Dask, no Zarr); :func:`validate_metric` adds file reading, a CSV and a
plot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt

from phirm_scale.errors import InputError
from phirm_scale.imageio import read_image
from phirm_scale.validation import check_image

if TYPE_CHECKING:
    import pandas as pd

    from phirm_scale.metric import PhirmParams

#: Fields to validate: a folder, one image file, or a list of image files.
_Fields = str | Path | Iterable[str | Path]

__all__ = [
    "DEFAULT_STRENGTHS",
    "MANIPULATIONS",
    "add_artefacts",
    "erode_nuclei",
    "manipulate",
    "plot_validation",
    "remove_nuclei",
    "summarise",
    "validation_table",
    "validate_image",
    "validate_metric",
]

#: The manipulations of paper 4.1, with the unit of their strength.
MANIPULATIONS: dict[str, str] = {
    "nuclei_removed": "nuclei removed",
    "nuclei_eroded": "erosion radius (px)",
    "artefacts_added": "added artefact area (% of image)",
}

#: Default graded strengths per manipulation (0 = the original image).
DEFAULT_STRENGTHS: dict[str, tuple[float, ...]] = {
    "nuclei_removed": (0, 1, 2, 3, 4, 5, 6, 8, 10),
    "nuclei_eroded": (0, 1, 2, 3, 4, 6),
    "artefacts_added": (0, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03),
}


# --------------------------------------------------------------------------- helpers
def _check_u8(image: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    img = check_image(image, "image_u8", what="8-bit image")
    if img.dtype != np.uint8:
        raise InputError(
            f"expected a uint8 image (normalise with metric.to_uint8); got {img.dtype}"
        )
    return img


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _segment(
    img: npt.NDArray[np.uint8], params: PhirmParams | None
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_], npt.NDArray[np.integer[Any]], float]:
    """PhIRM's segmentation (paper mode by default): labels, foreground and nucleus ids.

    Components are classified by their own pixels whatever mode ``params`` names, as the
    manipulations always have (only the scores differ between the modes).
    """
    import dataclasses

    from phirm_scale.metric import PhirmParams, label_components

    p = dataclasses.replace(params or PhirmParams(), mode="paper")
    seg = label_components(img, p)
    return seg.labels, seg.labels > 0, seg.ids[~seg.artefact], seg.threshold


def _background(
    img: np.ndarray, fg: np.ndarray, t: float, rng: np.random.Generator, sigma: float = 15.0
) -> np.ndarray:
    """Make a background-only image: smooth local level plus resampled residual noise (<= t)."""
    bgmask = ~cv2.dilate(fg.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if not bgmask.any():
        bgmask = ~fg
    if not bgmask.any():
        raise InputError("image has no background pixels to fill manipulated regions with")
    f = img.astype(np.float64)
    w = bgmask.astype(np.float64)
    num = cv2.GaussianBlur(f * w, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    den = cv2.GaussianBlur(w, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    level = np.where(den > 1e-6, num / np.maximum(den, 1e-6), float(np.median(f[bgmask])))
    resid = (f - level)[bgmask]
    noise = rng.choice(resid, size=img.shape) if resid.size else 0.0
    return np.clip(np.rint(level + noise), 0, math.floor(t)).astype(np.uint8)


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


# --------------------------------------------------------------------------- manipulations
def remove_nuclei(
    image_u8: npt.ArrayLike,
    k: float,
    *,
    rng: np.random.Generator | int | None = None,
    params: PhirmParams | None = None,
) -> npt.NDArray[np.uint8]:
    """Replace ``k`` nuclei by the local background.

    Parameters
    ----------
    image_u8 : (M, N) ndarray of uint8
        The original image.
    k : int
        How many nuclei components to remove (capped at the number present).
    rng : numpy.random.Generator or int, optional
        Chooses the nuclei (a random order: the same seed removes nested sets as ``k``
        grows) and the background noise.  Default seed 0.
    params : PhirmParams, optional
        Segmentation parameters (PhIRM's, paper mode by default).

    Returns
    -------
    (M, N) ndarray of uint8
    """
    img = _check_u8(image_u8)
    if int(k) != k or k < 0:
        raise InputError(f"number of nuclei to remove must be a non-negative integer; got {k!r}")
    rng = _rng(rng)
    labels, fg, nuclei, t = _segment(img, params)
    order = rng.permutation(nuclei)
    bg = _background(img, fg, t, rng)
    chosen = order[: int(k)]
    if chosen.size == 0:
        return img.copy()
    sel = np.zeros(labels.max() + 1, bool)
    sel[chosen] = True
    m = sel[labels]
    region = cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~(fg & ~m)
    return np.where(region, bg, img)


def erode_nuclei(
    image_u8: npt.ArrayLike,
    radius: float,
    *,
    rng: np.random.Generator | int | None = None,
    params: PhirmParams | None = None,
) -> npt.NDArray[np.uint8]:
    """Cut nuclear area: the nuclei pixels within ``radius`` px of their border become background.

    Parameters
    ----------
    image_u8 : (M, N) ndarray of uint8
    radius : int
        Erosion radius in pixels (0 = unchanged).
    rng : numpy.random.Generator or int, optional
        Background noise.
    params : PhirmParams, optional
        Segmentation parameters.

    Returns
    -------
    (M, N) ndarray of uint8
    """
    img = _check_u8(image_u8)
    if int(radius) != radius or radius < 0:
        raise InputError(f"erosion radius must be a non-negative integer; got {radius!r}")
    rng = _rng(rng)
    labels, fg, nuclei, t = _segment(img, params)
    bg = _background(img, fg, t, rng)
    if radius == 0 or nuclei.size == 0:
        return img.copy()
    sel = np.zeros(labels.max() + 1, bool)
    sel[nuclei] = True
    nuc = sel[labels].astype(np.uint8)
    # pad with 1s so that nuclei touching the image border are not eroded from it
    eroded = cv2.erode(nuc, _disk(int(radius)), borderType=cv2.BORDER_CONSTANT, borderValue=1)
    region = nuc.astype(bool) & ~eroded.astype(bool)
    return np.where(region, bg, img)


def _artefact_shape(rng: np.random.Generator) -> np.ndarray:
    """One saturated blob (ellipse) or fibre (thick polyline) as a small 0/1 stamp."""
    if rng.random() < 0.5:  # blob
        a, b = int(rng.integers(4, 16)), int(rng.integers(3, 12))
        s = 2 * max(a, b) + 3
        stamp = np.zeros((s, s), np.uint8)
        cv2.ellipse(stamp, (s // 2, s // 2), (a, b), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        return stamp
    n = int(rng.integers(2, 5))
    path = [np.array([0.0, 0.0])]
    ang = rng.uniform(0, 2 * np.pi)
    for _ in range(n - 1):
        ang += rng.normal(0, 0.6)
        path.append(path[-1] + rng.uniform(12, 35) * np.array([np.cos(ang), np.sin(ang)]))
    pts = np.array(path)
    width = int(rng.integers(2, 5))
    pts -= pts.min(axis=0) - width - 1
    s = int(np.ceil(pts.max())) + width + 2
    stamp = np.zeros((s, s), np.uint8)
    cv2.polylines(
        stamp, [np.rint(pts).astype(np.int32).reshape(-1, 1, 2)], False, 1, thickness=width
    )
    return stamp


def add_artefacts(
    image_u8: npt.ArrayLike,
    area_fraction: float,
    *,
    rng: np.random.Generator | int | None = None,
    params: PhirmParams | None = None,
    margin: int = 5,
    value: int = 255,
) -> npt.NDArray[np.uint8]:
    """Draw saturated blobs and fibres until they cover ``area_fraction`` of the image.

    Artefacts are placed in a seeded sequence at random positions, away (``margin`` px)
    from the foreground and from each other when possible; with the same seed a larger
    fraction draws the same artefacts plus more.

    Parameters
    ----------
    image_u8 : (M, N) ndarray of uint8
    area_fraction : float
        Target added artefact area as a fraction of the image, in ``[0, 0.5]``.
    rng : numpy.random.Generator or int, optional
    params : PhirmParams, optional
        Segmentation parameters (to keep artefacts off the nuclei).
    margin : int, optional
        Preferred distance in px from nuclei and other artefacts.
    value : int, optional
        Artefact intensity (255 = saturated, what PhIRM calls an artefact).

    Returns
    -------
    (M, N) ndarray of uint8
    """
    img = _check_u8(image_u8)
    if not (0 <= float(area_fraction) <= 0.5):
        raise InputError(f"artefact area fraction must lie in [0, 0.5]; got {area_fraction!r}")
    rng = _rng(rng)
    h, w = img.shape
    target = float(area_fraction) * h * w
    out = img.copy()
    if target <= 0:
        return out
    _, fg, _, _ = _segment(img, params)
    blocked = cv2.dilate(fg.astype(np.uint8), _disk(margin)).astype(bool)
    added = np.zeros_like(fg)
    while added.sum() < target:
        stamp = _artefact_shape(rng).astype(bool)
        sh, sw = stamp.shape
        if sh >= h or sw >= w:
            raise InputError(f"image {img.shape} too small for artefacts")
        for attempt in range(200):
            y, x = int(rng.integers(0, h - sh)), int(rng.integers(0, w - sw))
            if not (blocked[y : y + sh, x : x + sw] & stamp).any() or attempt == 199:
                break
        added[y : y + sh, x : x + sw] |= stamp
        grown = cv2.dilate(stamp.astype(np.uint8), _disk(margin)).astype(bool)
        blocked[y : y + sh, x : x + sw] |= grown[:sh, :sw]
    out[added] = value
    return out


_FUNCS = {
    "nuclei_removed": remove_nuclei,
    "nuclei_eroded": erode_nuclei,
    "artefacts_added": add_artefacts,
}


def manipulate(
    image_u8: npt.ArrayLike,
    kind: str,
    strength: float,
    *,
    seed: int = 0,
    params: PhirmParams | None = None,
) -> npt.NDArray[np.uint8]:
    """Apply one manipulation of :data:`MANIPULATIONS` at ``strength`` (seeded)."""
    if kind not in _FUNCS:
        raise InputError(f"unknown manipulation {kind!r}; known: {', '.join(_FUNCS)}")
    return _FUNCS[kind](image_u8, strength, rng=np.random.default_rng(seed), params=params)


# --------------------------------------------------------------------------- scoring
def validate_image(
    image_u8: npt.ArrayLike,
    *,
    strengths: Mapping[str, Sequence[float]] | None = None,
    seed: int = 0,
    name: str = "image",
) -> list[dict[str, str | float]]:
    """Score every manipulation of one 8-bit image at every strength.

    Parameters
    ----------
    image_u8 : (M, N) ndarray of uint8
    strengths : dict, optional
        ``{manipulation: strengths}``; defaults to :data:`DEFAULT_STRENGTHS`.
    seed : int
        Seed of the manipulations (the same for every strength of a series).
    name : str
        Stored in the ``field`` column.

    Returns
    -------
    list of dict
        One row per (manipulation, strength): PhIRM in paper and reference mode with their
        parts, PSNR, SSIM and the components of original and manipulated image.
    """
    from phirm_scale.metric import PhirmParams, score

    img = _check_u8(image_u8)
    strengths = DEFAULT_STRENGTHS if strengths is None else strengths
    rows: list[dict[str, str | float]] = []
    ref_params = PhirmParams.reference()
    for kind, values in strengths.items():
        for s in values:
            man = manipulate(img, kind, s, seed=seed)
            sp = score(img, man)
            sr = score(img, man, ref_params, image_metrics=False)
            rows.append(
                {
                    "field": name,
                    "manipulation": kind,
                    "strength": float(s),
                    "phirm": sp.phirm,
                    "phirm_reference": sr.phirm,
                    "psnr": sp.psnr,
                    "ssim": sp.ssim,
                    "ncd": sp.ncd,
                    "nad": sp.nad,
                    "aad": sp.aad,
                    "ref_nuclei_count": sp.reference.nuclei_count,
                    "nuclei_count": sp.reconstruction.nuclei_count,
                    "ref_nuclei_area": sp.reference.nuclei_area,
                    "nuclei_area": sp.reconstruction.nuclei_area,
                    "ref_artefact_area": sp.reference.artefact_area,
                    "artefact_area": sp.reconstruction.artefact_area,
                    "changed_fraction": float((man != img).mean()),
                }
            )
    return rows


def _list_fields(fields: _Fields) -> list[Path]:
    if isinstance(fields, (str, Path)):
        p = Path(fields)
        if p.is_dir():
            files = sorted(
                f
                for f in p.iterdir()
                if f.suffix.lower() in (".tif", ".tiff", ".png") and "_thumb" not in f.name.lower()
            )
            if not files:
                raise InputError(f"{p}: no .tif/.tiff/.png images in this folder")
            return files
        if p.is_file():
            return [p]
        raise InputError(f"{p}: no such file or folder")
    return [Path(f) for f in fields]


def validate_metric(
    fields: _Fields,
    *,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    strengths: Mapping[str, Sequence[float]] | None = None,
    seed: int = 0,
    plot: bool = True,
) -> pd.DataFrame:
    """Run the paper's metric validation on a folder of nuclei fields.

    Each field is normalised to 8 bit with its own min/max (:func:`metric.to_uint8`),
    manipulated at graded strengths (:data:`DEFAULT_STRENGTHS`) and scored against its
    original with PhIRM (paper and reference mode), PSNR and SSIM.

    Parameters
    ----------
    fields : path or list of paths
        A folder of TIFF/PNG fields or a list of files.
    out_dir : path, optional
        When given: writes ``validation.csv``, ``validation_summary.csv`` (mean and std per
        manipulation and strength), ``validation.png`` (metrics vs strength) and
        ``examples.png`` (original and manipulations of the first field).
    limit : int, optional
        Use only the first ``limit`` fields (sorted by name).
    strengths : dict, optional
        ``{manipulation: strengths}``.
    seed : int
        Seed of the manipulations.
    plot : bool
        Write the figures (with ``out_dir``).

    Returns
    -------
    pandas.DataFrame
        One row per field x manipulation x strength.
    """
    import pandas as pd

    from phirm_scale.metric import to_uint8

    files = _list_fields(fields)
    if out_dir is not None:
        from phirm_scale.outputs import check_output_folder

        # a list of files is checked file by file (a list is no path)
        inputs = [fields] if isinstance(fields, (str, Path)) else files
        check_output_folder(out_dir, inputs=inputs)
    if limit is not None:
        if int(limit) < 1:
            raise InputError(f"--limit must be >= 1; got {limit}")
        files = files[: int(limit)]
    rows = []
    first = None
    for f in files:
        u8 = to_uint8(read_image(f), name=str(f))
        if first is None:
            first = (f.name, u8)
        rows.extend(validate_image(u8, strengths=strengths, seed=seed, name=f.name))
    df = pd.DataFrame(rows)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        df.to_csv(out / "validation.csv", index=False)
        validation_table(df).to_csv(out / "validation_summary.csv")
        if plot:
            plot_validation(df, out / "validation.png")
            assert first is not None  # _list_fields returned at least one field
            _plot_examples(first[1], out / "examples.png", seed=seed, title=first[0])
    return df


def validation_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of every metric per manipulation and strength."""
    cols = ["phirm", "phirm_reference", "psnr", "ssim", "ncd", "nad", "aad"]
    d = df.replace([np.inf], np.nan)
    return d.groupby(["manipulation", "strength"])[cols].agg(["mean", "std"])


def plot_validation(df: pd.DataFrame, path: str | Path) -> Path:
    """Figure like the paper's Figure 1b/c: PhIRM, SSIM and PSNR vs manipulation strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in MANIPULATIONS if k in set(df["manipulation"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4), squeeze=False)
    d = df.replace([np.inf], np.nan)
    for ax, kind in zip(axes[0], kinds, strict=True):
        g = d[d.manipulation == kind].groupby("strength")
        x = np.array(sorted(g.groups))
        xs = x * 100 if kind == "artefacts_added" else x
        for col, style, label in (
            ("phirm", "o-", "PhIRM (paper)"),
            ("phirm_reference", "s--", "PhIRM (reference)"),
            ("ssim", "^-", "SSIM"),
        ):
            m, s = g[col].mean().reindex(x), g[col].std().reindex(x).fillna(0)
            ax.errorbar(xs, m, yerr=s, fmt=style, capsize=2, label=label)
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel(MANIPULATIONS[kind])
        ax.set_ylabel("PhIRM / SSIM")
        ax2 = ax.twinx()
        ax2.errorbar(
            xs,
            g["psnr"].mean().reindex(x),
            yerr=g["psnr"].std().reindex(x).fillna(0),
            fmt="d:",
            color="grey",
            capsize=2,
            label="PSNR (dB)",
        )
        ax2.set_ylabel("PSNR (dB), strength 0 = inf not drawn")
        ax.set_title(kind.replace("_", " "))
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left")
    n = df["field"].nunique()
    fig.suptitle(f"Metric validation (paper 4.1) on {n} field(s): mean +- std")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _plot_examples(
    img: npt.NDArray[np.uint8], path: str | Path, *, seed: int = 0, title: str = ""
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("original", img)]
    for kind, s in (("nuclei_removed", 4), ("nuclei_eroded", 2), ("artefacts_added", 0.01)):
        panels.append((f"{kind} {s:g}", manipulate(img, kind, s, seed=seed)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (t, im) in zip(axes, panels, strict=True):
        ax.imshow(im, cmap="gray", vmin=0, vmax=255)
        ax.set_title(t, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: The former name of :func:`validation_table` (kept importable; issue 21: three functions were
#: named ``summarise``).
summarise = validation_table
