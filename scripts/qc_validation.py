"""Validation of the ground-truth-free QC on composite plates of the shipped BBBC039 fields.

Reproduces the tables of docs/qc-without-ground-truth.md:

    python scripts/qc_validation.py plates   --out qcval     # demo plate + 3 composite plates
    python scripts/qc_validation.py sweep    --out qcval     # mask defaults (Telea)
    python scripts/qc_validation.py worst    --out qcval     # the demo's worst field vs dilation
    python scripts/qc_validation.py draws    --out qcval     # self-check spread vs draws
    python scripts/qc_validation.py validate --out qcval     # self-check vs true PhIRM, flags
    python scripts/qc_validation.py holes-nuclei --out qcval # nuclei_in_holes as a flag?
    python scripts/qc_validation.py candidates --out qcval   # section 7: predictors explored
    python scripts/qc_validation.py labelled --out qcval --split tuning|held-out
    python scripts/qc_validation.py labelled-extra --out qcval --split tuning|held-out
    python scripts/qc_validation.py rule --out qcval [--split held-out]  # choose, then report

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


#: The labelled set of section 7: composite plates of the 49 shipped fields (7 x 7 x 1, as
#: ``plates``) at these densities; TUNING seeds choose the rule, HELD_OUT seeds report it.
LABELLED_DENSITIES = (0.05, 0.08, 0.12, 0.16)
TUNING_SEEDS = (101, 102, 103, 104, 105, 106)
HELD_OUT_SEEDS = (201, 202, 203, 204, 205, 206)


def _source_set(index: int) -> str:
    """Source fields are split too: 'A' (even index in the sorted shipped fields) and 'B'."""
    return "A" if index % 2 == 0 else "B"


def _labelled_fields(path: Path, seeds, densities):
    """Yield the labelled plates' fields that ``path`` does not hold yet, in order.

    Each as ``(plate, seed, density, source_index, key, name, source, dapi, clean, holes)``:
    the plates are ``seeds`` x ``densities``, 7 x 7 fields each, made in memory by
    ``synthetic.make_field`` as ``make_plate`` makes them, with saturation masks at the
    defaults; ``path`` holds JSON lines with ``plate`` and ``field`` (resumable runs). Prints
    each plate's count of new fields and its time.
    """
    from phirm_scale.plate import FieldKey, row_name
    from phirm_scale.stages.masks import MaskSettings, mask_image
    from phirm_scale.synthetic import _list_sources, make_field

    done = set()
    if path.exists():
        done = {(r["plate"], r["field"]) for r in map(json.loads, path.read_text().splitlines())}
    sources = _list_sources(DATA)
    settings = MaskSettings(method="saturation")
    keys = [FieldKey(row_name(r), str(c + 1).zfill(2), 0) for r in range(7) for c in range(7)]
    for seed in seeds:
        for dens in densities:
            plate = f"s{seed}_d{dens:g}"
            t = time.perf_counter()
            n = 0
            for i, k in enumerate(keys):
                fname = f"{k.row}{k.column}/{k.field}"
                if (plate, fname) in done:
                    continue
                si = i % len(sources)
                data, _ = make_field(
                    k, size=(520, 696), seed=seed, artefacts=dens, source=str(sources[si])
                )
                holes = mask_image(data[0], settings) != 0
                yield plate, seed, dens, si, k, fname, sources[si], data[0], data[2], holes
                n += 1
            print(f"{plate}: {n} fields in {time.perf_counter() - t:.0f} s", flush=True)


def _append(path: Path, row: dict) -> None:
    """Add one JSON line to ``path`` (the resumable per-field files)."""
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def labelled(out: Path, *, split: str) -> None:
    """Per field of the ``split`` plates: the true PhIRM of the Telea restoration (saturation
    masks at the defaults) and every reference-free check (``fieldqc.field_checks``).

    The plates are the ones ``make_plate`` writes (7 x 7 x 1, 520 x 696, ``from_fields`` the
    shipped fields, the seed and density of the plate): each field is made in memory by
    ``synthetic.make_field``, the function ``make_plate`` calls per field with the same key,
    seed and source, so the pixels are identical and 48 plates need no 2 GB of stores.
    Resumable: one JSON line per field in ``OUT/labelled_SPLIT.jsonl``.
    """
    from phirm_scale import fieldqc
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.models import get_model

    seeds = TUNING_SEEDS if split == "tuning" else HELD_OUT_SEEDS
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"labelled_{split}.jsonl"
    telea = get_model("telea")
    for plate, seed, dens, si, _, fname, src, dapi, clean, holes in _labelled_fields(
        path, seeds, LABELLED_DENSITIES
    ):
        rest = inpaint_field(dapi, holes, telea)
        ph, r = _true_phirm(clean, rest)
        _append(
            path,
            {
                "plate": plate,
                "split": split,
                "seed": seed,
                "density": dens,
                "field": fname,
                "source": src.name,
                "source_set": _source_set(si),
                "true": float(ph.mean()),
                "true_min_window": float(ph.min()),
                "true_nuclei_lost": int(r["ref_nuclei_count"].sum() - r["rec_nuclei_count"].sum()),
                **fieldqc.field_checks(dapi, rest, holes, name=fname),
            },
        )


# ------------------------------------------------ section 7: candidates (exploration, tuning)
def _local_selfcheck(src, hole, restored, telea, seed_key, *, draws=4, radius=48, margin=4):
    """Self-check whose pseudo-holes are the field's own hole components *moved* (not rotated)
    by up to ``radius`` + their size to a free position near where they are (same
    neighbourhood, same nuclei density), scored per QC window against the restored field."""
    import cv2

    from phirm_scale import fieldqc, metric, qc
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.masks import saturation_mask
    from phirm_scale.selfcheck import _grow, _try_place, _window_components

    params = metric.PhirmParams()
    grid = qc.window_grid(src.shape, 256)
    lo, hi = fieldqc.known_range(src, hole)
    ref8 = metric.to_uint8(restored, lo=lo, hi=hi)
    forbidden = hole | (saturation_mask(src, dilation=0) != 0)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    comps = []
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i, :4])
        comps.append((y, x, labels[y : y + h, x : x + w] == i))
    fh_, fw_ = src.shape
    sums, used, cache = np.zeros(len(grid)), 0, {}
    for d in range(draws):
        rng = np.random.default_rng(np.random.SeedSequence([*seed_key, d]))
        occ, pseudo = forbidden.copy(), np.zeros_like(hole)
        for y0, x0, c in comps:
            h, w = c.shape
            g, r = _grow(c, margin), radius + max(h, w)
            for _ in range(60):
                y, x = y0 + int(rng.integers(-r, r + 1)), x0 + int(rng.integers(-r, r + 1))
                if y < 0 or x < 0 or y + h > fh_ or x + w > fw_:
                    continue
                if _try_place(occ, pseudo, c, g, y, x, margin):
                    break
        if not pseudo.any():
            continue
        used += 1
        filled = inpaint_field(src, hole | pseudo, telea)
        rec = restored.copy()
        rec[pseudo] = filled[pseudo]
        rec8 = metric.to_uint8(rec, lo=lo, hi=hi)
        touched = np.flatnonzero([pseudo[sl].any() for sl in grid.slices()])
        cache.update(
            _window_components(ref8, grid, [int(i) for i in touched if i not in cache], params)
        )
        rc = _window_components(rec8, grid, touched, params)
        a = np.array([cache[i] for i in touched], float).reshape(-1, 3)
        b = np.array([rc[i] for i in touched], float).reshape(-1, 3)
        ph = metric.phirm_from_components(a[:, 0], a[:, 1], a[:, 2], b[:, 0], b[:, 1], b[:, 2])[3]
        full = np.ones(len(grid))
        full[touched] = ph
        sums += full
    return sums / used if used else np.full(len(grid), np.nan)


def _hole_neighbourhood(src, hole, *, ring=8, radius=64):
    """Other expected-loss measures: nucleus-pixel fraction of an 8-px ring around each hole
    component x its area (per window, max; and field sum: ``ring_px_field`` is the shipped
    :func:`phirm_scale.fieldqc.expected_hidden_nuclear_area` itself, so the documented
    numbers measure it), restored nuclei touching a hole, hole pixels per window (max), and
    the expected hidden nuclei of holes eroded by k x the nucleus radius (k = 0.5, 1: only
    nuclei a hole covers deeply)."""
    import cv2

    from phirm_scale import fieldqc, metric, qc

    grid = qc.window_grid(src.shape, 256)
    lo, hi = fieldqc.known_range(src, hole)
    img = src.astype(np.float64)
    img[hole] = lo
    seg = metric.label_components(metric.to_uint8(img, lo=lo, hi=hi))
    nid = seg.ids[~seg.artefact]
    nuc = np.isin(seg.labels, nid) & (seg.labels > 0)
    area = seg.area[~seg.artefact]
    r_nuc = float(np.sqrt(np.median(area) / np.pi)) if area.size else 10.0
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    fmap, touching = np.zeros(src.shape), set()
    ell = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    for i in range(1, n):
        x, y, w, h = (int(v) for v in stats[i, :4])
        ya, xa = max(0, y - ring), max(0, x - ring)
        yb, xb = min(src.shape[0], y + h + ring), min(src.shape[1], x + w + ring)
        c = labels[ya:yb, xa:xb] == i
        rg = cv2.dilate(c.astype(np.uint8), ell).astype(bool) & ~hole[ya:yb, xa:xb]
        fmap[ya:yb, xa:xb][c] = nuc[ya:yb, xa:xb][rg].mean() if rg.any() else 0.0
        adj = cv2.dilate(c.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        adj &= ~hole[ya:yb, xa:xb] & nuc[ya:yb, xa:xb]
        touching.update(np.unique(seg.labels[ya:yb, xa:xb][adj]).tolist())
    out = {
        "ring_px_win_max": max(float(fmap[sl].sum()) for sl in grid.slices()),
        "ring_px_field": fieldqc.expected_hidden_nuclear_area(src, hole, ring=ring),
        "nuclei_touching_holes": float(len(touching)),
        "hole_px_win_max": max(float(hole[sl].sum()) for sl in grid.slices()),
    }
    for k in (0.5, 1.0):
        e = max(1, int(round(k * r_nuc)))
        ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * e + 1, 2 * e + 1))
        deep = cv2.erode(hole.astype(np.uint8), ker).astype(bool)
        out[f"hidden_eroded_{k:g}"] = fieldqc.expected_hidden_nuclei(src, hole, radius=radius) * (
            float(deep.sum()) / max(1.0, float(hole.sum()))
        )
    return out


def candidates(out: Path) -> None:
    """Section 7's first pass, on tuning seeds 101-103 at densities 0.05, 0.08, 0.12 (all 49
    sources): per field the true PhIRM and every candidate predictor, then per candidate its
    AUC for 'truly bad' and the good fields flagged at the threshold that flags 80 % of the
    bad ones. Exploration only: it chose which predictor the ``rule`` step tunes."""
    from phirm_scale import fieldqc
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.models import get_model
    from phirm_scale.plate import row_index
    from phirm_scale.selfcheck import selfcheck_field

    path = out / "candidates.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    telea = get_model("telea")
    for plate, seed, _, _, k, fname, _, dapi, clean, hole in _labelled_fields(
        path, TUNING_SEEDS[:3], LABELLED_DENSITIES[:3]
    ):
        rest = inpaint_field(dapi, hole, telea)
        ph, _ = _true_phirm(clean, rest)
        sk = (seed, row_index(k.row), int(k.column), int(k.field))
        g = selfcheck_field(dapi, hole, telea, restored=rest, seed_key=sk)["selfcheck_phirm"]
        loc = _local_selfcheck(dapi, hole, rest, telea, sk)
        _append(
            path,
            {
                "plate": plate,
                "field": fname,
                "true": float(ph.mean()),
                "selfcheck_mean": float(np.mean(g)),
                "selfcheck_min_window": float(np.min(g)),
                "local_selfcheck_mean": float(np.mean(loc)),
                "local_selfcheck_min_window": float(np.min(loc)),
                **_hole_neighbourhood(dapi, hole),
                **fieldqc.field_checks(dapi, rest, hole, name=fname),
            },
        )
    rows = [r for r in map(json.loads, path.read_text().splitlines()) if r["masked_fraction_field"]]
    bad = np.array([r["true"] < 0.9 for r in rows])
    lower_is_worse = {
        "selfcheck_mean",
        "selfcheck_min_window",
        "local_selfcheck_mean",
        "local_selfcheck_min_window",
    }
    print(f"{len(rows)} fields with holes, {int(bad.sum())} truly bad")
    print("| candidate (higher = worse unless noted) | AUC | good flagged at 80 % of bad |")
    print("|---|---|---|")
    res = {}
    for var in [k for k in rows[0] if k not in ("plate", "field", "true")]:
        s = np.array([r[var] for r in rows], float)
        if var in lower_is_worse:
            s = -s
        pos, neg = s[bad], s[~bad]
        auc = float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())
        thr = np.sort(pos)[int(np.floor(0.2 * pos.size))]
        ff = float((neg >= thr).mean())
        res[var] = {"auc": auc, "false_flag_at_80": ff}
        note = " (lower = worse)" if var in lower_is_worse else ""
        print(f"| {var}{note} | {auc:.3f} | {100 * ff:.0f} % |")
    (out / "candidates.json").write_text(json.dumps(res, indent=1))


def labelled_extra(out: Path, *, split: str) -> None:
    """Section 7b: the ring measures of ``_hole_neighbourhood`` for every field of the
    ``split`` plates (no inpainting needed), one JSON line per field in
    ``OUT/labelled_extra_SPLIT.jsonl``; ``rule`` adds them to its candidates."""
    seeds = TUNING_SEEDS if split == "tuning" else HELD_OUT_SEEDS
    path = out / f"labelled_extra_{split}.jsonl"
    for plate, _, _, _, _, fname, _, dapi, _, holes in _labelled_fields(
        path, seeds, LABELLED_DENSITIES
    ):
        _append(path, {"plate": plate, "field": fname, **_hole_neighbourhood(dapi, holes)})


#: Candidate reference-free predictors of a bad restoration (higher = worse), section 7.
RULE_CANDIDATES = ("expected_hidden_nuclei", "nuclei_in_holes", "masked_fraction_field")
#: Section 7b: candidates added after the ``candidates`` table (``labelled-extra``).
RULE_CANDIDATES_7B = ("ring_px_field", "nuclei_touching_holes")
#: Tuning recall a threshold must reach (a margin above the 80 % target).
TUNING_RECALL = 0.85
#: Highest false-flag rate (good fields flagged / good fields) accepted, fixed before the
#: held-out plates were made: a user re-checks flagged fields by eye, so fewer than half of
#: the good fields, and well below the trivial hole-area rule at the same recall (section 7;
#: first set at 0.30 before the tuning numbers, raised after them, before the held-out run).
ACCEPTED_FALSE_FLAG = 0.40


def _rows(out: Path, split: str) -> list[dict]:
    path = out / f"labelled_{split}.jsonl"
    if not path.exists():
        raise SystemExit(f"error: {path}: run `labelled --split {split}` first")
    rows = [
        r for r in map(json.loads, path.read_text().splitlines()) if r["masked_fraction_field"] > 0
    ]
    extra = out / f"labelled_extra_{split}.jsonl"
    if extra.exists():  # section 7b's ring measures
        more = {
            (r["plate"], r["field"]): r for r in map(json.loads, extra.read_text().splitlines())
        }
        for r in rows:
            r.update(more.get((r["plate"], r["field"]), {}))
    return rows


def _counts(rows: list[dict], var: str, thr: float, bad_below: float = 0.9) -> dict:
    bad = [r for r in rows if r["true"] < bad_below]
    good = [r for r in rows if r["true"] >= bad_below]
    return {
        "fields": len(rows),
        "bad": len(bad),
        "bad_flagged": sum(r[var] >= thr for r in bad),
        "good": len(good),
        "good_flagged": sum(r[var] >= thr for r in good),
    }


def _fmt(c: dict) -> str:
    rec = c["bad_flagged"] / c["bad"] if c["bad"] else float("nan")
    ff = c["good_flagged"] / c["good"] if c["good"] else float("nan")
    return (
        f"{c['fields']} | {c['bad']} | {c['bad_flagged']} ({100 * rec:.0f} %) | "
        f"{c['good_flagged']} of {c['good']} ({100 * ff:.0f} %)"
    )


def rule(out: Path, *, held_out: bool = False) -> dict:
    """Choose the flag rule on the tuning plates (source set A only), then (``--split
    held-out``) report it on the held-out plates: all sources, and source set B only (fields
    never seen while tuning)."""
    tune = [r for r in _rows(out, "tuning") if r["source_set"] == "A"]
    res: dict = {"tuning": {}}
    print(f"tuning: seeds {TUNING_SEEDS}, densities {LABELLED_DENSITIES}, source set A")
    print("| predictor | threshold | fields | truly bad | bad flagged | good flagged |")
    print("|---|---|---|---|---|---|")
    best = None
    extra = [v for v in RULE_CANDIDATES_7B if tune and v in tune[0]]
    for var in (*RULE_CANDIDATES, *extra):
        vals = np.sort([r[var] for r in tune if r["true"] < 0.9])
        thr = float(vals[int(np.floor((1 - TUNING_RECALL) * len(vals)))])
        if var != "masked_fraction_field":  # a round default, never above
            thr = float(np.floor(thr / 100) * 100 if thr >= 100 else np.floor(thr * 2) / 2)
        c = _counts(tune, var, thr)
        res["tuning"][var] = {"threshold": thr, **c}
        print(f"| {var} | >= {thr:g} | {_fmt(c)} |")
        if best is None or c["good_flagged"] < res["tuning"][best]["good_flagged"]:
            best = var
    assert best is not None
    res["chosen"] = {"variable": best, "threshold": res["tuning"][best]["threshold"]}
    print(f"chosen on the tuning plates: {best} >= {res['chosen']['threshold']:g}")
    from phirm_scale.fieldqc import DEFAULT_HIDDEN_THRESHOLD

    print(
        "(the product's flag bit 8: expected_hidden_nuclear_area, the `ring_px_field` here, "
        f">= {DEFAULT_HIDDEN_THRESHOLD:g})"
    )
    print("| tuning plates (set A) | fields | truly bad | bad flagged | good flagged |")
    print("|---|---|---|---|---|")
    res["tuning_by_density"] = {}
    for d in LABELLED_DENSITIES:
        c = _counts([r for r in tune if r["density"] == d], best, res["chosen"]["threshold"])
        res["tuning_by_density"][d] = c
        print(f"| density {d:g} | {_fmt(c)} |")
    if held_out:
        var, thr = best, res["chosen"]["threshold"]
        rows = _rows(out, "held-out")
        print(f"held-out: seeds {HELD_OUT_SEEDS}, rule {var} >= {thr:g}")
        print("| plates | fields | truly bad | bad flagged | good flagged |")
        print("|---|---|---|---|---|")
        res["held_out"] = {}
        groups = [
            (f"density {d:g}", [r for r in rows if r["density"] == d]) for d in LABELLED_DENSITIES
        ]
        groups += [
            ("all, source set A", [r for r in rows if r["source_set"] == "A"]),
            ("all, source set B (unseen)", [r for r in rows if r["source_set"] == "B"]),
            ("all", rows),
        ]
        for name, g in groups:
            c = _counts(g, var, thr)
            res["held_out"][name] = c
            print(f"| {name} | {_fmt(c)} |")
        # the product's flag without the self-check: bit 8 or bit 2 (residual > 50 px)
        for r in rows:
            r["_product"] = float(r[var] >= thr or r["residual_artefact_area"] > 50)
        c = _counts(rows, "_product", 1.0)
        res["held_out"]["all, hidden or residual flag"] = c
        print(f"| all, flag bit 8 or bit 2 (residual > 50 px) | {_fmt(c)} |")
        c = res["held_out"]["all"]
        met = (
            c["bad_flagged"] >= 0.8 * c["bad"]
            and c["good_flagged"] <= ACCEPTED_FALSE_FLAG * c["good"]
        )
        res["met"] = bool(met)
        print(
            f"target (>= 80 % bad flagged, <= {ACCEPTED_FALSE_FLAG:.0%} good flagged): "
            + ("met" if met else "NOT met")
        )
    (out / f"rule{'_held_out' if held_out else ''}.json").write_text(json.dumps(res, indent=1))
    return res


# ------------------------------------ section 8: blurred rims, defaults and estimated_phirm
#: Artefact loads (fraction of the field) and seeds of section 8's plates (4 x 4 x 1 wells).
RIM_LOADS = (0.01, 0.02, 0.03, 0.04)
RIM_SEEDS = {"tuning": (301,), "held-out": (401,)}
RIM_DILATIONS = (0, 1, 2, 3, 4)
RIM_SIZE = (520, 696)
SIGMA_LO, SIGMA_HI = 0.5, 1.5
#: The masks stage's dilations before section 8 measured them (``rim-defaults``' inpaint
#: columns grow these at the inpaint stage).
OLD_MASKS = {"otsu": 0, "saturation": 1}


def blurred_rim_field(key, *, seed: int, load: float, source):
    """One composite field whose artefacts have a blurred rim, as real dust and fibres do.

    ``synthetic.make_field`` gives the clean field and the hard artefact footprint; the
    footprint is blurred (Gaussian, sigma drawn per field in 0.5-1.5 px) and doubled, so the
    footprint stays saturated and a rim falls off outside it over about 2 sigma (a camera's
    blur of a saturated object: the rim is far brighter than any nucleus); the nuclei
    channel is ``composite(clean, intensity)`` and the artefact channel drawn from the same
    intensity (``synthetic.artefact_channel``). Returns ``(dapi, cfp, clean)``.
    """
    from scipy import ndimage as ndi

    from phirm_scale.plate import row_index
    from phirm_scale.synthetic import artefact_channel, composite, make_field

    data, mask = make_field(key, size=RIM_SIZE, seed=seed, artefacts=load, source=source)
    rng = np.random.default_rng([seed, 8, row_index(key[0]), int(key[1]), int(key[2])])
    sigma = rng.uniform(SIGMA_LO, SIGMA_HI)
    g = np.clip(2.0 * ndi.gaussian_filter(mask.astype(np.float64), sigma), 0.0, 1.0)
    texture = np.clip(1.05 + 0.15 * rng.standard_normal(mask.shape), 0.85, 1.0)
    intensity = (g * texture).astype(np.float32)
    return composite(data[2], intensity), artefact_channel(intensity, rng=rng), data[2]


def _rim_plates(split: str):
    """Yield ``(plate, seed, load, key, fname, source)`` of section 8's plates."""
    from phirm_scale.plate import FieldKey, row_name
    from phirm_scale.synthetic import _list_sources

    sources = _list_sources(DATA)
    keys = [FieldKey(row_name(r), str(c + 1).zfill(2), 0) for r in range(4) for c in range(4)]
    for seed in RIM_SEEDS[split]:
        for li, load in enumerate(RIM_LOADS):
            for i, k in enumerate(keys):
                src = sources[(i * 3 + li * 16 + seed) % len(sources)]
                yield f"r{seed}_l{load:g}", seed, load, k, f"{k.row}{k.column}/{k.field}", src


