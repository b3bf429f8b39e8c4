"""Inpaint a plate: one Dask task per field, writing a derived plate.

Each task reads one field (all channels) and its hole label from the *source* plate, fills the
holes of one channel with :func:`phirm_scale.inpaint.inpaint_field` over a model loaded once
per worker process (:func:`phirm_scale.models.get_model` caches by checkpoint hash), and writes
the field into ``<name>_inpainted.ome.zarr`` (same rows, columns, fields, channels; the other
channels copied unchanged). The source plate is never modified.

Provenance (model, checkpoint and its hash, channel, label, tile, overlap, software version)
is stored in the derived plate's attributes under ``phirm_scale.inpaint``. A rerun with the
same settings completes only the fields that are missing (restartable); other settings on an
existing output are refused unless ``overwrite``.

GPU work: with ``gpu=True`` every task is submitted with ``resources={"GPU": 1 / gpu_tasks}``
through ``client.submit`` (which, unlike annotations on array graphs, survives graph
optimisation), so only workers started with ``--resources GPU=1`` run them, ``gpu_tasks`` at a
time. With ``--cluster local`` one such worker is started per visible CUDA device (none visible:
an error at once). Learned models run through the worker process's
:class:`phirm_scale.batcher.TileBatcher`: the task threads cut, normalise, blend and write their
fields while the batcher runs the hole tiles of all of them in full batches on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# field_runner lives beside the batcher, where the self-check stage takes it too (no
# stages/inpaint <-> stages/selfcheck cycle); re-exported here
from phirm_scale.batcher import _RUNTIME_KEYS, field_runner  # noqa: F401
from phirm_scale.errors import OutputError, PlateError
from phirm_scale.plate import ATTRS_KEY

if TYPE_CHECKING:
    from phirm_scale.stages.selfcheck import VerifySpec

__all__ = [
    "inpaint_plate",
    "inpaint_one_field",
    "default_output",
    "InpaintTask",
    "field_runner",
]


def default_output(source: str | Path) -> Path:
    """``plate.ome.zarr`` -> ``plate_inpainted.ome.zarr`` beside it."""
    source = Path(source)
    name = source.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.endswith(suffix):
            return source.with_name(name[: -len(suffix)] + "_inpainted" + suffix)
    return source.with_name(name + "_inpainted.ome.zarr")


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``--dilate``: the holes grown by the masks stage's disk (one footprint everywhere).

    :func:`phirm_scale.masks.dilate_mask`, as ``masks --dilation`` and ``run --dilate`` grow
    them (issue 21: this was OpenCV's ellipse, 17 px against the disk's 13 at radius 2, so
    ``--dilate 2`` meant two different masks). Recorded as ``dilate_footprint: "disk"``.
    """
    if radius <= 0:
        return mask
    from phirm_scale.masks import dilate_mask

    return dilate_mask(mask, radius)


@dataclass(frozen=True)
class InpaintTask:
    """Arguments of one inpaint task: one field of the source plate and the derived plate."""

    source: str
    out: str
    key: tuple  # (row, column, field)
    channel: int
    label: str
    model: dict  # name, checkpoint, device and runtime options (see field_runner)
    tile: int
    overlap: int
    batch_size: int
    dilate: int
    verify: Any = None  # a stages.selfcheck.VerifySpec: restore, then verify


def inpaint_one_field(task: InpaintTask) -> dict:
    """One task: inpaint ``channel`` of field ``key`` and write the whole field into ``out``.

    Opens only this field of the source and of the output
    (:func:`~phirm_scale.plate.open_field_view`), never the whole plate.
    """
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.plate import FieldKey, open_field_view

    key = FieldKey(*task.key)
    src = open_field_view(task.source, key)
    data = src.read_field(key)
    mask = _dilate(src.read_label(key, task.label) > 0, task.dilate)
    runner, per_call = field_runner(task.model, task.batch_size)
    try:
        filled, stats = inpaint_field(
            data[task.channel],
            mask,
            runner,
            tile=task.tile,
            overlap=task.overlap,
            batch_size=per_call,
            return_stats=True,
        )
    except PlateError:
        raise
    except Exception as exc:
        raise PlateError(f"{task.source}: field {key}: {exc}") from exc
    record = None
    if task.verify is not None:  # restore, then verify (stages.selfcheck.verify_field)
        from phirm_scale.stages.selfcheck import verify_field

        try:
            filled, record = verify_field(
                data[task.channel],
                mask,
                filled,
                runner,
                per_call,
                key,
                task.verify,
                tile=task.tile,
                overlap=task.overlap,
                device=task.model.get("device", "auto"),
                name=f"{task.source}/{key.path}",
            )
        except PlateError:
            raise
        except Exception as exc:
            raise PlateError(f"{task.source}: field {key}: {exc}") from exc
    data = data.copy()
    data[task.channel] = filled
    dst = open_field_view(task.out, key, mode="r+")
    # the mask that was filled travels with the restored field (label first: the field's
    # complete marker, written last, says both are there)
    dst.write_label(
        key,
        task.label,
        mask.astype(np.uint8),
        attrs={"copied_from": task.source, "dilate": int(task.dilate)},
    )
    dst.write_field(key, data, field_attrs={"verify": record} if record is not None else None)
    return {
        "field": tuple(key),
        "hole_pixels": stats.hole_pixels,
        "tiles_inpainted": stats.tiles_inpainted,
        "tiles_total": stats.tiles_total,
        "flag": None if record is None else record["flag"],
        "action": None if record is None else record["action"],
    }


