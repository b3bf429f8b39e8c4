"""The per-field kernel of the QC: :func:`score_field` and the names of its variables.

:func:`score_field` normalises both images to 8 bit with the *reference* field's min/max
(:func:`phirm_scale.metric.to_uint8`) and returns, per window of
:func:`phirm_scale.grid.window_grid`, the PhIRM components of reference and reconstruction,
PSNR, SSIM and (when a mask is given) the masked fraction. It is plain numpy: the Dask stage
(:mod:`phirm_scale.stages.score`) maps it, one task per field.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from phirm_scale import metric
from phirm_scale.errors import InputError
from phirm_scale.grid import WINDOW as _GRID_WINDOW
from phirm_scale.grid import window_grid
from phirm_scale.validation import check_image

#: Default window edge (the paper's 256x256 patches; defined in phirm_scale.grid).
WINDOW = _GRID_WINDOW

#: Components counted by :func:`phirm_scale.metric.components`, in this order.
COMPONENTS = ("nuclei_count", "nuclei_area", "artefact_count", "artefact_area")

#: Per-window variables returned by :func:`score_field` (``masked_fraction`` only with a mask).
KERNEL_VARIABLES = (
    tuple(f"ref_{c}" for c in COMPONENTS)
    + tuple(f"rec_{c}" for c in COMPONENTS)
    + ("psnr", "ssim", "masked_fraction")
)

#: Per-window variables of the QC Dataset, in this order (``masked_fraction`` only with a mask).
WINDOW_VARIABLES = KERNEL_VARIABLES[:8] + ("ncd", "nad", "aad", "phirm") + KERNEL_VARIABLES[8:]

#: Statistics of PhIRM in every summary (see :func:`level_summary`).
SUMMARY_STATISTICS = ("phirm_mean", "phirm_min", "phirm_p05", "phirm_frac_below", "n_windows")

_DESCRIPTIONS = {
    "nuclei_count": "number of nuclei (clumps count as the metric mode says)",
    "nuclei_area": "total nuclei area, px",
    "artefact_count": "number of artefact components",
    "artefact_area": "total artefact area, px",
    "ncd": "nuclei count difference term",
    "nad": "nuclei area difference term",
    "aad": "artefact area difference term",
    "phirm": "PhIRM, 0..1, higher = phenotype better kept",
    "psnr": "peak signal-to-noise ratio, dB (inf for identical windows)",
    "ssim": "structural similarity (skimage, data_range 255)",
    "masked_fraction": "fraction of window pixels inside the mask",
}


# ----------------------------------------------------------------------------------- kernel
def score_field(
    reference: npt.ArrayLike,
    reconstruction: npt.ArrayLike,
    *,
    window: int | str | None = WINDOW,
    params: metric.PhirmParams | None = None,
    mask: npt.ArrayLike | None = None,
    name: str = "field",
) -> dict[str, np.ndarray]:
    """Score every window of one field: PhIRM components, PSNR, SSIM (and masked fraction).

    Both images are normalised to 8 bit with the reference field's min/max
    (``metric.to_uint8(x, lo=ref.min(), hi=ref.max())``); the windows of
    :func:`window_grid` are then scored independently, each as one image for
    :func:`phirm_scale.metric.components`, :func:`~phirm_scale.metric.psnr` and
    :func:`~phirm_scale.metric.ssim`.

    Parameters
    ----------
    reference, reconstruction : (Y, X) array_like, any integer or float dtype
        The field before and after restoration (same shape).
    window : int, 'field' or None, default 256
        Window edge; ``'field'`` scores the whole field as one window.
    params : PhirmParams, optional
        Metric parameters (default: the paper's).
    mask : (Y, X) array_like, optional
        Nonzero = masked (inpainted) pixel; adds ``masked_fraction``.
    name : str
        Name of the field in error messages.

    Returns
    -------
    dict of str -> (W,) float64 ndarray
        Keys :data:`KERNEL_VARIABLES` (without ``masked_fraction`` when no mask is given),
        windows in :func:`window_grid` order.

    Raises
    ------
    InputError
        Shapes differ, an image is not 2-D, contains NaN/inf, or the reference field is
        constant (nothing to normalise against); the message names ``name``.
    """
    ref = check_image(reference, name, what="reference")
    rec = check_image(reconstruction, name, what="reconstruction")
    if rec.shape != ref.shape:
        raise InputError(f"{name}: reconstruction shape {rec.shape} != reference shape {ref.shape}")
    msk = None
    if mask is not None:
        msk = np.asarray(mask)
        if msk.shape != ref.shape:
            raise InputError(f"{name}: mask shape {msk.shape} != field shape {ref.shape}")
    grid = window_grid(ref.shape, window)
    lo, hi = float(ref.min()), float(ref.max())
    if hi <= lo:
        # metric.to_uint8 would map both images to 0 and hide anything the reconstruction
        # invented: a blank reference field is bad input, not a perfect score.
        raise InputError(
            f"{name}: reference field is constant ({lo:g}); PhIRM needs a "
            "reference with contrast to normalise against"
        )
    ref8 = metric.to_uint8(ref, lo=lo, hi=hi)
    rec8 = metric.to_uint8(rec, lo=lo, hi=hi)

    names = KERNEL_VARIABLES if msk is not None else KERNEL_VARIABLES[:-1]
    out = {k: np.empty(len(grid), dtype=np.float64) for k in names}
    area = float(grid.height * grid.width)
    for i, sl in enumerate(grid.slices()):
        a = np.ascontiguousarray(ref8[sl])
        b = np.ascontiguousarray(rec8[sl])
        ca = metric.components(a, params)
        # an untouched window (inpainting changes hole pixels only) has the same components
        cb = ca if np.array_equal(a, b) else metric.components(b, params)
        for c in COMPONENTS:
            out[f"ref_{c}"][i] = getattr(ca, c)
            out[f"rec_{c}"][i] = getattr(cb, c)
        if msk is not None:
            out["masked_fraction"][i] = np.count_nonzero(msk[sl]) / area
    out["psnr"], out["ssim"] = metric.window_psnr_ssim(
        ref8, rec8, grid.y0, grid.x0, grid.height, grid.width
    )
    return out
