"""Screen throughput: `phirm-scale run` (all QC on) against the plain script a user would write.

Issue 23's comparison. Source plates: ``--plates`` (2) ImageXpress folders of ``--fields``
(4) fields of ``--size`` (2160) px, DAPI of real BBBC039 nuclei with composited fibres and
dust covering ``--artefacts`` (0.02) of the field, and the CFP artefact channel
(``bench_run.generated_plates``), written outside the timing.

Timed, each as its own Python process (imports included):

* ``plain``: the script below (:func:`plain_field`), one process per core
  (``multiprocessing.Pool``); per field: read both TIFFs (tifffile), Otsu x 0.7 on the
  artefact channel (skimage), opening and closing with a disk(2), dilation by ``--dilate``
  (as `run`'s masks), ``cv2.inpaint`` Telea (radius 3) on the uint16 field, write the restored
  field into a Zarr array, and PhIRM per 256 window of restored vs source with
  ``phirm_scale.metric`` (8-bit with the source's range). No self-check, no screen QC, no
  report.
* ``run``: ``phirm-scale run ... --artefact-channel CFP --dilate D`` on each ``--cluster``
  (default: ``threads`` and ``local``), with its per-stage seconds from ``OUT/run.json``.

Prints one JSON object: seconds, fields/s, ratio to plain, run.json stages, the plain
script's steps (``steps_s``: read, masks, inpaint, write, score, each summed over the fields
and divided by the worker count, so comparable to a stage's wall seconds when the workers
overlap), and a linear
projection to a 3,456-field plate (384 wells x 9 fields) on 2 and 16 cores (fields/s scaled
by cores / this machine's cores; start-up is counted per plate, not per field, so the
projection slightly over-estimates).

Usage:
    python benchmarks/bench_screen.py [--size 2160] [--fields 4] [--plates 2]
        [--clusters threads,local] [--dilate 4] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_run import cli, generated_plates

PLATE_FIELDS = 3456


def plain_field(job: tuple[str, str, str, int, int]) -> dict[str, float]:
    """The plain per-field script; returns its steps' seconds and the field's mean PhIRM."""
    import cv2
    import numpy as np
    import tifffile
    import zarr
    from skimage.filters import threshold_otsu
    from skimage.morphology import disk

    from phirm_scale import metric

    dapi_path, cfp_path, store, index, dilate = job
    t0 = time.perf_counter()
    dapi = tifffile.imread(dapi_path)
    cfp = tifffile.imread(cfp_path)
    t1 = time.perf_counter()
    mask = (cfp > 0.7 * threshold_otsu(cfp)).astype(np.uint8)
    fp = disk(2).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, fp)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, fp)
    if dilate:
        mask = cv2.dilate(mask, disk(dilate).astype(np.uint8))
    t2 = time.perf_counter()
    restored = cv2.inpaint(dapi, mask, 3.0, cv2.INPAINT_TELEA)
    t3 = time.perf_counter()
    zarr.open_array(store, mode="r+")[index] = restored
    t4 = time.perf_counter()
    lo, hi = float(dapi.min()), float(dapi.max())
    ref8, rec8 = metric.to_uint8(dapi, lo, hi), metric.to_uint8(restored, lo, hi)
    scores = []
    for y in range(0, dapi.shape[0], 256):
        for x in range(0, dapi.shape[1], 256):
            a = metric.components(np.ascontiguousarray(ref8[y : y + 256, x : x + 256]))
            b = metric.components(np.ascontiguousarray(rec8[y : y + 256, x : x + 256]))
            *_, ph = metric.phirm_from_components(
                a.nuclei_count,
                a.nuclei_area,
                a.artefact_area,
                b.nuclei_count,
                b.nuclei_area,
                b.artefact_area,
            )
            scores.append(float(ph))
    t5 = time.perf_counter()
    return {
        "read": t1 - t0,
        "masks": t2 - t1,
        "inpaint": t3 - t2,
        "write": t4 - t3,
        "score": t5 - t4,
        "phirm": float(np.mean(scores)),
    }


def plain_main(plates: list[Path], out: Path, dilate: int) -> None:
    """Run the plain script over ``plates`` (one process per core)."""
    import multiprocessing

    import tifffile
    import zarr

    jobs = []
    for p in plates:
        dapi = sorted(p.glob("*_w1*.tif"))
        shape = tifffile.TiffFile(dapi[0]).pages[0].shape
        store = str(out / f"{p.name}.zarr")
        zarr.open_array(
            store, mode="w", shape=(len(dapi), *shape), chunks=(1, *shape), dtype="uint16"
        )
        jobs += [
            (str(f), str(f).replace("_w1", "_w2"), store, i, dilate) for i, f in enumerate(dapi)
        ]
    workers = os.cpu_count() or 1
    with multiprocessing.Pool(workers) as pool:
        done = pool.map(plain_field, jobs, chunksize=1)
    # per step: seconds summed over the fields, over the workers (wall seconds if they overlap)
    steps = {k: sum(d[k] for d in done) / workers for k in ("read", "masks", "inpaint", "write")}
    steps["score"] = sum(d["score"] for d in done) / workers
    (out / "plain_steps.json").write_text(json.dumps(steps))


def timed(args: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{p.stderr}")
    return time.perf_counter() - t


def projection(fields_per_s: float) -> dict[str, float]:
    cores = os.cpu_count() or 1
    return {
        f"{k}_cores_h": round(PLATE_FIELDS / (fields_per_s * k / cores) / 3600, 3) for k in (2, 16)
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2160)
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--plates", type=int, default=2)
    ap.add_argument("--artefacts", type=float, default=0.02)
    ap.add_argument("--dilate", type=int, default=4)
    ap.add_argument("--clusters", default="threads,local")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--plain-worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain_worker:  # the plain script's own process: OUT PLATE...
        out, *plates = map(Path, args.plain_worker)
        plain_main(plates, out, args.dilate)
        return
    root = Path(tempfile.mkdtemp(prefix="bench_screen_"))
    try:
        plates = generated_plates(root / "src", args.plates, args.fields, args.size, args.artefacts)
        n = args.plates * args.fields
        cli("--version")  # warm the file cache / imports once, untimed
        load_start = [round(x, 2) for x in os.getloadavg()]
        best: dict[str, float] = {}
        stages: dict[str, dict] = {}
        plain_steps: dict[str, float] = {}
        for rep in range(args.repeat):
            d = root / f"plain{rep}"
            d.mkdir()
            t = timed(
                [
                    sys.executable,
                    __file__,
                    "--dilate",
                    str(args.dilate),
                    "--plain-worker",
                    str(d),
                    *map(str, plates),
                ]
            )
            if t < best.get("plain", float("inf")):
                best["plain"] = t
                plain_steps = json.loads((d / "plain_steps.json").read_text())
            for cl in args.clusters.split(","):
                out = root / f"run_{cl}_{rep}"
                t = cli(
                    "run",
                    *plates,
                    "-o",
                    out,
                    "--channel-names",
                    "DAPI,CFP",
                    "--channel",
                    "DAPI",
                    "--artefact-channel",
                    "CFP",
                    "--dilate",
                    args.dilate,
                    "--model",
                    "telea",
                    "--cluster",
                    cl,
                    "--no-progress",
                )
                if t < best.get(cl, float("inf")):
                    best[cl] = t
                    rec = json.loads((out / "run.json").read_text())
                    stages[cl] = {k: v["seconds"] for k, v in rec["stages"].items()}
        plain = best["plain"]
        result = {
            "benchmark": "bench_screen",
            "source": f"{args.plates} generated plates x {args.fields} fields {args.size}^2, "
            f"DAPI (BBBC039 nuclei) + CFP artefacts {args.artefacts:g}, telea, "
            f"dilate {args.dilate}",
            "fields": n,
            "plain": {
                "s": round(plain, 2),
                "fields_per_s": round(n / plain, 3),
                "steps_s": {k: round(v, 3) for k, v in plain_steps.items()},
                "projection_3456_fields": projection(n / plain),
            },
            **{
                f"run_{cl}": {
                    "s": round(best[cl], 2),
                    "fields_per_s": round(n / best[cl], 3),
                    "vs_plain": round(best[cl] / plain, 2),
                    "stages_s": stages[cl],
                    "projection_3456_fields": projection(n / best[cl]),
                }
                for cl in args.clusters.split(",")
            },
            "repeat": args.repeat,
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_avg_start": load_start,
                "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            },
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
