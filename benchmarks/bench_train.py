"""Candidates for a CPU-trained shipped model (issue 19): training and inference speed.

For each candidate (model, width, blocks) this measures, in one run:

* **training tiles/s**: full GAN steps (``Trainer.train_step``: discriminator then generator
  update, the per-model losses of ``phirm-scale train``) on batches exactly as ``train`` makes
  them (``StepBatches`` of a tile store, ``mix`` masks, ``dihedral`` augmentation, the model's
  own ``prepare`` incl. EdgeConnect's Canny), after one warm-up step; on the CPU and, when
  present, on CUDA;
* **inference s per field**: ``inpaint_field`` of one 2160x2160 field (tiles of 256 px with
  the stage's 32 px overlap, only tiles with a hole) at 1 % and 5 % artefact area, against
  Telea (``cv2.inpaint`` through the same stitcher) in the same run;
* generator parameters and the fp16 size of the generator alone (what would be shipped).

The network weights are untrained (the cost per step does not depend on them). Tiles come from
``--tiles`` (a tile store of ``phirm-scale tiles``) or, by default, from a small synthetic
plate made here. Prints one JSON object.

Usage::

    python benchmarks/bench_train.py [--tiles TILES.zarr] [--threads 1] [--steps 3]
        [--candidates edgeconnect:16:8,deepfill-v2:16] [--no-inference]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CANDIDATES = "edgeconnect:16:8,edgeconnect:24:4,deepfill-v2:16,deepfill-v2:24"


def parse_candidates(text: str) -> list[dict[str, Any]]:
    """``model:width[:blocks]`` comma-separated -> list of config dicts."""
    out = []
    for item in text.split(","):
        parts = item.strip().split(":")
        cfg: dict[str, Any] = {"model": parts[0], "width": int(parts[1])}
        if len(parts) > 2:
            cfg["blocks"] = int(parts[2])
        out.append(cfg)
    return out


def label(c: dict[str, Any]) -> str:
    return ":".join(str(c[k]) for k in ("model", "width", "blocks") if k in c)


def synthetic_store(tmp: Path) -> Path:
    from phirm_scale.synthetic import make_plate
    from phirm_scale.tiles import write_tiles

    plate = make_plate(tmp / "p.ome.zarr", rows=2, columns=3, size=512, artefacts=0.03, seed=0)
    write_tiles(plate, tmp / "t.zarr", channel="DAPI_clean", size=256, label="artefacts_true")
    return tmp / "t.zarr"


def train_speed(
    cand: dict[str, Any], tiles: Path, *, device: str, steps: int, batch: int
) -> dict[str, Any]:
    import torch

    from phirm_scale.masks import parse_mask_spec
    from phirm_scale.models.registry import build_model, default_config
    from phirm_scale.models.training.data import StepBatches, TileSource, artefact_pool, open_split
    from phirm_scale.models.training.trainer import make_trainer

    name = cand["model"]
    cfg = default_config(name, **{k: v for k, v in cand.items() if k != "model"})
    model = build_model(name, cfg, device)
    trainer = make_trainer(model, lr=1e-4, amp="auto" if device != "cpu" else "off")
    ts = open_split(tiles, "train")
    source = TileSource(ts)
    sb = StepBatches(
        source,
        parse_mask_spec("mix"),
        batch_size=batch,
        seed=0,
        pool=artefact_pool(ts),
        augment="dihedral",
    )
    gen = model.generator
    n_params = sum(p.numel() for p in gen.parameters())
    times = []
    for j in range(steps + 1):
        images, holes = sb.load(0, j % sb.steps_per_epoch)
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        b = model.prepare(images, holes != 0, train=True)
        trainer.train_step(b)
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times[1:]))
    return {
        "generator_params": int(n_params),
        "fp16_generator_mb": round(n_params * 2 / 1e6, 2),
        "batch": batch,
        "steps_timed": steps,
        "s_per_step": round(step_s, 3),
        "train_tiles_per_s": round(batch / step_s, 3),
        "tiles_per_cpu_hour": int(3600 * batch / step_s),
    }


def field_and_mask(size: int, frac: float) -> tuple[np.ndarray, np.ndarray]:
    from phirm_scale.synthetic import make_field

    data, mask = make_field(("A", 1, 0), size=(size, size), seed=0, artefacts=frac)
    return data[0], mask


def infer_speed(model: Any, field: np.ndarray, mask: np.ndarray, batch: int) -> float:
    from phirm_scale.inpaint import inpaint_field

    t0 = time.perf_counter()
    inpaint_field(field, mask, model, tile=256, overlap=32, batch_size=batch)
    return time.perf_counter() - t0


def main() -> None:
    import torch

    from phirm_scale.models import get_model
    from phirm_scale.models.registry import build_model, default_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=Path, default=None)
    ap.add_argument("--candidates", default=DEFAULT_CANDIDATES)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--field-size", type=int, default=2160)
    ap.add_argument("--holes", default="0.01,0.05")
    ap.add_argument("--no-inference", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cands = parse_candidates(args.candidates)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    result: dict[str, Any] = {
        "benchmark": "bench_train",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "loadavg_start": list(os.getloadavg()),
        },
        "tile_size": 256,
        "masks": "mix",
        "augment": "dihedral",
        "training": {},
        "inference_s_per_field": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tiles = args.tiles if args.tiles is not None else synthetic_store(Path(tmp))
        result["tiles"] = str(tiles)
        for dev in devices:
            for c in cands:
                result["training"].setdefault(label(c), {})[dev] = train_speed(
                    c, tiles, device=dev, steps=args.steps, batch=args.batch_size
                )
    if not args.no_inference:
        fields = {h: field_and_mask(args.field_size, float(h)) for h in args.holes.split(",")}
        for h, (field, mask) in fields.items():
            row: dict[str, Any] = {"hole_fraction": round(float(mask.mean()), 4)}
            row["telea"] = round(infer_speed(get_model("telea"), field, mask, 16), 3)
            for c in cands:
                name = c["model"]
                cfg = default_config(name, **{k: v for k, v in c.items() if k != "model"})
                m = build_model(name, cfg, "cpu").with_options(batch_size=8)
                row[label(c)] = round(infer_speed(m, field, mask, 8), 3)
            result["inference_s_per_field"][f"{args.field_size}px_{h}"] = row
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
