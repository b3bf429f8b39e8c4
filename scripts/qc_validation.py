"""Validation of the ground-truth-free QC on composite plates of the shipped BBBC039 fields.

Reproduces the tables of docs/qc-without-ground-truth.md:

    python scripts/qc_validation.py plates   --out qcval     # demo plate + 3 composite plates
    python scripts/qc_validation.py sweep    --out qcval     # mask defaults (Telea)
    python scripts/qc_validation.py worst    --out qcval     # the demo's worst field vs dilation
    python scripts/qc_validation.py draws    --out qcval     # self-check spread vs draws
    python scripts/qc_validation.py validate --out qcval     # self-check vs true PhIRM, flags
    python scripts/qc_validation.py holes-nuclei --out qcval # nuclei_in_holes as a flag?

``plates`` builds the plates with ``make_plate`` (real fields, composited fibres and dust, the
clean field kept as ``DAPI_clean``). ``sweep`` runs, per field and in this process, the same
functions the stages run (``stages.masks.mask_image``, ``inpaint.inpaint_field`` with Telea,
``qc.score_field`` against the clean field). ``validate`` runs the real pipeline through the
Python API of the stages (masks, inpaint, score, ``selfcheck_qc``). Every number is printed
as a Markdown table and saved as JSON in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bbbc039-rows-A-D"

#: (name, rows, columns, fields, artefact density, seed): the demo's plate and three more.
PLATES = [
    ("demo", 2, 4, 2, 0.03, 0),
    ("p1", 7, 7, 1, 0.02, 1),
    ("p2", 7, 7, 1, 0.03, 2),
    ("p3", 7, 7, 1, 0.05, 3),
]


def build_plates(out: Path) -> None:
    from phirm_scale.synthetic import make_plate

    out.mkdir(parents=True, exist_ok=True)
    for name, rows, cols, fields, dens, seed in PLATES:
        path = out / f"{name}.ome.zarr"
        if path.exists():
            continue
        make_plate(
            path,
            rows=rows,
            columns=cols,
            fields=fields,
            size=(520, 696),
            seed=seed,
            from_fields=DATA,
            artefacts=dens,
            cluster="threads",
            progress=False,
        )
        print(f"wrote {path}")


def _load(out: Path):
    from phirm_scale.plate import open_plate

    plates = {}
    for name, *_ in PLATES:
        p = open_plate(out / f"{name}.ome.zarr")
        plates[name] = [(k, p.read_field(k)) for k in p.fields]
    return plates


def _true_phirm(clean, restored):
    """PhIRM per 256 window of ``restored`` against ``clean`` (the QC's windows and 8-bit
    normalisation with the clean field's range; no PSNR/SSIM)."""
    from phirm_scale import metric, qc

    grid = qc.window_grid(clean.shape, 256)
    lo, hi = float(clean.min()), float(clean.max())
    a8, b8 = metric.to_uint8(clean, lo=lo, hi=hi), metric.to_uint8(restored, lo=lo, hi=hi)
    r = {
        k: np.empty(len(grid))
        for k in (
            "ref_nuclei_count",
            "ref_nuclei_area",
            "ref_artefact_area",
            "rec_nuclei_count",
            "rec_nuclei_area",
            "rec_artefact_area",
        )
    }
    for i, sl in enumerate(grid.slices()):
        ca = metric.components(np.ascontiguousarray(a8[sl]))
        cb = metric.components(np.ascontiguousarray(b8[sl]))
        for side, c in (("ref", ca), ("rec", cb)):
            r[f"{side}_nuclei_count"][i] = c.nuclei_count
            r[f"{side}_nuclei_area"][i] = c.nuclei_area
            r[f"{side}_artefact_area"][i] = c.artefact_area
    _, _, _, ph = metric.phirm_from_components(
        r["ref_nuclei_count"],
        r["ref_nuclei_area"],
        r["ref_artefact_area"],
        r["rec_nuclei_count"],
        r["rec_nuclei_area"],
        r["rec_artefact_area"],
    )
    return np.asarray(ph), r


def _configs():
    """Otsu factor 0.5-0.9 and the saturation rule at dilation 0-4; the saturation rule's
    thresholds (mean >= 190 / 230, max 250) at dilation 0 and 2."""
    out = []
    for d in range(5):
        for f in (0.5, 0.7, 0.9):
            out.append(("otsu", {"otsu_factor": f, "dilation": d}))
        out.append(("saturation", {"artefact_mean": 210.0, "dilation": d}))
    for d in (0, 2):
        for am in (190.0, 230.0):
            out.append(("saturation", {"artefact_mean": am, "dilation": d}))
        out.append(("saturation", {"saturation": 250, "artefact_mean": 210.0, "dilation": d}))
    return out


def sweep(out: Path) -> list[dict]:
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.models import get_model
    from phirm_scale.stages.masks import MaskSettings, mask_image

    telea = get_model("telea")
    plates = _load(out)
    rows = []
    done = {}
    if (out / "sweep.jsonl").exists():  # resume: configurations already measured
        for line in (out / "sweep.jsonl").read_text().splitlines():
            r = json.loads(line)
            done[
                json.dumps(
                    [
                        r["method"],
                        {
                            k: r[k]
                            for k in r
                            if k in ("otsu_factor", "artefact_mean", "saturation", "dilation")
                        },
                    ],
                    sort_keys=True,
                )
            ] = r
    for method, kw in _configs():
        tag = json.dumps([method, kw], sort_keys=True)
        if tag in done:
            rows.append(done[tag])
            continue
        t = time.perf_counter()
        settings = MaskSettings(method=method, **kw)
        per_plate = {}
        for name, fields in plates.items():
            wins = []
            for _, data in fields:
                dapi, cfp, clean = data[0], data[1], data[2]
                mask = mask_image(cfp if method == "otsu" else dapi, settings)
                rec = inpaint_field(dapi, mask, telea)
                ph, _ = _true_phirm(clean, rec)
                wins.append(ph)
            w = np.concatenate(wins)
            per_plate[name] = {
                "p05": float(np.percentile(w, 5)),
                "mean": float(w.mean()),
                "min": float(w.min()),
            }
        row = {
            "method": method,
            **kw,
            "p05_mean_over_plates": float(np.mean([v["p05"] for v in per_plate.values()])),
            "plates": per_plate,
            "seconds": time.perf_counter() - t,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(out / "sweep.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
    (out / "sweep.json").write_text(json.dumps(rows, indent=1))
    return rows


def print_sweep(out: Path) -> None:
    rows = json.loads((out / "sweep.json").read_text())
    names = [p[0] for p in PLATES]
    print(
        "| method | parameters | dilation | "
        + " | ".join(f"{n} p05" for n in names)
        + " | mean p05 | mean PhIRM (all plates) |"
    )
    print("|---|---|---|" + "---|" * len(names) + "---|---|")
    for r in sorted(
        rows,
        key=lambda r: (
            r["method"],
            r["dilation"],
            r.get("otsu_factor", 0),
            r.get("artefact_mean", 0),
        ),
    ):
        params = (
            f"factor {r['otsu_factor']}"
            if r["method"] == "otsu"
            else f"max {r.get('saturation', 255)}, mean >= {r['artefact_mean']:g}"
        )
        means = np.mean([v["mean"] for v in r["plates"].values()])
        print(
            f"| {r['method']} | {params} | {r['dilation']} | "
            + " | ".join(f"{r['plates'][n]['p05']:.3f}" for n in names)
            + f" | {r['p05_mean_over_plates']:.3f} | {means:.3f} |"
        )
    for method in ("otsu", "saturation"):
        best = max(
            (r for r in rows if r["method"] == method), key=lambda r: r["p05_mean_over_plates"]
        )
        print(f"best {method}: {json.dumps({k: v for k, v in best.items() if k != 'plates'})}")


def worst(out: Path) -> None:
    """The demo's worst field (CFP masks, Otsu x0.7, as ``make demo``) against the inpaint
    stage's hole dilation (the demo uses 2): field mean PhIRM, nuclei and artefact pixels
    summed over its windows, and its worst window."""
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.models import get_model
    from phirm_scale.stages.inpaint import _dilate
    from phirm_scale.stages.masks import MaskSettings, mask_image

    telea = get_model("telea")
    fields = _load(out)["demo"]
    base = MaskSettings(method="otsu")
    res = {}
    for d in range(0, 7):
        per_field = []
        for key, data in fields:
            dapi, cfp, clean = data[0], data[1], data[2]
            mask = _dilate(mask_image(cfp, base) > 0, d)
            rec = inpaint_field(dapi, mask, telea)
            ph, r = _true_phirm(clean, rec)
            i = int(np.argmin(ph))
            per_field.append(
                {
                    "field": f"{key[0]}{key[1]}/{key[2]}",
                    "phirm_mean": float(ph.mean()),
                    "nuclei_ref": int(r["ref_nuclei_count"].sum()),
                    "nuclei_rec": int(r["rec_nuclei_count"].sum()),
                    "artefact_px_left": int(
                        r["rec_artefact_area"].sum() - r["ref_artefact_area"].sum()
                    ),
                    "worst_window": i,
                    "worst_window_phirm": float(ph[i]),
                }
            )
        w = min(per_field, key=lambda x: x["phirm_mean"])
        res[d] = {
            "worst": w,
            "plate_mean": float(np.mean([f["phirm_mean"] for f in per_field])),
            "fields": per_field,
        }
        print(
            f"dilate {d}: plate mean {res[d]['plate_mean']:.3f}; worst field {w['field']} "
            f"PhIRM {w['phirm_mean']:.3f}, nuclei {w['nuclei_ref']} -> {w['nuclei_rec']}, "
            f"artefact px left {w['artefact_px_left']}, worst window {w['worst_window']} "
            f"{w['worst_window_phirm']:.3f}",
            flush=True,
        )
        a02 = [f for f in per_field if f["field"] == "A02/1"]
        if a02:
            f = a02[0]
            print(
                f"   A02/1: PhIRM {f['phirm_mean']:.3f}, nuclei {f['nuclei_ref']} -> "
                f"{f['nuclei_rec']}, artefact px left {f['artefact_px_left']}",
                flush=True,
            )
    (out / "worst.json").write_text(json.dumps(res, indent=1))


def validate(
    out: Path,
    *,
    draws: int | None = None,
    method: str = "saturation",
    dilation: int | None = None,
    selfcheck_threshold: float = 0.9,
) -> list[dict]:
    """The real pipeline per plate: masks, Telea, true QC, self-check QC and flags."""
    from scipy.stats import spearmanr

    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.masks import make_artefact_masks
    from phirm_scale.stages.score import score_plates
    from phirm_scale.stages.selfcheck import selfcheck_qc

    rows = []
    label = f"v_{method}"
    for name, *_ in PLATES:
        plate = out / f"{name}.ome.zarr"
        rest = out / f"{name}_{method}_telea.ome.zarr"
        t = time.perf_counter()
        make_artefact_masks(
            plate,
            channel="CFP" if method == "otsu" else "DAPI",
            name=label,
            method=method,
            dilation=dilation,
            overwrite=True,
            cluster="threads",
            progress=False,
        )
        inpaint_plate(
            plate,
            rest,
            channel="DAPI",
            mask_label=label,
            model="telea",
            cluster="threads",
            overwrite=True,
            progress=False,
        )
        true = score_plates(f"{plate}:DAPI_clean", f"{rest}:DAPI", mask_label=label)
        ds = selfcheck_qc(true, rest, draws=draws, selfcheck_threshold=selfcheck_threshold)
        f_true = ds.field_phirm_mean.values.ravel()
        f_self = ds.field_selfcheck_phirm_mean.values.ravel()
        holes = ds.masked_fraction_field.values.ravel() > 0
        ok = np.isfinite(f_true) & np.isfinite(f_self) & holes
        rho = float(spearmanr(f_self[ok], f_true[ok]).statistic) if ok.sum() > 2 else None
        flag = ds.flag.values.ravel()[ok]
        bad = f_true[ok] < selfcheck_threshold
        row = {
            "plate": name,
            "fields": int(ok.sum()),
            "true_mean": float(ds.plate_phirm_mean),
            "self_mean": float(ds.plate_selfcheck_phirm_mean),
            "spearman": rho,
            "bad_fields": int(bad.sum()),
            "bad_flagged": int(((flag > 0) & bad).sum()),
            "good_flagged": int(((flag > 0) & ~bad).sum()),
            "residual_px_max": float(np.nanmax(ds.residual_artefact_area.values)),
            "seconds": time.perf_counter() - t,
            "field_true": f_true[ok].tolist(),
            "field_self": f_self[ok].tolist(),
            "field_residual": ds.residual_artefact_area.values.ravel()[ok].tolist(),
            "field_flag": flag.tolist(),
        }
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("field_")}), flush=True)
    (out / f"validate_{method}.json").write_text(json.dumps(rows, indent=1))
    return rows


