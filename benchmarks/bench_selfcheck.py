"""The self-check against the inpainting on the same fields, and against its old whole-field form.

Issue 23's target: the self-check stage at most the time of the inpaint stage. Fields:
``--fields`` (4) of ``--size`` (2160) px, real BBBC039 nuclei with composited fibres and dust
covering ``--artefacts`` (0.02) of the field (``phirm_scale.synthetic.make_field``); holes as
the plain script of ``bench_screen.py`` makes them (Otsu x 0.7 on the artefact channel,
opening and closing by a disk(2), dilation by ``--dilate`` 4), made outside the timing.
One process, one thread, fields in turn; per field, timed:

* ``inpaint``: :func:`phirm_scale.inpaint.inpaint_field` (the restoration; ``--model``,
  default Telea);
* ``selfcheck``: :func:`phirm_scale.selfcheck.selfcheck_field` with the defaults (4 draws),
  the one-pass fills around the pseudo-holes;
* ``selfcheck_whole_field``: the plain alternative, written here: per draw the whole field
  inpainted again and every window scored (the self-check before issue 23), whose per-window
  values the fast one must equal (``identical``);
* ``field_checks`` and ``residual_window_terms``: the rest of the self-check stage's work
  per field (:mod:`phirm_scale.fieldqc`).

Prints one JSON object (seconds summed over the fields, best of ``--repeat``).

Usage:
    python benchmarks/bench_selfcheck.py [--fields 4] [--size 2160] [--model telea]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbbc039-rows-A-D"


def plain_holes(cfp: np.ndarray, dilate: int) -> np.ndarray:
    import cv2
    from skimage.filters import threshold_otsu
    from skimage.morphology import disk

    mask = (cfp > 0.7 * threshold_otsu(cfp)).astype(np.uint8)
    fp = disk(2).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, fp)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, fp)
    if dilate:
        mask = cv2.dilate(mask, disk(dilate).astype(np.uint8))
    return mask > 0


def whole_field_selfcheck(src, hole, model, restored, seed_key, draws=4, margin=4, window=256):
    """The self-check as it was: per draw the whole field inpainted and every window scored."""
    from phirm_scale import fieldqc, metric, qc
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.masks import saturation_mask
    from phirm_scale.selfcheck import components_of, place_pseudo_holes

    lo, hi = fieldqc.known_range(src, hole)
    forbidden = hole | (saturation_mask(src, dilation=0) != 0)
    own = components_of(hole)
    ref8 = metric.to_uint8(restored, lo=lo, hi=hi)
    slices = list(qc.window_grid(src.shape, window).slices())
    ref = [metric.components(np.ascontiguousarray(ref8[sl])) for sl in slices]
    per_draw = []
    for d in range(draws):
        rng = np.random.default_rng(np.random.SeedSequence([*seed_key, d]))
        pseudo, _ = place_pseudo_holes(src.shape, forbidden, own, rng, margin=margin)
        if not pseudo.any():
            continue
        filled = inpaint_field(src, hole | pseudo, model)
        rec = restored.copy()
        rec[pseudo] = filled[pseudo]
        rec8 = metric.to_uint8(rec, lo=lo, hi=hi)
        scores = []
        for a, sl in zip(ref, slices, strict=True):
            b = metric.components(np.ascontiguousarray(rec8[sl]))
            *_, ph = metric.phirm_from_components(
                a.nuclei_count,
                a.nuclei_area,
                a.artefact_area,
                b.nuclei_count,
                b.nuclei_area,
                b.artefact_area,
            )
            scores.append(float(ph))
        per_draw.append(scores)
    return np.mean(per_draw, axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fields", type=int, default=4)
    ap.add_argument("--size", type=int, default=2160)
    ap.add_argument("--artefacts", type=float, default=0.02)
    ap.add_argument("--dilate", type=int, default=4)
    ap.add_argument("--model", default="telea")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    from phirm_scale import fieldqc, qc
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.models import get_model
    from phirm_scale.selfcheck import selfcheck_field
    from phirm_scale.synthetic import make_field

    real = sorted(DATA.glob("*.tif"))
    if not real:
        raise SystemExit(f"error: {DATA}: no BBBC039 fields to build the benchmark fields from")
    model = get_model(args.model)
    fields = []
    for i in range(args.fields):
        data, _ = make_field(
            ("A", i + 1, 0),
            size=(args.size, args.size),
            seed=i,
            artefacts=args.artefacts,
            source=real[i % len(real)],
        )
        fields.append((data[0], plain_holes(data[1], args.dilate)))
    load_start = [round(x, 2) for x in os.getloadavg()]
    best: dict[str, float] = {}
    identical = True
    windows = 0.0
    for _ in range(args.repeat):
        t = dict.fromkeys(
            ("inpaint", "selfcheck", "selfcheck_whole_field", "field_checks", "residual"), 0.0
        )
        for i, (src, hole) in enumerate(fields):
            key = (0, 0, i + 1, 0)
            s = time.perf_counter()
            rest = inpaint_field(src, hole, model)
            t["inpaint"] += time.perf_counter() - s
            s = time.perf_counter()
            fast = selfcheck_field(src, hole, model, restored=rest, seed_key=key)
            t["selfcheck"] += time.perf_counter() - s
            s = time.perf_counter()
            slow = whole_field_selfcheck(src, hole, model, rest, key)
            t["selfcheck_whole_field"] += time.perf_counter() - s
            identical &= bool(np.array_equal(fast["selfcheck_phirm"], slow))
            windows += fast["selfcheck_n_windows"] / len(fields) / args.repeat
            s = time.perf_counter()
            fieldqc.field_checks(src, rest, hole)
            t["field_checks"] += time.perf_counter() - s
            s = time.perf_counter()
            fieldqc.residual_window_terms(
                src, rest, hole, list(qc.window_grid(src.shape, 256).slices())
            )
            t["residual"] += time.perf_counter() - s
        for k, v in t.items():
            best[k] = min(best.get(k, v), v)
    n_win = len(qc.window_grid((args.size, args.size), 256))
    stage = best["selfcheck"] + best["field_checks"] + best["residual"]
    print(
        json.dumps(
            {
                "benchmark": "bench_selfcheck",
                "source": f"{args.fields} fields {args.size}^2, BBBC039 nuclei + artefacts "
                f"{args.artefacts:g}, CFP Otsu x0.7 masks dilated {args.dilate}, {args.model}",
                "hole_fraction": round(float(np.mean([h.mean() for _, h in fields])), 4),
                "windows_per_field": n_win,
                "windows_touched_per_draw": round(windows, 1),
                "seconds": {k: round(v, 3) for k, v in best.items()},
                "selfcheck_vs_inpaint": round(best["selfcheck"] / best["inpaint"], 2),
                "whole_field_vs_inpaint": round(best["selfcheck_whole_field"] / best["inpaint"], 2),
                "speedup_vs_whole_field": round(
                    best["selfcheck_whole_field"] / best["selfcheck"], 2
                ),
                "stage_work_vs_inpaint": round(stage / best["inpaint"], 2),
                "identical": identical,
                "repeat": args.repeat,
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_avg_start": load_start,
                    "load_avg_end": [round(x, 2) for x in os.getloadavg()],
                },
            }
        )
    )


if __name__ == "__main__":
    main()