def _window_residual(restored, lo, hi, grid):
    """PhIRM's artefact area per window of the restored field (8 bit with ``lo``/``hi``)."""
    from phirm_scale import metric

    u8 = metric.to_uint8(restored, lo=lo, hi=hi)
    return [
        float(metric.components(np.ascontiguousarray(u8[sl])).artefact_area) for sl in grid.slices()
    ]


def rim_defaults(out: Path, *, split: str = "tuning") -> None:
    """Part 1: true plate PhIRM (Telea) of every mask setting on the blurred-rim plates.

    Per field and load: masks ``otsu`` (CFP, factor 0.7) and ``saturation`` (DAPI) at the
    masks stage's dilation 0-4 (disk), and, on the masks at their stage defaults, the
    inpaint stage's ``--dilate`` 0-4 (the masks' disk since issue 21; OpenCV's ellipse when
    section 8 was measured, whose tables use none of these columns). One JSON line per
    (field, setting) in ``OUT/rim_defaults_SPLIT.jsonl``.
    """
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.models import get_model
    from phirm_scale.stages.inpaint import _dilate
    from phirm_scale.stages.masks import MaskSettings, mask_image

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"rim_defaults_{split}.jsonl"
    done = set()
    if path.exists():
        done = {r["plate"] + r["field"] for r in map(json.loads, path.read_text().splitlines())}
    telea = get_model("telea")
    for plate, seed, load, key, fname, src in _rim_plates(split):
        if plate + fname in done:
            continue
        t = time.perf_counter()
        dapi, cfp, clean = blurred_rim_field(key, seed=seed, load=load, source=str(src))
        row = {"plate": plate, "load": load, "field": fname, "source": src.name}
        for method in ("otsu", "saturation"):
            img = cfp if method == "otsu" else dapi
            for stage, ds in (("masks", RIM_DILATIONS), ("inpaint", RIM_DILATIONS)):
                for d in ds:
                    if stage == "masks":
                        holes = mask_image(img, MaskSettings(method=method, dilation=d)) != 0
                    else:
                        base = mask_image(
                            img, MaskSettings(method=method, dilation=OLD_MASKS[method])
                        )
                        base = base != 0
                        holes = _dilate(base, d) != 0
                    ph, _ = _true_phirm(clean, inpaint_field(dapi, holes, telea))
                    row[f"{method}_{stage}{d}"] = float(ph.mean())
        row["seconds"] = time.perf_counter() - t
        _append(path, row)
        print(plate, fname, f"{row['seconds']:.1f} s", flush=True)


