"""A whole screen: `phirm-scale run` against the separate stage commands, same data, same run.

Source plates are generated outside the timing:

* ``--real`` (default when ``--fields`` is not given): the 49 shipped BBBC039 fields split
  into 2 plates (symlinks in a temporary folder), one channel, ``--artefact-channel none``
  (saturation masks) -- the README's target case;
* ``--fields N --size S``: ``--plates`` TIFF folders of N ImageXpress-named fields of S x S,
  channels DAPI (real BBBC039 nuclei, mirror-padded, with composited artefacts covering
  ``--artefacts`` of the field) and CFP (the artefact channel), ``--artefact-channel CFP``.

Timed, each as its own ``phirm-scale`` process on ``--cluster``:

* ``run``: one command for all plates (one import, one cluster), with its per-stage seconds
  and fields/s from ``OUT/run.json``;
* ``separate``: per plate ``convert``, ``masks``, ``inpaint``, ``score`` (``--self-check``
  on generated plates, as ``run`` self-checks plates without a reference channel) and, once
  per plate, ``report`` -- what users chained before ``run`` existed (each command starts its
  own cluster). The ratio ``run / separate`` is the figure of merit (target <= 1.2).

Prints one JSON object. Usage:
    python benchmarks/bench_run.py [--real] [--fields N --size 2160 --artefacts 0.02 --plates 2]
        [--model telea] [--cluster threads] [--repeat 1]
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

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbbc039-rows-A-D"
GUID = "051DAA7C-7042-435F-99F0-1E847D9B42CB"


def cli(*args) -> float:
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "phirm_scale", *map(str, args)], capture_output=True, text=True
    )
    if p.returncode != 0:
        raise SystemExit(f"phirm-scale {' '.join(map(str, args))} failed:\n{p.stderr}")
    return time.perf_counter() - t


def real_plates(root: Path) -> list[Path]:
    files = sorted(DATA.glob("*.tif"))
    if not files:
        raise SystemExit(f"{DATA}: shipped fields not found")
    plates = [root / "p1", root / "p2"]
    for d in plates:
        d.mkdir(parents=True)
    for i, f in enumerate(files):
        (plates[i % 2] / f.name).symlink_to(f)
    return plates


def generated_plates(
    root: Path, n_plates: int, n_fields: int, size: int, artefacts: float
) -> list[Path]:
    import tifffile

    from phirm_scale.synthetic import make_field

    real = sorted(DATA.glob("*.tif"))
    plates = []
    for p in range(n_plates):
        d = root / f"plate{p + 1:02d}"
        d.mkdir(parents=True)
        for i in range(n_fields):
            row, col = divmod(i, 24)
            well = f"{chr(ord('A') + row)}{col + 1:02d}"
            data, _ = make_field(
                (chr(ord("A") + row), col + 1, p),
                size=(size, size),
                seed=p,
                artefacts=artefacts,
                source=real[(i + p) % len(real)] if real else None,
            )
            tifffile.imwrite(d / f"BENCH_{well}_s1_w1{GUID}.tif", data[0])
            tifffile.imwrite(d / f"BENCH_{well}_s1_w2{GUID}.tif", data[1])
        plates.append(d)
    return plates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--fields", type=int, default=None)
    ap.add_argument("--size", type=int, default=2160)
    ap.add_argument("--artefacts", type=float, default=0.02)
    ap.add_argument("--plates", type=int, default=2)
    ap.add_argument("--model", default="telea")
    ap.add_argument("--cluster", default="threads")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    real = args.real or args.fields is None
    root = Path(tempfile.mkdtemp(prefix="bench_run_"))
    try:
        if real:
            plates = real_plates(root / "src")
            names, art, chan = ["DAPI"], "none", "DAPI"
        else:
            plates = generated_plates(
                root / "src", args.plates, args.fields, args.size, args.artefacts
            )
            names, art, chan = ["DAPI", "CFP"], "CFP", "DAPI"
        n_fields = sum(
            len({f.name.split("_s")[0] + f.name.split("_s")[1][:2] for f in p.glob("*.tif")})
            for p in plates
        )
        cli("--version")  # warm the file cache / imports once, untimed
        common = ["--cluster", args.cluster, "--no-progress"]
        best_run, best_sep, stages = None, None, None
        for rep in range(args.repeat):
            out = root / f"run{rep}"
            t_run = cli(
                "run",
                *plates,
                "-o",
                out,
                "--channel-names",
                ",".join(names),
                "--channel",
                chan,
                "--artefact-channel",
                art,
                "--model",
                args.model,
                *common,
            )
            rec = json.loads((out / "run.json").read_text())
            if best_run is None or t_run < best_run:
                best_run, stages = t_run, rec["stages"]
            sep = root / f"sep{rep}"
            sep.mkdir()
            t_sep = 0.0
            per_stage = {s: 0.0 for s in ("convert", "masks", "inpaint", "score", "report")}
            for p in plates:
                z = sep / f"{p.name}.ome.zarr"
                zi = sep / f"{p.name}_inpainted.ome.zarr"
                steps = {
                    "convert": ["convert", p, z, "--channel-names", ",".join(names), *common],
                    "masks": [
                        "masks",
                        z,
                        *(
                            ["--method", "saturation", "--channel", chan]
                            if art == "none"
                            else ["--channel", art]
                        ),
                        *common,
                    ],
                    "inpaint": ["inpaint", z, "--channel", chan, "--model", args.model, *common],
                    "score": [
                        "score",
                        "--reference",
                        f"{z}:{chan}",
                        "--reconstruction",
                        f"{zi}:{chan}",
                        "--mask-label",
                        "artefacts",
                        "-o",
                        sep / f"{p.name}_qc.zarr",
                        "--csv",
                        sep / f"{p.name}_qc.csv",
                        # `run` self-checks plates without a reference channel: the same
                        # work here (the real fields have no hole to self-check with, and
                        # `run` only makes the light field checks there)
                        *([] if real else ["--self-check"]),
                        *common,
                    ],
                    "report": ["report", sep / f"{p.name}_qc.zarr", "-o", sep / f"{p.name}_report"],
                }
                for name, a in steps.items():
                    dt = cli(*a)
                    per_stage[name] += dt
                    t_sep += dt
            if best_sep is None or t_sep < best_sep[0]:
                best_sep = (t_sep, per_stage)
        result = {
            "benchmark": "bench_run",
            "source": "shipped BBBC039 fields, 2 plates"
            if real
            else f"{args.plates} generated plates x {args.fields} fields {args.size}^2",
            "fields": n_fields,
            "cluster": args.cluster,
            "model": args.model,
            "run_s": round(best_run, 2),
            "run_fields_per_s": round(n_fields / best_run, 3),
            "run_stages": {
                k: {
                    "s": v["seconds"],
                    "fields_per_s": round(v["fields"] / v["seconds"], 2) if v["seconds"] else None,
                }
                for k, v in stages.items()
            },
            "separate_commands_s": round(best_sep[0], 2),
            "separate_stages_s": {k: round(v, 2) for k, v in best_sep[1].items()},
            "ratio_run_over_separate": round(best_run / best_sep[0], 3),
            "target_ratio": 1.2,
            "plates_per_hour": round(3600 / best_run * len(plates), 1),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_avg": [round(x, 2) for x in os.getloadavg()],
            },
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
