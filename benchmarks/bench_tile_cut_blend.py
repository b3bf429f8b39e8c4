"""Cutting and blending the hole tiles of one field: the vectorised path of
:mod:`phirm_scale.inpaint` (``cut_hole_tiles`` / ``blend_hole_tiles``) against the plain
per-tile loop it replaced (the code of ``inpaint._tiled`` before, copied below), in the same
run, on 2160x2160 uint16 fields with about 1 %, 2 % and 20 % holes.

This is the CPU work a GPU worker does per field around the network (the model itself is
left out: a fixed fill stands in for it). Both paths must give the same hole values; the
largest difference is reported (0 means bit for bit).

Prints one JSON object. Usage: python benchmarks/bench_tile_cut_blend.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def loop_cut(image, hole, tile, overlap):
    """The per-tile cut as it was: one slice, min/max and normalisation per tile."""
    from phirm_scale.inpaint import hole_tiles

    fh, fw = image.shape
    ph, pw = max(0, tile - fh), max(0, tile - fw)
    img = image.astype(np.float64)
    hl = hole
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)), mode="symmetric")
        hl = np.pad(hole, ((0, ph), (0, pw)), mode="symmetric")
    known = img[~hl]
    field_lo, field_hi = float(known.min()), float(known.max())
    starts = hole_tiles(hl, tile, overlap)
    xs = np.empty((len(starts), 1, tile, tile), np.float32)
    ms = np.empty((len(starts), 1, tile, tile), np.float32)
    ranges = []
    for i, (y, x) in enumerate(starts):
        t = img[y : y + tile, x : x + tile]
        h = hl[y : y + tile, x : x + tile]
        k = t[~h]
        lo, hi = (float(k.min()), float(k.max())) if k.size else (field_lo, field_hi)
        if hi <= lo:
            hi = lo + 1.0
        norm = np.clip((t - lo) / (hi - lo), 0.0, 1.0)
        norm[h] = 0.0
        xs[i, 0] = norm
        ms[i, 0] = h
        ranges.append((lo, hi))
    return starts, xs, ms, ranges, img.shape


def loop_blend(starts, pred, ranges, padded_shape, hole, tile, overlap):
    """The per-tile blend as it was: weighted tiles added into two field-sized arrays."""
    from phirm_scale.inpaint import blend_weight

    fh, fw = hole.shape
    acc = np.zeros(padded_shape, dtype=np.float64)
    wsum = np.zeros(padded_shape, dtype=np.float64)
    weight = blend_weight(tile, overlap)
    pred = np.asarray(pred, dtype=np.float64)
    for i, (y, x) in enumerate(starts):
        lo, hi = ranges[i]
        acc[y : y + tile, x : x + tile] += weight * (pred[i, 0] * (hi - lo) + lo)
        wsum[y : y + tile, x : x + tile] += weight
    return acc[:fh, :fw][hole] / wsum[:fh, :fw][hole]


def fill(images, masks):
    """Stands in for the model: a fixed value in the holes."""
    return np.where(masks > 0, np.float32(0.5), images)


def main():
    from phirm_scale.inpaint import blend_hole_tiles, cut_hole_tiles
    from phirm_scale.synthetic import make_field

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=2160)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5, help="best of N per measurement")
    ap.add_argument(
        "--artefacts",
        type=float,
        nargs="+",
        default=[0.01, 0.02, 0.2],
        help="artefact densities of the synthetic fields (about the hole fraction)",
    )
    args = ap.parse_args()
    tile, overlap, repeat = args.tile, args.overlap, args.repeat

    rows = []
    for density in args.artefacts:
        data, mask = make_field(
            ("A", "01", 0), size=(args.size, args.size), seed=1, artefacts=density
        )
        image, hole = data[0], mask > 0
        # the plain loop and the vectorised path alternate, so load on a shared machine hits both
        t_loop_cut = t_vec_cut = t_loop_blend = t_vec_blend = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            starts, xs, ms, ranges, padded = loop_cut(image, hole, tile, overlap)
            t1 = time.perf_counter()
            tiles = cut_hole_tiles(image, hole, tile, overlap)
            t2 = time.perf_counter()
            pred = fill(xs, ms)
            t3 = time.perf_counter()
            old = loop_blend(starts, pred, ranges, padded, hole, tile, overlap)
            t4 = time.perf_counter()
            new = blend_hole_tiles(tiles, pred, hole, tile, overlap)
            t5 = time.perf_counter()
            t_loop_cut, t_vec_cut = min(t_loop_cut, t1 - t0), min(t_vec_cut, t2 - t1)
            t_loop_blend, t_vec_blend = min(t_loop_blend, t4 - t3), min(t_vec_blend, t5 - t4)
        same_cut = (
            np.array_equal(tiles.images, xs)
            and np.array_equal(tiles.masks, ms)
            and [tuple(s) for s in tiles.starts.tolist()] == [tuple(s) for s in starts]
        )
        loop_total, vec_total = t_loop_cut + t_loop_blend, t_vec_cut + t_vec_blend
        rows.append(
            {
                "hole_fraction": round(float(hole.mean()), 4),
                "hole_tiles": len(starts),
                "ms": {
                    "loop_cut": round(t_loop_cut * 1e3, 2),
                    "vectorised_cut": round(t_vec_cut * 1e3, 2),
                    "loop_blend": round(t_loop_blend * 1e3, 2),
                    "vectorised_blend": round(t_vec_blend * 1e3, 2),
                    "loop_cut_blend": round(loop_total * 1e3, 2),
                    "vectorised_cut_blend": round(vec_total * 1e3, 2),
                },
                "speedup_cut_blend": round(loop_total / vec_total, 2),
                "cut_identical": bool(same_cut),
                "blend_max_abs_diff": float(np.abs(new - old).max()) if old.size else 0.0,
            }
        )
    res = {
        "benchmark": "tile_cut_blend",
        "field": f"{args.size}x{args.size} uint16 (phirm_scale.synthetic.make_field, seed 1)",
        "tile": tile,
        "overlap": overlap,
        "timing": f"best of {repeat}, loop and vectorised alternating",
        "fields": rows,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