def rim_estimate(out: Path, *, split: str = "tuning", draws: int = 4) -> None:
    """Part 2: per field of the blurred-rim plates, at ``run --dilate`` 0-4 and both mask
    methods (masks at dilation 0-4, as ``run --dilate`` makes them): the true window PhIRM
    of the Telea restoration, the self-check (``selfcheck.selfcheck_field``, the field's own
    shapes, 4 draws, seed 0 as ``run``), the field checks and the per-window residual
    artefact area; one JSON line per (field, method, dilation) in
    ``OUT/rim_estimate_SPLIT.jsonl`` (resumable). The estimate is computed from them by
    ``rim_report``.
    """
    from phirm_scale import fieldqc, qc
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.models import get_model
    from phirm_scale.plate import row_index
    from phirm_scale.selfcheck import selfcheck_field
    from phirm_scale.stages.masks import MaskSettings, mask_image

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"rim_estimate_{split}.jsonl"
    done = set()
    if path.exists():
        done = {
            (r["plate"], r["field"], r["method"], r["dilate"])
            for r in map(json.loads, path.read_text().splitlines())
        }
    telea = get_model("telea")
    grid = qc.window_grid(RIM_SIZE, 256)
    for plate, seed, load, key, fname, src in _rim_plates(split):
        todo = [
            (m, d)
            for m in ("otsu", "saturation")
            for d in RIM_DILATIONS
            if (plate, fname, m, d) not in done
        ]
        if not todo:
            continue
        t = time.perf_counter()
        dapi, cfp, clean = blurred_rim_field(key, seed=seed, load=load, source=str(src))
        for method, d in todo:
            # ``run --dilate d``: the masks stage's dilation d (disk), nothing more at inpaint
            settings = MaskSettings(method=method, dilation=d)
            holes = mask_image(cfp if method == "otsu" else dapi, settings) != 0
            rest = inpaint_field(dapi, holes, telea)
            ph, r = _true_phirm(clean, rest)
            sc = selfcheck_field(
                dapi,
                holes,
                telea,
                restored=rest,
                seed_key=(0, row_index(key.row), int(key.column), int(key.field)),
                draws=draws,
                window=256,
            )
            fc = fieldqc.field_checks(dapi, rest, holes, name=fname)
            terms = fieldqc.residual_window_terms(dapi, rest, holes, list(grid.slices()))
            _append(
                path,
                {
                    "plate": plate,
                    "split": split,
                    "load": load,
                    "field": fname,
                    "source": src.name,
                    "method": method,
                    "dilate": d,
                    "true_window": ph.tolist(),
                    "true_components": {k: v.tolist() for k, v in r.items()},
                    "hole_window": [float(holes[sl].sum()) for sl in grid.slices()],
                    **{k: v.tolist() for k, v in terms.items()},
                    **{k: np.asarray(v).tolist() for k, v in sc.items()},
                    **fc,
                },
            )
        print(f"{plate} {fname}: {time.perf_counter() - t:.0f} s", flush=True)


