"""Inpainting one 2160x2160 field with sparse artefacts: our tile-skipping stitcher
(`phirm_scale.inpaint.inpaint_field`) against the plain alternatives in the same run.

* classical (Telea): ours vs ``cv2.inpaint`` on the whole field at once;
* learned (EdgeConnect, narrow untrained network on CPU: the cost per tile is what matters):
  ours (only tiles with a hole) vs running the network on every tile of the grid.

Prints one JSON object.  Usage: python benchmarks/bench_inpaint.py [--artefacts 0.01]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def timed(fn, repeat=1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    import cv2
    import torch

    from phirm_scale.inpaint import hole_tiles, inpaint_field, overlap_tile_starts
    from phirm_scale.models import get_model
    from phirm_scale.synthetic import make_field

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=2160)
    ap.add_argument("--artefacts", type=float, default=0.01, help="artefact area fraction")
    ap.add_argument("--width", type=int, default=16, help="EdgeConnect base channels")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    data, mask = make_field(
        ("A", "01", 0), size=(args.size, args.size), seed=1, artefacts=args.artefacts
    )
    field = data[0]
    hole = mask.astype(np.uint8)
    grid = len(overlap_tile_starts(args.size, args.tile, args.overlap)) ** 2
    with_holes = len(hole_tiles(hole, args.tile, args.overlap))

    telea = get_model("telea")
    t_ours_telea, ours = timed(
        lambda: inpaint_field(field, hole, telea, tile=args.tile, overlap=args.overlap), repeat=2
    )
    t_cv2, plain = timed(lambda: cv2.inpaint(field, hole, 3, cv2.INPAINT_TELEA), repeat=2)
    assert np.array_equal(ours[hole == 0], field[hole == 0])

    net = get_model("edgeconnect", width=args.width, device="cpu", seed=0)
    net(
        np.zeros((1, 1, args.tile, args.tile), np.float32),
        np.zeros((1, 1, args.tile, args.tile), np.float32),
    )  # warm-up
    t_ours_net, _ = timed(
        lambda: inpaint_field(
            field, hole, net, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size
        )
    )
    every = np.ones_like(hole)  # no tile skipped
    every[0, 0] = 0

    def all_tiles():
        ys = overlap_tile_starts(args.size, args.tile, args.overlap)
        tiles = np.stack([field[y : y + args.tile, x : x + args.tile] for y in ys for x in ys])
        t = (tiles.astype(np.float32) / 65535.0)[:, None]
        m = np.stack([hole[y : y + args.tile, x : x + args.tile] for y in ys for x in ys])[
            :, None
        ].astype(np.float32)
        for b in range(0, len(t), args.batch_size):
            net(t[b : b + args.batch_size], m[b : b + args.batch_size])

    t_all_net, _ = timed(all_tiles)
    res = {
        "benchmark": "inpaint_field",
        "field": f"{args.size}x{args.size} uint16, synthetic nuclei + fibres/dust",
        "hole_fraction": round(float(hole.mean()), 4),
        "tiles_in_grid": grid,
        "tiles_with_holes": with_holes,
        "seconds": {
            "telea_ours_whole_field_path": round(t_ours_telea, 3),
            "telea_cv2_whole_field": round(t_cv2, 3),
            "edgeconnect_ours_skip_clean_tiles": round(t_ours_net, 2),
            "edgeconnect_every_tile": round(t_all_net, 2),
        },
        "ratios": {
            "telea_whole_field_over_ours": round(t_cv2 / t_ours_telea, 2),
            "edgeconnect_every_tile_over_ours": round(t_all_net / t_ours_net, 2),
        },
        "telea_mean_abs_diff_ours_vs_whole_field_in_holes": round(
            float(np.abs(ours[hole > 0].astype(float) - plain[hole > 0].astype(float)).mean()), 1
        ),
        "edgeconnect_width": args.width,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
