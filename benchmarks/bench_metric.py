"""PhIRM components per 2160x2160 field: our vectorised kernel against a loop-per-component
implementation of the published algorithm (and of the paper's), on the same images.

Prints one JSON object.  Usage: python benchmarks/bench_metric.py [--fields N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2
from _fields import real_fields_u8

from phirm_scale.metric import PhirmParams, components
from phirm_scale.reference_impl import paper_components, published_components


def per_field_ms(fn, fields, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for f in fields:
            fn(f)
        best = min(best, (time.perf_counter() - t0) / len(fields))
    return best * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fields", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=2160)
    args = ap.parse_args()
    cv2.setNumThreads(1)  # per core
    fields, source = real_fields_u8(args.fields, args.size)
    paper, ref = PhirmParams(), PhirmParams.reference()
    for f in fields:  # same numbers before timing anything
        assert components(f, ref) == published_components(f)
        assert components(f, paper) == paper_components(f)
    res = {
        "benchmark": "metric.components",
        "field": f"{args.size}x{args.size} uint8",
        "fields": args.fields,
        "source": source,
        "threads": 1,
        "ms_per_field": {
            "ours_paper": per_field_ms(lambda f: components(f, paper), fields, args.repeat),
            "ours_reference": per_field_ms(lambda f: components(f, ref), fields, args.repeat),
            "published_loop": per_field_ms(published_components, fields, args.repeat),
            "paper_loop_regionprops": per_field_ms(paper_components, fields, 1),
        },
        "target_ms": 40,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    ms = res["ms_per_field"]
    res["speedup_vs_published_loop"] = {
        "paper_mode": ms["published_loop"] / ms["ours_paper"],
        "reference_mode": ms["published_loop"] / ms["ours_reference"],
    }
    res["speedup_vs_paper_loop"] = ms["paper_loop_regionprops"] / ms["ours_paper"]
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
