"""``phirm-scale score`` (PhIRM QC of a reconstructed plate) and ``phirm-scale report``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from phirm_scale.cli._app import Mode, app
from phirm_scale.flags import (
    DEFAULT_HIDDEN_THRESHOLD,
    DEFAULT_RESIDUAL_THRESHOLD,
    DEFAULT_SELFCHECK_DRAWS,
    DEFAULT_SELFCHECK_THRESHOLD,
    FLAG_BITS,
)

if TYPE_CHECKING:
    import xarray as xr


@app.command("score")
def score_command(
    reference: str = typer.Option(
        ..., "--reference", help="Reference plate as PLATE[:CHANNEL] (default: first channel)."
    ),
    reconstruction: str = typer.Option(
        ...,
        "--reconstruction",
        help="Reconstructed plate as PLATE[:CHANNEL] (default: the reference channel's name if "
        "present, else the first channel).",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="QC store to write (e.g. QC.zarr)."),
    window: str = typer.Option(
        "256",
        "--window",
        help="Metric unit: window edge in pixels (edge windows aligned to "
        "the border) or 'field' for whole fields.",
    ),
    mode: Mode = typer.Option(
        Mode.paper,
        "--mode",
        help="'paper' (the paper's definition) or 'reference' (the published code's numbers).",
    ),
    cluster: str = typer.Option(
        "local",
        "--cluster",
        help="'local' (embedded cluster), 'threads' (no cluster), "
        "tcp://host:port, or a dask-jobqueue YAML.",
    ),
    csv: Path | None = typer.Option(None, "--csv", help="Also write the per-window table as CSV."),
    parquet: Path | None = typer.Option(
        None, "--parquet", help="Also write the per-window table as Parquet."
    ),
    field_csv: Path | None = typer.Option(
        None,
        "--field-csv",
        help="Also write the per-field table (flag, field checks, summaries) as CSV.",
    ),
    field_parquet: Path | None = typer.Option(
        None, "--field-parquet", help="Also write the per-field table as Parquet."
    ),
    mask_label: str | None = typer.Option(
        None,
        "--mask-label",
        help="Label image (e.g. 'artefacts') giving the masked fraction "
        "per window; read from the reference plate, else from the "
        "reconstruction.",
    ),
    threshold: float = typer.Option(
        DEFAULT_SELFCHECK_THRESHOLD,
        "--threshold",
        help="PhIRM threshold of the 'fraction below' summaries.",
    ),
    fields_per_task: int = typer.Option(
        1, "--fields-per-task", help="Fields scored by one Dask task."
    ),
    self_check: bool = typer.Option(
        False,
        "--self-check",
        help="Also run the self-check PhIRM (pseudo-holes shaped like "
        "the plate's artefacts, inpainted with the reconstruction's "
        "model and settings, scored against the true pixels), the "
        "reference-free field checks and the flags.",
    ),
    self_check_draws: int | None = typer.Option(
        None,
        "--self-check-draws",
        help=f"Pseudo-hole draws per field (default {DEFAULT_SELFCHECK_DRAWS}).",
    ),
    self_check_seed: int = typer.Option(0, "--self-check-seed", help="Seed of the draws."),
    mask_pool: str | None = typer.Option(
        None,
        "--mask-pool",
        help="PLATE[:LABEL] whose artefact masks shape the pseudo-holes "
        "of fields without holes (default: the source plate's).",
    ),
    selfcheck_threshold: float = typer.Option(
        DEFAULT_SELFCHECK_THRESHOLD,
        "--selfcheck-threshold",
        help="Flag fields with holes whose mean self-check PhIRM is below this.",
    ),
    residual_threshold: float = typer.Option(
        DEFAULT_RESIDUAL_THRESHOLD,
        "--residual-threshold",
        help="Flag fields whose restored version keeps more than this many px of PhIRM artefact.",
    ),
    hidden_threshold: float = typer.Option(
        DEFAULT_HIDDEN_THRESHOLD,
        "--hidden-threshold",
        help="Flag fields whose holes are expected to hide at least this many nuclear pixels "
        "(expected_hidden_nuclear_area; docs/qc-without-ground-truth.md section 7).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing QC store made by `score`."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show a progress bar while the graph runs."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the plate summary as one JSON object on stdout (nothing else there).",
    ),
    fail_below: float | None = typer.Option(
        None,
        "--fail-below",
        help="Exit with status 3 when the plate's mean PhIRM is below this (for pipelines).",
    ),
) -> None:
    """Score every field of a reconstructed plate against its reference (PhIRM, PSNR, SSIM).

    The scores go into an xarray QC store, and the plate summary is printed. With
    --self-check, also the checks that need no ground truth (for real plates) and per-field
    flags.
    """
    from phirm_scale import metric, qc
    from phirm_scale.errors import OutputError
    from phirm_scale.outputs import (
        check_inputs_not_locked,
        check_not_input,
        existing_output,
        output_lock,
    )
    from phirm_scale.stages.score import parse_plate_spec, plan_score, score_plan

    inputs = [parse_plate_spec(reference)[0], parse_plate_spec(reconstruction)[0]]
    tables = (csv, parquet, field_csv, field_parquet)
    for out in (output, *tables):
        if out is not None:
            check_not_input(out, inputs)
        if out is not None and Path(out).exists() and not overwrite:
            raise OutputError(f"{out}: output exists (pass --overwrite to replace it)")
    check_inputs_not_locked(inputs)
    existing_output(output, command="score", overwrite=overwrite)
    params = metric.PhirmParams.for_mode(mode.value)
    plan = plan_score(reference, reconstruction, window=window, mask_label=mask_label)
    spec = None
    if self_check:
        from phirm_scale.flags import check_hidden_threshold
        from phirm_scale.stages.selfcheck import selfcheck_qc, selfcheck_spec

        check_hidden_threshold(hidden_threshold)

        # validated before any work: the reconstruction must carry its inpainting provenance
        spec = selfcheck_spec(plan.reconstruction, draws=self_check_draws, seed=self_check_seed)
    from phirm_scale.stages._runner import using_client

    with (
        output_lock(output, command="score"),
        using_client(cluster, quiet=not progress) as client,
    ):  # one cluster for both
        target = client if client is not None else "threads"
        ds = score_plan(
            plan,
            params=params,
            threshold=threshold,
            cluster=target,
            progress=progress,
            fields_per_task=fields_per_task,
        )
        if spec is not None:
            ds = selfcheck_qc(
                ds,
                plan.reconstruction,
                plan.reconstruction_channel,
                draws=self_check_draws,
                seed=self_check_seed,
                mask_pool=mask_pool,
                selfcheck_threshold=selfcheck_threshold,
                residual_threshold=residual_threshold,
                hidden_threshold=hidden_threshold,
                cluster=target,
                progress=progress,
                fields_per_task=fields_per_task,
            )
        qc.write_qc(
            ds,
            output,
            overwrite=overwrite,
            csv=csv,
            parquet=parquet,
            field_csv=field_csv,
            field_parquet=field_parquet,
        )
    summary = plate_summary(ds)
    if as_json:
        from phirm_scale.cli._app import echo_json

        echo_json(
            {
                "output": str(output),
                "csv": str(csv) if csv else None,
                "parquet": str(parquet) if parquet else None,
                "field_csv": str(field_csv) if field_csv else None,
                "field_parquet": str(field_parquet) if field_parquet else None,
                **summary,
            }
        )
    else:
        print_summary(ds)
        typer.echo(f"wrote {output}" + "".join(f", {t}" for t in tables if t))
    if fail_below is not None and not summary["phirm_mean"] >= fail_below:
        typer.echo(f"fail: plate mean PhIRM {summary['phirm_mean']:.4f} < {fail_below:g}", err=True)
        raise typer.Exit(3)


def plate_summary(ds: xr.Dataset) -> dict[str, Any]:
    """Return the plate summary of a QC Dataset as plain numbers (the --json object)."""
    from phirm_scale.qc import level_summary

    p = level_summary(ds, "plate")
    out = {
        "threshold": float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD)),
        "mode": ds.attrs.get("mode", "paper"),
        "window": ds.attrs.get("window"),
        "fields": int((~np.isnan(ds["phirm"].values)).any(-1).sum()),
        "windows": int(p.n_windows),
    }
    for k in (
        "phirm_mean",
        "phirm_min",
        "phirm_p05",
        "phirm_frac_below",
        "ssim_mean",
        "masked_fraction_mean",
    ):
        if k in p:
            out[k] = float(p[k])
    for side in ("ref", "rec"):
        for c in ("nuclei_count", "nuclei_area", "artefact_count", "artefact_area"):
            out[f"{side}_{c}"] = int(p[f"{side}_{c}"])
    return out


def _f(v: float | xr.DataArray, digits: int = 4) -> str:
    v = float(v)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.0f}" if v == int(v) and abs(v) >= 100 else f"{v:.{digits}f}"


def print_summary(ds: xr.Dataset, *, worst_wells: int = 5) -> None:
    """Print the plate summary (and the worst wells) of a QC Dataset.

    A rich table on a terminal, tab-separated values otherwise.
    """
    from phirm_scale.cli._app import print_table
    from phirm_scale.qc import level_summary

    p = level_summary(ds, "plate")
    thr = float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))
    rows: list[list] = []

    class _T:
        add_row = staticmethod(lambda *cells: rows.append(list(cells)))

    t = _T()
    from phirm_scale.report import _scored_against

    # against the damaged input it was restored from (no ground truth): say so first
    if _scored_against(ds):
        t.add_row(
            "PhIRM scored against",
            "the damaged source (no ground truth: every artefact removed counts as damage)",
        )
    t.add_row("windows", str(int(p.n_windows)))
    t.add_row("PhIRM mean", _f(p.phirm_mean))
    t.add_row("PhIRM min", _f(p.phirm_min))
    t.add_row("PhIRM 5th percentile", _f(p.phirm_p05))
    t.add_row(f"fraction of windows < {thr:g}", _f(p.phirm_frac_below))
    t.add_row("SSIM mean", _f(p.ssim_mean))
    for c, label in (
        ("nuclei_count", "nuclei"),
        ("nuclei_area", "nuclei area"),
        ("artefact_area", "artefact area"),
    ):
        t.add_row(f"{label} ref / rec", f"{_f(p['ref_' + c], 0)} / {_f(p['rec_' + c], 0)}")
    if "masked_fraction_mean" in p:
        t.add_row("masked fraction mean", _f(p.masked_fraction_mean))
    if "plate_selfcheck_phirm_mean" in ds:
        t.add_row("self-check PhIRM mean", _f(ds.plate_selfcheck_phirm_mean))
        t.add_row("self-check PhIRM 5th percentile", _f(ds.plate_selfcheck_phirm_p05))
    if "flag" in ds:
        t.add_row("flagged fields", f"{int(ds.plate_n_flagged)} of {int(ds.flag.notnull().sum())}")
    print_table(
        ["quantity", "value"],
        rows,
        title=f"PhIRM QC plate summary ({ds.attrs.get('mode', 'paper')} mode, window "
        f"{ds.attrs.get('window', '?')})",
    )
    if "flag" in ds:
        from phirm_scale.qc import flagged_fields

        for r, c, f, code in flagged_fields(ds)[: worst_wells * 2]:
            why = ", ".join(k for k, b in FLAG_BITS.items() if code & b)
            typer.echo(f"flagged {r}{c} field {f}: {why}")
    w = level_summary(ds, "well")
    m = w.phirm_mean.stack(well=("row", "column")).dropna("well")
    order = sorted(
        zip(
            m.values.tolist(),
            m["row"].values.tolist(),
            m["column"].values.tolist(),
            strict=True,
        )
    )
    if len(order) > 1:
        worst = []
        for mean, r, c in order[:worst_wells]:
            sel = w.sel(row=r, column=c)
            worst.append([f"{r}{c}", _f(mean), _f(sel.phirm_min), _f(sel.phirm_frac_below)])
        print_table(
            ["well", "PhIRM mean", "PhIRM min", f"< {thr:g}"],
            worst,
            title=f"worst {min(worst_wells, len(order))} wells",
        )


@app.command("report")
def report_command(
    qc_store: Path = typer.Argument(..., help="QC store written by 'phirm-scale score'."),
    output: Path = typer.Option(..., "-o", "--output", help="Report folder (index.html, PNGs)."),
    worst: int = typer.Option(6, "--worst", help="Number of worst fields shown with thumbnails."),
) -> None:
    """Write an HTML report of a QC store: plate heatmap, PhIRM histogram, worst fields."""
    from phirm_scale.report import write_report

    index = write_report(qc_store, output, worst=worst)
    typer.echo(f"wrote {index}")
