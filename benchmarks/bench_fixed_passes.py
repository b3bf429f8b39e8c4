"""What one forward-pass shape per view costs (issue 20): a learned model's result for a tile
must not depend on the other tiles of its batch, so every forward pass of a view has one fixed
shape (``forward_size``): the view's batch size, a call's last pass padded.

Compared in the same run, on real BBBC039 tiles with square holes (a field's worth of hole
tiles that does not fill its last pass), per model, with passes of 8:

* ``fixed_padded`` (now): 8 per pass, the last padded to 8;
* ``batched`` (before): 8 per pass, the last pass only as big as what is left (its shape, and
  so its kernels, depended on the call: oneDNN picks kernels by shape and NNPACK takes over
  from 16 tiles, which moved results by float rounding);
* ``per_tile``: one tile per pass (a fixed shape too, no padding).

It also checks that the fixed results are the same bit for bit whatever order or call size the
tiles come in (``grouping_independent``) and how far the old results were
(``batched_max_abs_diff``).

Prints one JSON object. Usage: python benchmarks/bench_fixed_passes.py [--tiles 20] [--width 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _tiles(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from _fields import real_fields_u8

    fields, _ = real_fields_u8(3, size=520)
    rng = np.random.default_rng(0)
    x = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        f = fields[i % len(fields)].astype(np.float32)
        y0, x0 = rng.integers(0, f.shape[0] - size, 2)
        t = f[y0 : y0 + size, x0 : x0 + size]
        x[i, 0] = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    h = np.zeros_like(x)
    for i in range(n):
        s = int(rng.integers(size // 5, size // 2))
        y0, x0 = rng.integers(0, size - s, 2)
        h[i, 0, y0 : y0 + s, x0 : x0 + s] = 1
    return x, h


def _best(fn, repeat: int) -> tuple[float, np.ndarray]:
    best, got = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = fn()
        best = min(best, time.perf_counter() - t0)
    return best, got


def _measure(model, x: np.ndarray, h: np.ndarray, repeat: int) -> dict:
    n = len(x)
    full = (n // 8) * 8
    rest = model.with_options(batch_size=max(1, n - full))
    one = model.with_options(batch_size=1)
    for m, k in ((model, 8), (rest, n - full), (one, 1)):  # warm-up of each shape
        m(x[: max(k, 1)], h[: max(k, 1)])

    def old() -> np.ndarray:  # the last pass only as big as what is left
        parts = [model(x[:full], h[:full])]
        if full < n:
            parts.append(rest(x[full:], h[full:]))
        return np.concatenate(parts)

    res: dict = {}
    res["fixed_padded_s"], fixed = _best(lambda: model(x, h), repeat)
    res["batched_s"], batched = _best(old, repeat)
    res["per_tile_s"], _ = _best(lambda: one(x, h), repeat)
    res["fixed_padded_tiles_run"] = -(-n // 8) * 8
    res["fixed_padded_vs_batched"] = res["fixed_padded_s"] / res["batched_s"]
    res["per_tile_vs_batched"] = res["per_tile_s"] / res["batched_s"]
    order = np.random.default_rng(1).permutation(n)
    again = np.empty_like(fixed)
    again[order] = model(x[order], h[order], batch_size=7)
    res["grouping_independent"] = bool(np.array_equal(again, fixed))
    res["batched_max_abs_diff"] = float(np.abs(batched - fixed).max())
    return res


def main() -> None:
    import torch

    from phirm_scale.models import get_model

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiles", type=int, default=20, help="hole tiles (default 20: 2 x 8 + 4)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--width", type=int, default=16, help="network width (default 16)")
    ap.add_argument("--models", default="edgeconnect,deepfill-v2")
    ap.add_argument("--repeat", type=int, default=2, help="best of N (default 2)")
    args = ap.parse_args()
    x, h = _tiles(args.tiles, args.size)
    out: dict = {
        "benchmark": "fixed_passes",
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
        },
        "tiles": args.tiles,
        "tile": args.size,
        "width": args.width,
        "models": {},
    }
    for name in args.models.split(","):
        model = get_model(name, device="cpu", width=args.width, batch_size=8)
        out["models"][name] = _measure(model, x, h, args.repeat)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
