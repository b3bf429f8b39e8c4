"""The screen QC store at screen scale: 10 plates x 3,456 fields (16 x 24 wells x 9 fields) x
81 windows (a 2160^2 field in 256 windows), generated synthetically (random kernel results
through the real reduction, :func:`phirm_scale.qc.to_dataset` and
:func:`phirm_scale.screenqc.screen_dataset`, written with ``write_screen_qc``; untimed).

Timed (best of ``--repeat``, a fresh process state each time is not attempted):

* ``xr.open_zarr(qc.zarr)`` (target < 2 s);
* ``to_dataframe()`` of the field summaries, ``field_*`` variables (target < 5 s);
* the plain alternative: ``pandas.read_parquet`` of the per-window table and a groupby mean
  of PhIRM per field (what users do without the store).

Prints one JSON object. Usage:
    python benchmarks/bench_qc_store.py [--plates 10] [--rows 16] [--columns 24] [--fields 9]
        [--windows 81] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def fake_plate(rng, rows, cols, fields, windows):
    from phirm_scale import qc

    grid = qc.window_grid((2160, 2160), 256)
    assert len(grid) >= windows
    grid = qc.WindowGrid(grid.y0[:windows], grid.x0[:windows], grid.height, grid.width)
    results = {}
    row_names = [chr(ord("A") + r) for r in range(rows)]
    col_names = [f"{c + 1:02d}" for c in range(cols)]
    for r in row_names:
        for c in col_names:
            for f in range(fields):
                n = rng.integers(5, 40, windows).astype(np.float64)
                a = n * rng.integers(300, 600, windows)
                lost = (rng.random(windows) < 0.05).astype(np.float64)
                res = {
                    "ref_nuclei_count": n,
                    "ref_nuclei_area": a,
                    "ref_artefact_count": np.zeros(windows),
                    "ref_artefact_area": np.zeros(windows),
                    "rec_nuclei_count": n - lost,
                    "rec_nuclei_area": a - lost * 400,
                    "rec_artefact_count": np.zeros(windows),
                    "rec_artefact_area": np.zeros(windows),
                    "psnr": rng.uniform(30, 60, windows),
                    "ssim": rng.uniform(0.9, 1, windows),
                    "masked_fraction": rng.uniform(0, 0.05, windows),
                }
                results[(r, c, f)] = res
    return qc.to_dataset(
        results,
        grid,
        rows=row_names,
        columns=col_names,
        attrs={"reference": "synthetic", "reconstruction": "synthetic"},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plates", type=int, default=10)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--columns", type=int, default=24)
    ap.add_argument("--fields", type=int, default=9)
    ap.add_argument("--windows", type=int, default=81)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import pandas as pd
    import xarray as xr

    from phirm_scale.screenqc import screen_dataset, write_screen_qc

    root = Path(tempfile.mkdtemp(prefix="bench_qc_"))
    try:
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        plates = {
            f"plate{p + 1:02d}": fake_plate(rng, args.rows, args.columns, args.fields, args.windows)
            for p in range(args.plates)
        }
        ds = screen_dataset(plates)
        store = root / "qc.zarr"
        write_screen_qc(ds, store, parquet=root / "qc.parquet")
        t_make = time.perf_counter() - t
        n_fields = args.plates * args.rows * args.columns * args.fields
        size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        opens, frames, plain = [], [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            q = xr.open_zarr(store)
            opens.append(time.perf_counter() - t)
            t = time.perf_counter()
            names = [v for v in q.data_vars if str(v).startswith("field_")]
            df = q[names].to_dataframe()
            frames.append(time.perf_counter() - t)
            assert len(df) == n_fields
            t = time.perf_counter()
            tab = pd.read_parquet(
                root / "qc.parquet", columns=["plate", "row", "column", "field", "phirm"]
            )
            g = tab.groupby(["plate", "row", "column", "field"])["phirm"].mean()
            plain.append(time.perf_counter() - t)
            assert len(g) == n_fields
        print(
            json.dumps(
                {
                    "benchmark": "bench_qc_store",
                    "plates": args.plates,
                    "fields": n_fields,
                    "windows": n_fields * args.windows,
                    "variables": len(ds.data_vars),
                    "store_mb": round(size / 1e6, 1),
                    "generate_and_write_s": round(t_make, 1),
                    "open_zarr_s": round(min(opens), 3),
                    "open_zarr_target_s": 2.0,
                    "field_summaries_to_dataframe_s": round(min(frames), 3),
                    "to_dataframe_target_s": 5.0,
                    "plain_parquet_groupby_s": round(min(plain), 3),
                    "machine": {
                        "cpus": os.cpu_count(),
                        "platform": platform.platform(),
                        "load_avg": [round(x, 2) for x in os.getloadavg()],
                    },
                }
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
