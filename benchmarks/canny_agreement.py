"""Torch Canny (phirm_scale.models.canny) against skimage.feature.canny on real BBBC039 tiles.

Per tile: the edge maps of the known pixels (holes from the training mask mix) with either
implementation, and the PhIRM of EdgeConnect outputs on the same holes with either edge map.
Prints one JSON object. Usage: python benchmarks/canny_agreement.py [--tiles 48] [--width 16]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main():
    import torch
    from skimage.feature import canny as sk_canny

    from benchmarks.bench_gpu import real_tiles
    from phirm_scale.masks._generators import parse_mask_spec, sample_masks
    from phirm_scale.models.canny import canny
    from phirm_scale.models.registry import get_model
    from phirm_scale.models.train import validation_scores

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiles", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--width", type=int, default=16, help="EdgeConnect width (untrained)")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--real-tiles", default=None)
    args = ap.parse_args()
    x = real_tiles(args.real_tiles, args.size, args.tiles)
    if x is None:
        raise SystemExit("error: no real BBBC039 tiles (../shared/data) found")
    holes = sample_masks(
        parse_mask_spec("mix"), len(x), (args.size, args.size), rng=np.random.default_rng(0)
    )[:, None]
    known = holes == 0
    res = {"tiles": len(x), "size": args.size, "sigma": 2.0}
    ref = np.stack(
        [
            sk_canny(x[i, 0].astype(np.float64), sigma=2.0, mask=known[i, 0]) & known[i, 0]
            for i in range(len(x))
        ]
    )[:, None]
    for name, dt in (("float32", torch.float32), ("float64", torch.float64)):
        for hyst in ("label", "dilate"):
            t0 = time.perf_counter()
            e = (
                canny(
                    torch.from_numpy(x),
                    2.0,
                    mask=torch.from_numpy(known),
                    dtype=dt,
                    hysteresis=hyst,
                ).numpy()
                & known
            )
            res[f"{name}_{hyst}"] = {
                "pixel_agreement": float((e == ref).mean()),
                "differing_pixels": int((e != ref).sum()),
                "edge_pixels_skimage": int(ref.sum()),
                "seconds": round(time.perf_counter() - t0, 2),
            }
    kw = dict(device="cpu", width=args.width, blocks=args.blocks, batch_size=8)
    xs = np.where(known, x, 0).astype(np.float32)
    s_t = validation_scores(
        get_model("edgeconnect", canny="torch", **kw), xs, holes.astype(np.float32)
    )
    s_s = validation_scores(
        get_model("edgeconnect", canny="skimage", **kw), xs, holes.astype(np.float32)
    )
    res["edgeconnect"] = {
        "width": args.width,
        "blocks": args.blocks,
        "trained": False,
        "phirm_torch_canny": s_t["phirm"],
        "phirm_skimage_canny": s_s["phirm"],
        "phirm_diff": s_t["phirm"] - s_s["phirm"],
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
