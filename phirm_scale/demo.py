"""The demo: the main job on real BBBC039 fields.

1. A plate from the real fields with synthetic artefacts composited on the nuclei channel, as
   the paper did (``DAPI`` = ground truth + artefacts, ``CFP`` = artefact channel,
   ``DAPI_clean`` = ground truth, label ``artefacts_true``).
2. Artefact masks from the CFP channel (paper 3.3) as NGFF labels.
3. Inpainting of the masked DAPI pixels into a derived plate (the source is never modified).
4. PhIRM per 256 window of the damaged and of the restored plate against the ground truth,
   as xarray QC stores, plus an HTML report.

Everything runs on one embedded Dask cluster (or the one given with ``cluster``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from phirm_scale.errors import InputError

if TYPE_CHECKING:
    from phirm_scale.plate import FieldKeyLike, Plate

__all__ = ["default_data_dir", "run_demo"]

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """``../shared/data/bbbc039-rows-A-D`` beside the repository (or the working directory)."""
    here = Path(__file__).resolve().parents[1]
    for base in (here, Path.cwd()):
        cand = base.parent / "shared" / "data" / "bbbc039-rows-A-D"
        if cand.is_dir():
            return cand
    return here.parent / "shared" / "data" / "bbbc039-rows-A-D"


def _iou(plate: Plate, keys: Iterable[FieldKeyLike], a: str, b: str) -> float:
    inter = union = 0
    for k in keys:
        x, y = plate.read_label(k, a) > 0, plate.read_label(k, b) > 0
        inter += int((x & y).sum())
        union += int((x | y).sum())
    return inter / union if union else 1.0


def run_demo(
    data: str | Path | None = None,
    *,
    out: str | Path = "demo_out",
    rows: int = 2,
    columns: int = 4,
    fields: int = 2,
    artefacts: float = 0.03,
    model: str = "telea",
    checkpoint: str | Path | None = None,
    cluster: str = "local",
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the demo pipeline and return the plate-level numbers (the CLI prints them).

    Each step is logged (``phirm_scale.demo``, info); nothing is printed.
    """
    from phirm_scale.cluster import open_cluster
    from phirm_scale.metric import PhirmParams
    from phirm_scale.plate import open_plate, remove_store
    from phirm_scale.qc import level_summary, write_qc
    from phirm_scale.report import write_report
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.stages.masks import DEFAULT_DILATIONS, make_artefact_masks
    from phirm_scale.stages.score import score_plates
    from phirm_scale.synthetic import make_plate

    data = Path(data) if data else default_data_dir()
    files = sorted(data.glob("*.tif")) if data.is_dir() else []
    if not files:
        raise InputError(
            f"{data}: no .tif fields found (the demo reads the shipped BBBC039 "
            "fields from ../shared/data/bbbc039-rows-A-D)"
        )
    import tifffile

    shape = tifffile.imread(files[0]).shape
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plate_path = out / "bbbc039_artefacts.ome.zarr"
    restored_path = out / "bbbc039_artefacts_inpainted.ome.zarr"
    for p in (plate_path, restored_path, out / "qc_damaged.zarr", out / "qc_restored.zarr"):
        if p.exists():
            remove_store(p)
    timings: dict[str, float] = {}
    with open_cluster(cluster, quiet=not progress) as client:
        spec = client if client is not None else "threads"  # every stage uses this client
        t = time.perf_counter()
        plate = make_plate(
            plate_path,
            rows=rows,
            columns=columns,
            fields=fields,
            size=shape,
            seed=seed,
            from_fields=data,
            artefacts=artefacts,
            cluster=spec,
            progress=progress,
        )
        timings["make-plate"] = time.perf_counter() - t
        log.info(
            "1. plate %s: %d real fields %dx%d from %s, channels %s",
            plate_path,
            len(plate.fields),
            shape[0],
            shape[1],
            data.name,
            plate.channel_names,
        )
        t = time.perf_counter()
        # the detector's own masks (dilation 0, compared with the true artefacts below), grown
        # at inpainting by run's default 4 px (the same disk: the masks `run` makes;
        # docs/qc-without-ground-truth.md sections 1 and 8)
        make_artefact_masks(plate_path, channel="CFP", dilation=0, cluster=spec, progress=progress)
        timings["masks"] = time.perf_counter() - t
        plate = open_plate(plate_path)
        iou = _iou(plate, plate.fields, "artefacts", "artefacts_true")
        log.info(
            "2. masks labels/artefacts from CFP (Otsu x0.7, open+close): "
            "IoU with the true artefacts %.3f",
            iou,
        )
        t = time.perf_counter()
        res = inpaint_plate(
            plate_path,
            restored_path,
            channel="DAPI",
            mask_label="artefacts",
            model=model,
            checkpoint=checkpoint,
            dilate=DEFAULT_DILATIONS["otsu"],
            cluster=spec,
            progress=progress,
        )
        timings["inpaint"] = time.perf_counter() - t
        unit = (
            "whole fields"
            if res["tiles_total"] == res["fields"]
            else "256 tiles (tiles without a hole skipped)"
        )
        log.info(
            "3. inpaint %s: %d pixels filled, model run on %d/%d %s -> %s",
            model,
            res["hole_pixels"],
            res["tiles_inpainted"],
            res["tiles_total"],
            unit,
            restored_path,
        )
        t = time.perf_counter()
        results = {}
        for label, rec in (
            ("damaged", f"{plate_path}:DAPI"),
            ("restored", f"{restored_path}:DAPI"),
        ):
            for mode in ("paper", "reference"):
                ds = score_plates(
                    f"{plate_path}:DAPI_clean",
                    rec,
                    window=256,
                    params=PhirmParams.for_mode(mode),
                    mask_label="artefacts",
                    cluster=spec,
                    progress=False,
                )
                if mode == "paper":
                    write_qc(
                        ds, out / f"qc_{label}.zarr", overwrite=True, csv=out / f"qc_{label}.csv"
                    )
                results[(label, mode)] = level_summary(ds, "plate")
        timings["score"] = time.perf_counter() - t
    report = write_report(out / "qc_restored.zarr", out / "report")
    summary: dict[str, Any] = {}
    for label in ("damaged", "restored"):
        s, r = results[(label, "paper")], results[(label, "reference")]
        row = {k: float(np.asarray(s[f"phirm_{k}"])) for k in ("mean", "min", "p05", "frac_below")}
        row["reference_mean"] = float(np.asarray(r["phirm_mean"]))
        row["ssim_mean"] = float(np.asarray(s["ssim_mean"]))
        summary[label] = row
    log.info(
        "4. QC %s (xr.open_zarr), %s; report %s",
        out / "qc_restored.zarr",
        out / "qc_restored.csv",
        report,
    )
    log.info("timings (s): %s", ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    summary["mask_iou"] = iou
    summary["timings_s"] = timings
    return summary