def _check_device(device: str, gpu: bool, cluster: Any) -> None:
    """Refuse ``--gpu`` / ``--device cuda`` on local workers when no CUDA device is visible.

    Stop at once rather than wait for a GPU worker that will never come.
    """
    if not isinstance(cluster, (str, type(None))) or (cluster or "local") not in (
        "local",
        "threads",
    ):
        return  # remote workers: their devices are not ours to check
    wants_cuda = str(device).startswith("cuda")
    if not (gpu or wants_cuda):
        return
    from phirm_scale.cluster import visible_gpus

    if visible_gpus() == 0:
        what = "--gpu" if gpu else f"--device {device}"
        raise PlateError(
            f"{what}: no CUDA device is visible on this machine (use --device cpu "
            "without --gpu, or a cluster with GPU workers)"
        )


def inpaint_plate(
    source: str | Path,
    out: str | Path | None = None,
    *,
    channel: str | int = "DAPI",
    mask_label: str = "artefacts",
    model: str = "telea",
    checkpoint: str | Path | None = None,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 16,
    dilate: int = 0,
    device: str = "auto",
    gpu: bool = False,
    cluster: Any = "local",
    overwrite: bool = False,
    progress: bool = True,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,  # noqa: A002 - public keyword named after --compile / torch.compile
    canny: str = "auto",
    gpu_tasks: int = 8,
    allow_untrained: bool = False,
    verify: VerifySpec | None = None,
) -> dict[str, Any]:
    """Inpaint the holes ``mask_label`` of ``channel`` in every field of ``source``.

    Parameters
    ----------
    source : str or Path
        HCS plate with the label ``mask_label`` on every field (``phirm-scale masks``).
    out : str or Path, optional
        Derived plate (default ``<source>_inpainted.ome.zarr``).
    channel : str or int
        Channel to restore; other channels are copied unchanged.
    mask_label : str
        Label holding the holes (non-zero = hole).
    model, checkpoint
        A model name of :func:`phirm_scale.models.list_models` and, for learned models, a
        checkpoint.
    tile, overlap, batch_size
        Tiling inside each task (see :func:`phirm_scale.inpaint.inpaint_field`).
    dilate : int
        Grow the holes by this many pixels first (covers artefact halos).
    device : str
        Torch device on the workers (``auto``: CUDA when present).
    gpu : bool
        Submit tasks with ``resources={"GPU": 1}`` (needs a distributed cluster).
    cluster : str or distributed.Client
        ``--cluster`` spec (``local``, ``threads``, ``tcp://...``, a jobqueue YAML), opened
        and closed here, or an open client (left open).
    overwrite : bool
        Replace an existing output made with other settings.
    progress : bool
        Progress bar on stderr.
    precision, channels_last, compile, canny
        Runtime options of learned models (:func:`phirm_scale.models.get_model`): autocast
        precision ``fp32``/``bf16``/``fp16``, channels-last layout, ``torch.compile`` of the
        generator methods, EdgeConnect's Canny (``auto``/``torch``/``skimage``).
    gpu_tasks : int
        Fields in flight per GPU worker (each task asks for ``GPU = 1 / gpu_tasks``).
    allow_untrained : bool
        Run a learned model without a checkpoint (random weights; smoke tests only). Refused
        otherwise; recorded in the provenance.

    Returns
    -------
    dict with ``out``, ``fields`` (inpainted in this run), ``skipped`` (already done),
    ``hole_pixels``, ``tiles_inpainted``, ``tiles_total``.
    """
    from phirm_scale import __version__
    from phirm_scale.models import list_models
    from phirm_scale.outputs import check_not_input, guard_output, marker_attrs
    from phirm_scale.plate import (
        create_plate_like,
        open_plate,
        read_root_attrs,
        write_viewer_metadata,
    )
    from phirm_scale.stages._runner import run_tasks

    src = open_plate(source)
    source = src.path
    out = Path(out) if out is not None else default_output(source)
    check_not_input(out, [source, checkpoint])
    c = src.channel_index(channel)
    if model not in list_models():
        raise PlateError(f"unknown model {model!r}; known: {', '.join(list_models())}")
    missing = [k for k in src.fields if not src.has_label(k, mask_label)]
    if missing:
        raise PlateError(
            f"{source}: field {missing[0]} has no label {mask_label!r} "
            f"({len(missing)} of {len(src.fields)} fields lack it; run "
            "`phirm-scale masks` first)"
        )
    if gpu and (cluster is None or cluster == "threads"):
        raise PlateError("--gpu needs a distributed cluster (GPU workers advertise GPU=1)")
    _check_device(device, gpu, cluster)
    if gpu_tasks < 1:
        raise PlateError(f"gpu_tasks must be >= 1; got {gpu_tasks}")
    from phirm_scale.models.registry import CANNY, LEARNED, PRECISIONS, SHIPPED, TORCH_MODELS

    if model in LEARNED and checkpoint is None and not allow_untrained:
        raise PlateError(
            f"model {model!r} is learned and has no checkpoint: pass --checkpoint "
            "PATH (train one with `phirm-scale train`), or --allow-untrained for a "
            "smoke test with random weights"
        )

    if precision not in PRECISIONS:
        raise PlateError(f"--precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if canny not in CANNY:
        raise PlateError(f"--canny must be one of {', '.join(CANNY)}; got {canny!r}")
    ckpt_hash = None
    if checkpoint is not None:
        from phirm_scale.models.registry import checkpoint_hash

        ckpt_hash = checkpoint_hash(checkpoint, model)
    elif model in SHIPPED:  # its package file checked before anything is written
        from phirm_scale.models.registry import shipped_hash

        ckpt_hash = shipped_hash(model)
    provenance = {
        "source": str(source.resolve()),
        "channel": src.channel_names[c],
        "mask_label": mask_label,
        "model": model,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_hash": ckpt_hash,
        "tile": tile,
        "overlap": overlap,
        "dilate": dilate,
        # the footprint --dilate grows the holes by (was OpenCV's ellipse before it was the
        # masks' disk: an output made then is not these holes, and is refused)
        "dilate_footprint": "disk" if dilate else None,
        "precision": precision if model in TORCH_MODELS else None,
        "canny": canny if model == "edgeconnect" else None,
        # the masks the holes came from, and whether the weights were random: the record
        # describes the pixels written
        "mask_settings": src.attrs.get(ATTRS_KEY, {}).get(f"labels_{mask_label}"),
        "untrained": bool(model in LEARNED and checkpoint is None),
        "version": __version__,
    }
    if verify is not None:  # restore, then verify: the settings that decided each field
        provenance["verify"] = verify.as_attrs()
    # the output is locked for the whole run; only an earlier `inpaint` output is resumed
    # (same provenance) or replaced (--overwrite)
    with guard_output(
        out, command="inpaint", inputs=[source, checkpoint], overwrite=overwrite, resumable=True
    ) as resume:
        if resume:
            prev = (read_root_attrs(out) or {}).get(ATTRS_KEY, {}).get("inpaint")
            if prev != provenance:
                raise OutputError(
                    f"{out}: exists and was made by another inpainting (other "
                    "source, masks or settings); pass --overwrite to recompute "
                    "every field"
                )
            dst = open_plate(out, mode="r+")
        else:
            dst = create_plate_like(
                src, out, attrs={ATTRS_KEY: {**marker_attrs("inpaint"), "inpaint": provenance}}
            )
        todo = dst.missing_fields()
        spec = {
            "name": model,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "device": device,
            "precision": precision,
            "channels_last": channels_last,
            "compile": compile,
            "canny": canny,
        }
        tasks = [
            InpaintTask(
                str(source),
                str(out),
                tuple(k),
                c,
                mask_label,
                spec,
                int(tile),
                int(overlap),
                int(batch_size),
                int(dilate),
                verify,
            )
            for k in todo
        ]
        results = run_tasks(
            inpaint_one_field,
            tasks,
            cluster=cluster,
            progress=progress,
            description="inpaint",
            resources={"GPU": 1.0 / gpu_tasks} if gpu else None,
        )
        # viewer-ready: windows from the restored data, only the restored channel shown
        # (the artefact and other channels a click away); the pixel size came with the
        # layout (create_plate_like) and the labels take their field's
        write_viewer_metadata(out, dst.fields, active=[src.channel_names[c]])
    return {
        "out": str(out),
        "fields": len(results),
        "skipped": len(src.fields) - len(todo),
        "hole_pixels": int(sum(r["hole_pixels"] for r in results)),
        "tiles_inpainted": int(sum(r["tiles_inpainted"] for r in results)),
        "tiles_total": int(sum(r["tiles_total"] for r in results)),
        "flagged": [
            {"field": "{}{}/{}".format(*r["field"]), "flag": r["flag"], "action": r["action"]}
            for r in results
            if r.get("flag")
        ],
    }
