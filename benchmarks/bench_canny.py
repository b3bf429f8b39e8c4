"""Torch Canny (phirm_scale.models.canny) per batch of real tiles: launches and time.

On a GPU the torch Canny of a batch costs mostly kernel launches (each a few microseconds of
host time), not arithmetic, so this counts them: the tensor operations that compute (view
operations such as slices left out) in one call, from torch's profiler, on any device. It
also times one call per hysteresis implementation on this machine's device ('pool', 'dilate',
'label') against the plain alternative, ``skimage.feature.canny`` tile by tile on the CPU,
and checks that all give the same edges.

Prints one JSON object. Usage::

    python benchmarks/bench_canny.py [--tiles 64] [--size 256] [--real-tiles PATH] [--device D]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: profiler events that only make views or allocate (no kernel of their own)
VIEW_OPS = frozenset(
    "aten::" + n
    for n in (
        "slice narrow as_strided alias expand view unsqueeze squeeze select detach lift_fresh "
        "empty empty_like empty_strided resize_ split chunk _reshape_alias reshape result_type "
        "to _to_copy item is_nonzero _local_scalar_dense"
    ).split()
)


def compute_ops(fn) -> int:
    """Number of computing tensor operations (leaf profiler events that are not views)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()

    def counts(e):
        return e.name.startswith("aten::") and e.name not in VIEW_OPS

    return sum(1 for e in prof.events() if counts(e) and not any(counts(c) for c in e.cpu_children))


def timed(fn, device, repeats: int) -> float:
    """Median seconds of ``fn()`` (synchronised on CUDA), after one warm-up call."""
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fn()
    sync()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return float(np.median(out))


def main() -> int:
    import torch
    from skimage.feature import canny as sk_canny

    from benchmarks.bench_gpu import real_tiles
    from phirm_scale.masks._generators import parse_mask_spec, sample_masks
    from phirm_scale.models.canny import HYSTERESIS, canny

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiles", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--sigma", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--real-tiles", default=None, help="folder of BBBC039 .tif or an .npz")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    x = real_tiles(args.real_tiles, args.size, args.tiles)
    source = "BBBC039 tiles"
    if x is None:
        from skimage.filters import gaussian

        rng = np.random.default_rng(0)
        x = np.stack([gaussian(rng.random((args.size, args.size)), 2) for _ in range(args.tiles)])
        x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32)[:, None]
        source = "synthetic (no BBBC039 data found)"
    holes = sample_masks(
        parse_mask_spec("mix"), len(x), (args.size, args.size), rng=np.random.default_rng(0)
    )[:, None]
    known = holes == 0
    t = torch.from_numpy(x).to(args.device)
    k = torch.from_numpy(known).to(args.device)
    res: dict = {
        "benchmark": "bench_canny",
        "device": torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "tiles": len(x),
        "size": args.size,
        "source": source,
        "sigma": args.sigma,
    }
    t0 = time.perf_counter()
    expect = np.stack(
        [sk_canny(x[i, 0], sigma=args.sigma, mask=known[i, 0]) for i in range(len(x))]
    )
    res["skimage_tile_by_tile_s"] = round(time.perf_counter() - t0, 4)
    res["edge_pixels"] = int(expect.sum())
    res["hysteresis"] = {}
    for hyst in HYSTERESIS:

        def run(hyst=hyst):
            return canny(t, args.sigma, mask=k, hysteresis=hyst)

        got = run().cpu().numpy()[:, 0]
        res["hysteresis"][hyst] = {
            "compute_ops_per_call": compute_ops(run),
            "seconds_per_call": round(timed(run, args.device, args.repeats), 4),
            "pixels_differing_from_skimage": int((got != expect).sum()),
        }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
