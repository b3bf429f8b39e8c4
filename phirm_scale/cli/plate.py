"""Plate commands: ``convert``, ``masks``, ``make-plate`` (thin shells over the Python API)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from phirm_scale.cli._app import Mode, app

__all__: list[str] = []


@app.command("convert")
def convert_cmd(
    source: Path = typer.Argument(..., help="Folder of microscope TIFFs (searched recursively)."),
    out: Path = typer.Argument(..., help="Output plate, e.g. PLATE.ome.zarr."),
    layout: str = typer.Option(
        "auto",
        help="File-name layout: auto, imagexpress, cellomics, operetta (Opera Phenix too), "
        "cellvoyager (CV7000/CV8000) or regex (with --pattern).",
    ),
    pattern: str | None = typer.Option(
        None,
        help="Regular expression on file names with named groups field, channel and well (A01) "
        "or row and col (numbers from 1); optional plate, timepoint, zstep.",
    ),
    plate_name: str | None = typer.Option(
        None, help="Plate name (default: the source folder's name, as run names it)."
    ),
    channel_names: str | None = typer.Option(
        None, help="Comma-separated channel names in channel order, e.g. DAPI,CFP."
    ),
    levels: int = typer.Option(1, help="Multiscale levels (level 0 plus levels-1 halvings)."),
    pixel_size: float | None = typer.Option(
        None,
        "--pixel-size",
        help="Pixel size in micrometres, for viewers (default: from the TIFF metadata or a "
        "Harmony index; none written when neither gives it).",
    ),
    timepoint: int | None = typer.Option(
        None,
        help="Time point to take when there are several (TimePoint_N folder, Operetta sk, "
        "CellVoyager T).",
    ),
    zstep: int | None = typer.Option(
        None,
        help="Z step to take when there are several (ZStep_N folder, Operetta p, CellVoyager Z).",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace an existing output "
        "(otherwise only an unfinished conversion of the same "
        "source is resumed).",
    ),
    cluster: str = typer.Option(
        "local", help="Dask cluster: local, threads, tcp://host:port, or a dask-jobqueue YAML."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the summary as one JSON object on stdout (messages stay on stderr).",
    ),
) -> None:
    """Convert a folder of TIFFs into an OME-Zarr (NGFF 0.5) HCS plate, one task per field."""
    from phirm_scale.cli._app import echo_json
    from phirm_scale.stages.convert import conversion_complete, convert

    names = [c.strip() for c in channel_names.split(",")] if channel_names else None
    # a finished conversion converted again without --overwrite writes nothing (or is refused)
    up_to_date = not overwrite and conversion_complete(out)
    plate = convert(
        source,
        out,
        layout=layout,
        pattern=pattern,
        plate_name=plate_name,
        channel_names=names,
        cluster=cluster,
        overwrite=overwrite,
        n_levels=levels,
        timepoint=timepoint,
        zstep=zstep,
        progress=progress,
        pixel_size=pixel_size,
    )
    assert plate is not None  # None only with max_fields, which the command does not pass
    if as_json:
        echo_json(
            {
                "out": str(plate.path),
                "wells": len(plate.wells),
                "fields": len(plate.fields),
                "channels": list(plate.channel_names),
                "up_to_date": up_to_date,
            }
        )
    elif not up_to_date:
        typer.echo(
            f"wrote {plate.path}: {len(plate.wells)} wells, {len(plate.fields)} fields, "
            f"channels {','.join(plate.channel_names)}"
        )


class MaskMethod(StrEnum):
    """How ``masks`` finds artefacts."""

    otsu = "otsu"
    saturation = "saturation"


@app.command("masks")
def masks_cmd(
    plate: Path = typer.Argument(..., help="HCS plate (*.ome.zarr)."),
    channel: str = typer.Option(
        "CFP",
        help="Channel the masks are made from (name or "
        "index): the artefact channel for otsu, the nuclei channel "
        "for saturation.",
    ),
    method: MaskMethod = typer.Option(
        MaskMethod.otsu,
        help="otsu: the paper's recipe on an "
        "artefact channel (Otsu x factor, opening, closing). "
        "saturation: no artefact channel; the components PhIRM "
        "calls artefacts (8-bit max at saturation, mean >= "
        "--artefact-mean), dilated.",
    ),
    name: str = typer.Option("artefacts", help="Label name written under labels/."),
    otsu_factor: float | None = typer.Option(
        None,
        help="otsu: multiplier of Otsu's "
        "threshold (default 0.7, the paper). "
        "saturation: PhIRM's own Otsu factor "
        "(default: the --mode's, 1.0 paper).",
    ),
    radius: int = typer.Option(2, help="otsu: disk radius of the opening and closing."),
    min_separability: float = typer.Option(
        0.9,
        help="otsu: fields whose Otsu separability "
        "is below this get an empty mask (no artefact); 0 "
        "disables the guard.",
    ),
    dilation: int | None = typer.Option(
        None,
        help="Radius (px) of a final dilation of the mask (default 4 for both methods, "
        "measured best on blurred-rim artefacts; 0: the paper's recipe for otsu).",
    ),
    mode: Mode = typer.Option(
        Mode.paper, help="saturation: PhIRM mode whose segmentation finds the artefacts."
    ),
    saturation: int | None = typer.Option(
        None, help="saturation: 8-bit value a component's max must reach (default 255)."
    ),
    artefact_mean: float | None = typer.Option(
        None, help="saturation: minimum 8-bit mean of an artefact component (default 210)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Recompute fields that already have the label."
    ),
    cluster: str = typer.Option(
        "local", help="Dask cluster: local, threads, tcp://host:port, or a dask-jobqueue YAML."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as one JSON object on stdout."
    ),
) -> None:
    """Write artefact masks per field as NGFF labels.

    From an artefact channel (otsu) or from the nuclei channel alone (saturation).
    """
    from phirm_scale.stages.masks import make_artefact_masks

    ch: str | int = int(channel) if channel.isdigit() else channel
    res = make_artefact_masks(
        plate,
        channel=ch,
        name=name,
        method=method.value,
        otsu_factor=otsu_factor,
        radius=radius,
        min_separability=min_separability or None,
        dilation=dilation,
        metric_mode=mode.value,
        saturation=saturation,
        artefact_mean=artefact_mean,
        overwrite=overwrite,
        cluster=cluster,
        progress=progress,
    )
    from phirm_scale.plate import open_plate

    with_art = sum(1 for a in res.values() if a)
    # fields not in the result already had the label, made with these settings
    skipped = len(open_plate(plate).fields) - len(res)
    if as_json:
        from phirm_scale.cli._app import echo_json

        echo_json(
            {
                "plate": str(plate),
                "label": name,
                "method": method.value,
                "fields": len(res),
                "skipped": skipped,
                "fields_with_artefacts": with_art,
                "masked_pixels": int(sum(int(a) for a in res.values())),
            }
        )
        return
    said = f"skipped {skipped} fields (already labelled)" if skipped else ""
    if not res:
        typer.echo(f"{plate}: labels/{name}: {said} (--overwrite recomputes them)")
        return
    typer.echo(
        f"{plate}: labels/{name} written for {len(res)} fields ({with_art} with "
        f"artefacts; method {method.value})" + (f"; {said}" if said else "")
    )


@app.command("make-plate")
def make_plate_cmd(
    out: Path = typer.Argument(..., help="Output plate, e.g. SYNTH.ome.zarr."),
    rows: int = typer.Option(2, help="Plate rows (A, B, ...)."),
    columns: int = typer.Option(2, help="Plate columns (01, 02, ...)."),
    fields: int = typer.Option(1, help="Fields per well."),
    size: int = typer.Option(256, help="Field size in pixels (square)."),
    seed: int = typer.Option(0, help="Random seed."),
    from_fields: Path | None = typer.Option(
        None, help="Folder of real TIFF fields used as ground truth (cropped or mirror-padded)."
    ),
    artefacts: float = typer.Option(
        0.02, help="Fraction of each field covered by artefacts (0 for a clean plate)."
    ),
    levels: int = typer.Option(1, help="Multiscale levels."),
    pixel_size: float | None = typer.Option(
        None,
        "--pixel-size",
        help="Pixel size in micrometres, for viewers (default: the --from-fields TIFFs' "
        "metadata; none for synthetic nuclei).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    cluster: str = typer.Option(
        "threads", help="Dask cluster: threads, local, tcp://host:port, or a dask-jobqueue YAML."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Make a synthetic (or composite) plate.

    Channels DAPI (ground truth + saturated artefacts), CFP (artefact channel), DAPI_clean
    (ground truth) and label artefacts_true.
    """
    from phirm_scale.synthetic import make_plate

    plate = make_plate(
        out,
        rows=rows,
        columns=columns,
        fields=fields,
        size=size,
        seed=seed,
        from_fields=from_fields,
        artefacts=artefacts,
        overwrite=overwrite,
        n_levels=levels,
        cluster=cluster,
        progress=progress,
        pixel_size=pixel_size,
    )
    typer.echo(
        f"wrote {plate.path}: {len(plate.fields)} fields of {size}x{size}, channels "
        f"{','.join(plate.channel_names)}"
    )