def holes_nuclei(out: Path, *, method: str = "saturation") -> dict:
    """Would ``nuclei_in_holes`` flag the truly bad fields? After ``validate`` (its restored
    plates and masks): per field with holes, the true field PhIRM and the reference-free
    ``nuclei_in_holes`` of ``fieldqc.field_checks``; flagged bad / good at >= 1 and >= 2.
    """
    from phirm_scale import fieldqc
    from phirm_scale.plate import open_plate
    from phirm_scale.stages.score import score_plates

    label = f"v_{method}"
    rows = []
    for name, *_ in PLATES:
        src = out / f"{name}.ome.zarr"
        rest = out / f"{name}_{method}_telea.ome.zarr"
        ds = score_plates(f"{src}:DAPI_clean", f"{rest}:DAPI", mask_label=label)
        s, r = open_plate(src), open_plate(rest)
        for k in s.fields:
            holes = s.read_label(k, label) > 0
            if not holes.any():
                continue
            fc = fieldqc.field_checks(s.read_field(k, "DAPI"), r.read_field(k, "DAPI"), holes)
            true = float(ds.field_phirm_mean.sel(row=k.row, column=k.column, field=k.field))
            rows.append((name, str(k), true, fc["nuclei_in_holes"]))
    bad = [x for x in rows if x[2] < 0.9]
    good = [x for x in rows if x[2] >= 0.9]
    res = {
        "fields": len(rows),
        "bad": [list(x) for x in bad],
        **{
            f"at_least_{t}": {
                "bad_flagged": sum(x[3] >= t for x in bad),
                "good_flagged": sum(x[3] >= t for x in good),
                "good": len(good),
            }
            for t in (1, 2)
        },
    }
    print(json.dumps(res), flush=True)
    (out / f"holes_nuclei_{method}.json").write_text(json.dumps(res, indent=1))
    return res


