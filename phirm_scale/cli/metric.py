"""``phirm-scale metric``: PhIRM, PSNR and SSIM of image files or folders of images."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from phirm_scale.cli._app import Mode, app


@app.command("metric")
def metric_command(
    reference: Path = typer.Argument(..., help="Reference image (TIFF/PNG) or folder of images."),
    reconstruction: Path = typer.Argument(
        ..., help="Reconstructed image, or folder holding images of the same file names."
    ),
    mode: Mode = typer.Option(
        Mode.paper,
        "--mode",
        help="'paper' (the paper's definition) or 'reference' (the published code's numbers).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Score RECONSTRUCTION against REFERENCE with PhIRM (and PSNR, SSIM).

    8-bit images are used as they are; other images are normalised to 8 bit with the
    reference's min/max, applied to both.  Given two folders, every file name present in both
    is scored, one row per pair, plus the mean.
    """
    from phirm_scale.api import score_files

    rows = score_files(reference, reconstruction, mode=mode.value)
    if as_json:
        if len(rows) == 1 and not reference.is_dir():
            typer.echo(json.dumps(rows[0][1]))
        else:
            typer.echo(
                json.dumps(
                    {
                        "pairs": {name: d for name, d in rows},
                        "mean": _mean_row([d for _, d in rows]),
                    }
                )
            )
        return
    _print_table(rows, mode.value)


def _mean_row(dicts: list[dict]) -> dict:
    out: dict = {}
    for key in ("ncd", "nad", "aad", "phirm", "psnr", "ssim"):
        vals = [d[key] for d in dicts if d[key] is not None]
        out[key] = float(sum(vals) / len(vals)) if vals else None
    return out


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "inf"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _print_table(rows: Sequence[tuple[str, dict[str, Any]]], mode: str) -> None:
    from phirm_scale.cli._app import print_table

    out: list[list] = []

    class _T:
        add_row = staticmethod(lambda *cells: out.append(list(cells)))

    table = _T()
    for name, d in rows:
        r, c = d["reference"], d["reconstruction"]
        table.add_row(
            name,
            f"{r['nuclei_count']}/{c['nuclei_count']}",
            f"{r['nuclei_area']}/{c['nuclei_area']}",
            f"{r['artefact_area']}/{c['artefact_area']}",
            _fmt(d["ncd"]),
            _fmt(d["nad"]),
            _fmt(d["aad"]),
            _fmt(d["phirm"]),
            _fmt(d["psnr"], 2),
            _fmt(d["ssim"]),
        )
    if len(rows) > 1:
        m = _mean_row([d for _, d in rows])
        table.add_row(
            "[bold]mean[/bold]",
            "",
            "",
            "",
            _fmt(m["ncd"]),
            _fmt(m["nad"]),
            _fmt(m["aad"]),
            _fmt(m["phirm"]),
            _fmt(m["psnr"], 2),
            _fmt(m["ssim"]),
        )
    print_table(
        [
            "pair",
            "nuclei ref/rec",
            "nuclei area ref/rec",
            "artefact area ref/rec",
            "NCD",
            "NAD",
            "AAD",
            "PhIRM",
            "PSNR",
            "SSIM",
        ],
        [
            [c.replace("[bold]", "").replace("[/bold]", "") if isinstance(c, str) else c for c in r]
            for r in out
        ],
        title=f"PhIRM ({mode} mode)",
    )
