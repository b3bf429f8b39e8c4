"""Canny edges in torch: batched, on any device, following ``skimage.feature.canny``.

The steps are skimage's (0.19 and later), so the two agree pixel for pixel up to floating
point ties (docs/models.md gives the measured agreement on BBBC039 tiles):

1. Gaussian smoothing (``scipy.ndimage.gaussian_filter``, truncate 4, zeros outside the image)
   of the *known* pixels, divided by the smoothed mask (skimage's bleed-over compensation);
   the mask is eroded by one pixel (3x3, border counted as masked).
2. Sobel gradients (``ndimage.sobel``, reflect border) and their magnitude.
3. Non-maximum suppression with bilinear interpolation between the two neighbours along the
   gradient (skimage's ``_nonmaximum_suppression_bilinear``), keeping magnitudes >= low.
4. Hysteresis: low pixels 8-connected to a pixel >= high, by repeated 3x3 dilation inside
   the low mask until nothing changes (a max-pool per step on a GPU, or byte-wise
   ORs), or one ``scipy.ndimage.label`` on the host.

On a GPU the cost is mostly kernel launches, not arithmetic: the steps are written with as few
tensor operations as the arithmetic allows (about 300 launches for a batch whose hysteresis
takes 64 steps; benchmarks/bench_canny.py counts them).

Images are ``(N, 1, H, W)`` (or ``(H, W)``) floats; thresholds are absolute (skimage's
defaults for float images, 0.1 and 0.2). Never imports Dask or Zarr.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention

__all__ = ["HYSTERESIS", "canny", "gaussian_kernel"]

#: the hysteresis implementations of :func:`canny` (all give the same edges)
HYSTERESIS = ("pool", "dilate", "label")


def gaussian_kernel(
    sigma: float, truncate: float = 4.0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Return scipy.ndimage's 1-D Gaussian: radius ``int(truncate * sigma + 0.5)``, sums to 1.

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels.
    truncate : float
        Radius in standard deviations.
    dtype : torch.dtype
        Of the result (computed in float64).

    Returns
    -------
    torch.Tensor
        The 1-D kernel, ``2 * radius + 1`` taps.
    """
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return (k / k.sum()).to(dtype)