def draws(out: Path, *, plate: str = "p2", n_fields: int = 24, seeds: int = 3) -> None:
    """How many pseudo-hole draws a field needs: spread of the field self-check PhIRM across
    seeds, and time, against the number of draws (Telea, saturation masks, dilation 2)."""
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.masks import saturation_mask
    from phirm_scale.models import get_model
    from phirm_scale.selfcheck import selfcheck_field

    telea = get_model("telea")
    fields = _load(out)[plate][:n_fields]
    prepared = []
    for _key, data in fields:
        holes = saturation_mask(data[0], dilation=2)
        prepared.append((data[0], holes, inpaint_field(data[0], holes, telea)))
    res = {}
    for n in (1, 2, 4, 8):
        t = time.perf_counter()
        vals = np.empty((seeds, len(prepared)))
        for s in range(seeds):
            for i, (src, holes, rest) in enumerate(prepared):
                sc = selfcheck_field(src, holes, telea, restored=rest, seed_key=(s, i), draws=n)
                vals[s, i] = np.mean(sc["selfcheck_phirm"])
        sec = (time.perf_counter() - t) / (seeds * len(prepared))
        res[n] = {
            "field_sd_across_seeds": float(vals.std(axis=0, ddof=1).mean()),
            "plate_mean_sd_across_seeds": float(vals.mean(axis=1).std(ddof=1)),
            "plate_mean": float(vals.mean()),
            "seconds_per_field": sec,
        }
        print(
            f"draws {n}: field SD across seeds {res[n]['field_sd_across_seeds']:.4f}, plate "
            f"mean {res[n]['plate_mean']:.4f} (SD {res[n]['plate_mean_sd_across_seeds']:.4f})"
            f", {sec:.3f} s per field",
            flush=True,
        )
    (out / "draws.json").write_text(json.dumps(res, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "what",
        choices=["plates", "sweep", "print-sweep", "worst", "draws", "validate", "holes-nuclei"],
    )
    ap.add_argument("--out", type=Path, default=Path("qcval"))
    ap.add_argument("--method", default="saturation")
    ap.add_argument("--dilation", type=int, default=None)
    ap.add_argument("--draws", type=int, default=None)
    a = ap.parse_args()
    if a.what == "plates":
        build_plates(a.out)
    elif a.what == "sweep":
        sweep(a.out)
        print_sweep(a.out)
    elif a.what == "print-sweep":
        print_sweep(a.out)
    elif a.what == "worst":
        worst(a.out)
    elif a.what == "draws":
        draws(a.out)
    elif a.what == "holes-nuclei":
        holes_nuclei(a.out, method=a.method)
    else:
        validate(a.out, draws=a.draws, method=a.method, dilation=a.dilation)


if __name__ == "__main__":
    main()
