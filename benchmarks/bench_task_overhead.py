"""Per-task start-up of a plate stage (open the field, read it, write a label) on a 96-field
and a 3,456-field plate of small fields: the stage contract's field view
(``open_field_view``, what every task opens now) against the old path (``open_plate`` of the
whole plate in every task), in the same run.

The field view's cost must not grow with the plate; the old one grows with the number of
wells (every task read every well's metadata), i.e. the plate's total cost grows with the
square of its size. Prints one JSON object.

Usage: python benchmarks/bench_task_overhead.py [--size 64] [--sample 48] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

PLATES = {"96": (8, 12, 1), "3456": (16, 24, 9)}  # rows, columns, fields per well


def make(path: Path, rows: int, columns: int, fpw: int, size: int):
    from phirm_scale.plate import FieldKey, _write_field_data, create_plate, row_name

    rn = [row_name(i) for i in range(rows)]
    cn = [f"{c + 1:02d}" for c in range(columns)]
    keys = [FieldKey(r, c, f) for r in rn for c in cn for f in range(fpw)]
    t0 = time.perf_counter()
    create_plate(
        path,
        rows=rn,
        columns=cn,
        fields=keys,
        channel_names=["DAPI", "CFP"],
        shape=(size, size),
        dtype=np.uint16,
        overwrite=True,
    )
    rng = np.random.default_rng(0)
    for k in keys:  # real data in every field (what a converted plate holds)
        _write_field_data(
            path,
            k,
            rng.integers(0, 4096, (2, size, size), dtype=np.uint16),
            channel_names=["DAPI", "CFP"],
            dtype=np.uint16,
            shape=(size, size),
        )
    return keys, time.perf_counter() - t0


def task_view(path, key):
    from phirm_scale.plate import open_field_view

    p = open_field_view(path, key)
    img = p.read_field(key, 1)
    p.write_label(key, "bench", img > 2048)


def task_whole_plate(path, key):
    from phirm_scale.plate import open_plate

    p = open_plate(path)
    img = p.read_field(key, 1)
    p.write_label(key, "bench", img > 2048)


def per_task_ms(fn, path, keys, repeat):
    best = []
    for k in keys:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(path, k)
            times.append(time.perf_counter() - t0)
        best.append(min(times))
    return 1e3 * statistics.median(best)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=64, help="field edge in pixels")
    ap.add_argument("--sample", type=int, default=48, help="fields timed per plate")
    ap.add_argument("--repeat", type=int, default=3, help="best of N per field")
    ap.add_argument("--keep", type=Path, default=None, help="folder for the plates (kept)")
    args = ap.parse_args()

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench_task_overhead_"))
    tmp.mkdir(parents=True, exist_ok=True)
    out: dict = {
        "benchmark": "task_overhead",
        "field": f"{args.size}x{args.size} uint16 x2",
        "sample_fields": args.sample,
        "repeat": args.repeat,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "python": platform.python_version(),
    }
    try:
        for label, (r, c, f) in PLATES.items():
            path = tmp / f"plate{label}.ome.zarr"
            keys, t_make = make(path, r, c, f, args.size)
            rng = np.random.default_rng(1)
            sample = [
                keys[i]
                for i in sorted(rng.choice(len(keys), min(args.sample, len(keys)), replace=False))
            ]
            view = per_task_ms(task_view, path, sample, args.repeat)
            old_sample = sample[: max(4, len(sample) // 4)]  # the old path is slow
            old = per_task_ms(task_whole_plate, path, old_sample, 1)
            out[f"plate_{label}"] = {
                "fields": len(keys),
                "wells": r * c,
                "make_s": round(t_make, 1),
                "field_view_ms_per_task": round(view, 2),
                "open_plate_ms_per_task": round(old, 2),
                "old_over_new": round(old / view, 1),
            }
        small, big = out["plate_96"], out["plate_3456"]
        out["field_view_growth_3456_over_96"] = round(
            big["field_view_ms_per_task"] / small["field_view_ms_per_task"], 2
        )
        out["open_plate_growth_3456_over_96"] = round(
            big["open_plate_ms_per_task"] / small["open_plate_ms_per_task"], 2
        )
        out["flat"] = out["field_view_growth_3456_over_96"] <= 1.5
        out["whole_plate_start_up_s_3456"] = {
            "field_view": round(big["field_view_ms_per_task"] * big["fields"] / 1e3, 1),
            "open_plate": round(big["open_plate_ms_per_task"] * big["fields"] / 1e3, 1),
        }
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