def rim_report(out: Path, *, split: str = "tuning") -> dict:
    """Section 8's tables from ``rim_estimate``'s lines: per plate (load, mask method, run
    dilation) the true plate PhIRM, the self-check's and ``estimated_phirm``'s plate means
    (``fieldqc.estimated_phirm`` per window, mean over the plate's windows) and the per-field
    Spearman correlations with the truth."""
    from scipy.stats import spearmanr

    from phirm_scale import fieldqc

    path = out / f"rim_estimate_{split}.jsonl"
    if not path.exists() and path.with_suffix(".jsonl.gz").exists():  # docs/data/rim
        import gzip

        text = gzip.decompress(path.with_suffix(".jsonl.gz").read_bytes()).decode()
    else:
        text = path.read_text()
    rows = [json.loads(x) for x in text.splitlines()]
    groups: dict = {}
    for r in rows:
        r["est_window"] = fieldqc.estimated_phirm(
            r["selfcheck_phirm"],
            r["residual_artefact_window"],
            r["residual_hidden_nuclei"],
            r["residual_hidden_nuclear_area"],
        )
        groups.setdefault((r["load"], r["method"], r["dilate"]), []).append(r)
    print(
        "| load | masks | --dilate | fields | true | self-check | estimate | error | "
        "Spearman self-check | Spearman estimate |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    table = []
    for (load, method, d), rs in sorted(groups.items()):
        ok = [r for r in rs if np.isfinite(r["est_window"]).all()]
        t = np.array([np.mean(r["true_window"]) for r in ok])
        sc = np.array([np.mean(r["selfcheck_phirm"]) for r in ok])
        e = np.array([np.mean(r["est_window"]) for r in ok])
        row = {
            "load": load,
            "method": method,
            "dilate": d,
            "fields": len(ok),
            "true": float(t.mean()),
            "selfcheck": float(sc.mean()),
            "estimate": float(e.mean()),
            "error": float(e.mean() - t.mean()),
            "rho_selfcheck": float(spearmanr(sc, t).statistic),
            "rho_estimate": float(spearmanr(e, t).statistic),
        }
        table.append(row)
        print(
            f"| {load:g} | {method} | {d} | {len(ok)} | {row['true']:.3f} | "
            f"{row['selfcheck']:.3f} | {row['estimate']:.3f} | {row['error']:+.3f} | "
            f"{row['rho_selfcheck']:.2f} | {row['rho_estimate']:.2f} |"
        )
    allt = [np.mean(r["true_window"]) for r in rows if np.isfinite(r["est_window"]).all()]
    alle = [np.mean(r["est_window"]) for r in rows if np.isfinite(r["est_window"]).all()]
    summary = {
        "plates": len(table),
        "plates_within_0.03": sum(abs(r["error"]) <= 0.03 for r in table),
        "max_abs_error": max(abs(r["error"]) for r in table),
        "pooled_spearman_estimate": float(spearmanr(alle, allt).statistic),
        "median_plate_spearman_estimate": float(np.nanmedian([r["rho_estimate"] for r in table])),
    }
    print(json.dumps(summary))
    (out / f"rim_report_{split}.json").write_text(json.dumps({**summary, "rows": table}, indent=1))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "what",
        choices=[
            "plates",
            "sweep",
            "print-sweep",
            "worst",
            "draws",
            "validate",
            "holes-nuclei",
            "candidates",
            "labelled",
            "labelled-extra",
            "rule",
            "rim-defaults",
            "rim-estimate",
            "rim-report",
        ],
    )
    ap.add_argument("--split", choices=["tuning", "held-out"], default="tuning")
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
    elif a.what == "candidates":
        candidates(a.out)
    elif a.what == "labelled-extra":
        labelled_extra(a.out, split=a.split)
    elif a.what == "labelled":
        labelled(a.out, split=a.split)
    elif a.what == "rule":
        rule(a.out, held_out=a.split == "held-out")
    elif a.what == "rim-defaults":
        rim_defaults(a.out, split=a.split)
    elif a.what == "rim-estimate":
        rim_estimate(a.out, split=a.split)
    elif a.what == "rim-report":
        rim_report(a.out, split=a.split)
    elif a.what == "holes-nuclei":
        holes_nuclei(a.out, method=a.method)
    else:
        validate(a.out, draws=a.draws, method=a.method, dilation=a.dilation)


if __name__ == "__main__":
    main()