def _sep(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Correlate separably with a symmetric 1-D kernel, zeros outside the image.

    Plain multiply-adds of shifted views, left to right (no convolution kernel: no TF32 on
    GPUs, the same arithmetic on every device). Each tap is three tensor operations (narrow,
    multiply, add): on a GPU the cost of this function is mostly their launches.
    """
    r = (k.numel() - 1) // 2
    h, w = x.shape[-2:]
    weights = [float(v) for v in k.tolist()]
    p = F.pad(x, (0, 0, r, r))
    y = weights[0] * p.narrow(-2, 0, h)
    for i in range(1, 2 * r + 1):
        y = y + weights[i] * p.narrow(-2, i, h)
    p = F.pad(y, (r, r, 0, 0))
    out = weights[0] * p.narrow(-1, 0, w)
    for i in range(1, 2 * r + 1):
        out = out + weights[i] * p.narrow(-1, i, w)
    return out


def _dilate3(b: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of a bool (N, 1, H, W) tensor: ORs of shifted views, per axis.

    Fast on the CPU (byte-wise); :func:`_dilate3_pool` is the GPU's version (fewer launches).
    """
    h, w = b.shape[-2:]
    p = F.pad(b, (1, 1, 0, 0))
    r = p.narrow(-1, 0, w) | p.narrow(-1, 1, w) | p.narrow(-1, 2, w)
    p = F.pad(r, (0, 0, 1, 1))
    return p.narrow(-2, 0, h) | p.narrow(-2, 1, h) | p.narrow(-2, 2, h)


def _dilate3_pool(f: torch.Tensor) -> torch.Tensor:
    """3x3 dilation of a 0/1 float (N, 1, H, W) tensor: one max-pool, exact on 0 and 1.

    One kernel launch instead of :func:`_dilate3`'s six: on a GPU the hysteresis is bound by
    launches, not arithmetic (on the CPU this max-pool is the slower of the two).
    """
    return F.max_pool2d(f, 3, stride=1, padding=1)


@torch.no_grad()
def canny(
    images: torch.Tensor,
    sigma: float = 2.0,
    low_threshold: float = 0.1,
    high_threshold: float = 0.2,
    mask: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
    check_every: int = 8,
    hysteresis: str | None = None,
) -> torch.Tensor:
    """Binary Canny edge maps of a batch.

    Parameters
    ----------
    images : (N, 1, H, W) or (H, W) tensor
        Intensities (any float dtype; computed in ``dtype``).
    sigma : float
        Gaussian standard deviation.
    low_threshold, high_threshold : float
        Hysteresis thresholds on the gradient magnitude.
    mask : tensor of the images' shape, optional
        Nonzero = pixel to use (skimage's ``mask``): edges are found among known pixels only.
    dtype : torch dtype, optional
        Working precision; default float32 (float64 reproduces skimage's float64 arithmetic).
    check_every : int
        Dilation steps between convergence checks of the hysteresis (one host sync each).
    hysteresis : {'pool', 'dilate', 'label'}, optional
        'pool': repeated 3x3 dilation on the device, one max-pool per step (default on CUDA:
        fewest kernel launches); 'dilate': the same with byte-wise ORs (fast on the CPU,
        six launches per step); 'label': ``scipy.ndimage.label`` on the host (default on the
        CPU, where it is fastest). All three give the same edges.

    Returns
    -------
    bool tensor of the images' shape.
    """
    if high_threshold < low_threshold:
        raise ValueError("low_threshold should be lower than high_threshold")
    squeeze = images.dim() == 2
    x = images[None, None] if squeeze else images
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W) or (H, W); got {tuple(images.shape)}")
    dtype = dtype or torch.float32
    x = x.to(dtype)
    if mask is None:
        m = torch.ones_like(x)
    else:
        m = (mask[None, None] if squeeze else mask).to(device=x.device) != 0
        m = m.to(dtype)
    n, _, h, w = x.shape
    # 1. smoothing with bleed-over compensation (image and mask smoothed in one pass); 3x3
    # erosion with a masked border
    k = gaussian_kernel(sigma, dtype=torch.float64)
    eps = torch.finfo(dtype).eps
    both = _sep(torch.cat((x * m, m), 1), k)
    smoothed = both.narrow(1, 0, 1) / (both.narrow(1, 1, 1) + eps)
    eroded = 1 - F.max_pool2d(F.pad(1 - m, (1, 1, 1, 1), value=1.0), 3, stride=1)
    # 2. Sobel (ndimage: derivative [-1, 0, 1] along the axis, [1, 2, 1] across; reflect)
    p = F.pad(smoothed, (1, 1, 1, 1), mode="replicate")
    d = p.narrow(2, 2, h) - p.narrow(2, 0, h)  # along rows (axis 0)
    isobel = d.narrow(3, 0, w) + 2 * d.narrow(3, 1, w) + d.narrow(3, 2, w)
    d = p.narrow(3, 2, w) - p.narrow(3, 0, w)  # along columns (axis 1)
    jsobel = d.narrow(2, 0, h) + 2 * d.narrow(2, 1, h) + d.narrow(2, 2, h)
    mag = torch.sqrt(isobel * isobel + jsobel * jsobel)
    # 3. non-maximum suppression, bilinear between the two neighbours along the gradient
    mp = F.pad(mag, (1, 1, 1, 1))

    def nb(dy: int, dx: int) -> torch.Tensor:
        return mp.narrow(2, 1 + dy, h).narrow(3, 1 + dx, w)

    ai, aj = isobel.abs(), jsobel.abs()
    # gradient quadrants 1 and 3 (skimage's first case) vs 2 and 4
    cond1 = (isobel <= 0) == (jsobel <= 0)
    steep = ai > aj
    flat2 = ai < aj
    # weight |j|/|i| where |i| dominates, |i|/|j| otherwise (0/0 = NaN fails every test; where
    # |i| == |j| both are 1, so one test serves both cases)
    wgt = torch.where(steep, aj / ai, ai / aj)
    # cond1: steep -> (+1,0),(+1,+1) / (-1,0),(-1,-1); flat -> (0,+1),(+1,+1) / (0,-1),(-1,-1)
    # cond2: flat (|i| < |j|) -> (0,+1),(-1,+1) / (0,-1),(+1,-1);
    #        else -> (-1,0),(-1,+1) / (+1,0),(+1,-1)
    n1p = torch.where(
        cond1, torch.where(steep, nb(1, 0), nb(0, 1)), torch.where(flat2, nb(0, 1), nb(-1, 0))
    )
    n2p = torch.where(cond1, nb(1, 1), nb(-1, 1))
    n1m = torch.where(
        cond1, torch.where(steep, nb(-1, 0), nb(0, -1)), torch.where(flat2, nb(0, -1), nb(1, 0))
    )
    n2m = torch.where(cond1, nb(-1, -1), nb(1, -1))
    rest = 1.0 - wgt
    c_plus = (n2p * wgt + n1p * rest) <= mag
    c_minus = (n2m * wgt + n1m * rest) <= mag
    low = low_threshold if low_threshold != 0 else 1e-14
    keep = (eroded > 0) & (mag >= low) & c_plus & c_minus
    # 4. hysteresis: grow the strong pixels inside the weak ones
    low_mask = keep
    edges = keep & (mag >= high_threshold)
    if hysteresis is None:
        hysteresis = "pool" if x.is_cuda else "label"
    if hysteresis not in HYSTERESIS:
        raise ValueError(f"hysteresis must be one of {', '.join(HYSTERESIS)}; got {hysteresis!r}")
    if hysteresis == "label":
        return _hysteresis_scipy(low_mask, edges, squeeze)
    check_every = max(1, int(check_every))
    limit = h * w  # a path can be at most this long
    if hysteresis == "pool":  # 0/1 floats: a step is one max-pool and one product
        lowf = low_mask.to(dtype)
        cur = edges.to(dtype)

        def step(c: torch.Tensor) -> torch.Tensor:
            return _dilate3_pool(c) * lowf

    else:
        cur = edges

        def step(c: torch.Tensor) -> torch.Tensor:
            return _dilate3(c) & low_mask

    steps = 0
    while steps < limit:
        prev = cur
        for _ in range(check_every):
            cur = step(cur)
        steps += check_every
        if torch.equal(cur, prev):
            break
    out = cur != 0
    return out[0, 0] if squeeze else out


def _hysteresis_scipy(low_mask: torch.Tensor, strong: torch.Tensor, squeeze: bool) -> torch.Tensor:
    """Run the hysteresis on the CPU with one ``ndimage.label`` over the batch.

    Components are 8-connected within each image, never across images; those that hold a
    strong pixel are kept.
    """
    import numpy as np
    from scipy import ndimage as ndi

    low = low_mask[:, 0].numpy()
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    labels, count = ndi.label(low, structure)
    good = np.zeros(count + 1, bool)
    good[np.unique(labels[strong[:, 0].numpy()])] = True
    good[0] = False
    out = torch.from_numpy(good[labels])[:, None].to(low_mask.device)
    return out[0, 0] if squeeze else out
