"""Self-check PhIRM and reference-free field checks of an inpainted plate, one task per field.

The maths is :func:`phirm_scale.selfcheck.selfcheck_field` and
:func:`phirm_scale.fieldqc.field_checks`; this module adds the plate around them:

* :func:`selfcheck_spec` reads the inpainted plate's provenance (``phirm_scale.inpaint``):
  the source plate, channel, mask label, dilation, model, checkpoint, tile and overlap, so the
  pseudo-holes are inpainted with the same model and settings as the real holes;
* :func:`build_mask_pool` collects the plate's hole shapes (or those of ``--mask-pool``):
  fields in a seeded order, the first ``pool_size`` with holes;
* :func:`selfcheck_tasks` makes one delayed task per field (or per ``fields_per_task``);
* :func:`add_to_dataset` puts the results into the QC Dataset and flags fields.

Results depend only on ``seed`` and the field's key, never on chunking, task grouping or
worker count.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from phirm_scale.errors import PlateError
from phirm_scale.flags import (
    DEFAULT_HIDDEN_THRESHOLD,
    DEFAULT_RESIDUAL_THRESHOLD,
    DEFAULT_SELFCHECK_DRAWS,
    DEFAULT_SELFCHECK_THRESHOLD,
)
from phirm_scale.plate import ATTRS_KEY

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

    from phirm_scale.inpaint import Model
    from phirm_scale.metric import PhirmParams
    from phirm_scale.plate import FieldKey, FieldKeyLike, Plate
    from phirm_scale.selfcheck import MaskPool

__all__ = [
    "PoolRecipe",
    "SelfCheckSpec",
    "SelfCheckTask",
    "add_to_dataset",
    "build_mask_pool",
    "run_selfcheck",
    "selfcheck_one_field",
    "selfcheck_qc",
    "selfcheck_spec",
    "selfcheck_tasks",
    "ON_FLAG",
    "VerifySpec",
    "verify_field",
]


@dataclass(frozen=True)
class SelfCheckSpec:
    """Everything a self-check task needs (picklable, hashable for Dask's tokens)."""

    source: str  # plate whose channel was inpainted
    channel: int  # its index there
    mask_label: str  # the real holes (label of ``source``)
    dilate: int  # as the inpainting grew the holes
    model: tuple  # (name, checkpoint or None, device)
    runtime: tuple = ()  # ((key, value), ...): precision, canny of the real run
    tile: int = 256
    overlap: int = 32
    batch_size: int = 16
    draws: int = DEFAULT_SELFCHECK_DRAWS
    seed: int = 0
    shapes: str = "own"
    margin: int = 4
    attempts: int = 100
    extra: tuple = field(default=(), compare=False)

    def attrs(self) -> dict[str, Any]:
        """Return the settings as QC Dataset attributes (``selfcheck_*``)."""
        return {
            "selfcheck_model": self.model[0],
            "selfcheck_checkpoint": self.model[1] or "",
            "selfcheck_draws": self.draws,
            "selfcheck_seed": self.seed,
            "selfcheck_shapes": self.shapes,
            "selfcheck_margin": self.margin,
            "selfcheck_attempts": self.attempts,
            "selfcheck_source": self.source,
            "selfcheck_mask_label": self.mask_label,
            "selfcheck_dilate": self.dilate,
        }


def selfcheck_spec(
    reconstruction: str | Path,
    *,
    draws: int | None = None,
    seed: int = 0,
    shapes: str = "own",
    margin: int = 4,
    attempts: int = 100,
    device: str = "auto",
    batch_size: int = 16,
) -> SelfCheckSpec:
    """Build a :class:`SelfCheckSpec` from the provenance of an inpainted plate."""
    from phirm_scale.plate import open_plate
    from phirm_scale.selfcheck import DEFAULT_DRAWS

    rec = open_plate(reconstruction)
    prov = rec.attrs.get(ATTRS_KEY, {}).get("inpaint")
    if not isinstance(prov, Mapping):
        raise PlateError(
            f"{rec.path}: --self-check needs a plate made by `phirm-scale "
            "inpaint` (its model and settings are read from the plate)"
        )
    src_path = prov.get("source")
    if not src_path or not Path(src_path).exists():
        raise PlateError(
            f"{rec.path}: the source plate it was inpainted from ({src_path}) is "
            "not there; the self-check needs its fields and holes"
        )
    src = open_plate(src_path)
    if tuple(src.field_shape) != tuple(rec.field_shape):
        raise PlateError(
            f"{rec.path}: field shape {tuple(rec.field_shape)} differs from its "
            f"source {src.path} ({tuple(src.field_shape)})"
        )
    if draws is not None and draws < 1:
        raise PlateError(f"--self-check-draws must be >= 1, got {draws}")
    if shapes not in ("own", "pool"):
        raise PlateError(f"self-check shapes must be 'own' or 'pool', got {shapes!r}")
    return SelfCheckSpec(
        source=str(Path(src_path).resolve()),
        channel=src.channel_index(prov["channel"]),
        mask_label=str(prov["mask_label"]),
        dilate=int(prov.get("dilate", 0) or 0),
        model=(str(prov["model"]), prov.get("checkpoint"), device),
        runtime=tuple((k, prov[k]) for k in ("precision", "canny") if prov.get(k) is not None),
        tile=int(prov.get("tile", 256)),
        overlap=int(prov.get("overlap", 32)),
        batch_size=int(batch_size),
        draws=int(draws or DEFAULT_DRAWS),
        seed=int(seed),
        shapes=shapes,
        margin=int(margin),
        attempts=int(attempts),
    )


def _holes(plate: Plate, key: FieldKeyLike, label: str, dilate: int) -> np.ndarray:
    from phirm_scale.masks import dilate_mask  # the inpaint stage's --dilate footprint

    return dilate_mask(plate.read_label(key, label) > 0, max(0, int(dilate))) > 0


def build_mask_pool(
    plate: str | Path,
    label: str,
    *,
    dilate: int = 0,
    size: int = 64,
    seed: int = 0,
    shape: tuple[int, ...] | None = None,
) -> MaskPool:
    """Collect the hole shapes of ``plate``'s label ``label`` into a mask pool.

    The holes are grown by ``dilate`` as the inpainting grew them; fields are taken in a
    seeded random order, the first ``size`` that have holes.

    ``plate`` may be ``PLATE[:LABEL]``. Raises :class:`PlateError` (one line) for a pool of
    another field shape than ``shape`` or a plate without the label.
    """
    from concurrent.futures import ThreadPoolExecutor

    from phirm_scale.plate import open_plate, row_index
    from phirm_scale.selfcheck import MaskPool, components_of

    path, lab = str(plate), label
    if ":" in path and not Path(path).exists():
        path, lab = path.rsplit(":", 1)
    if not Path(path).exists():
        raise PlateError(f"{path}: mask pool plate not found")
    p = open_plate(path)
    if shape is not None and tuple(p.field_shape) != tuple(shape):
        raise PlateError(
            f"{path}: mask pool fields are {tuple(p.field_shape)}, the plate's "
            f"{tuple(shape)}; a pool must come from fields of the same size"
        )
    keys = [k for k in p.fields if p.has_label(k, lab)]
    if not keys:
        raise PlateError(f"{path}: no field has the label {lab!r} to take hole shapes from")
    keys.sort(key=lambda k: (row_index(k[0]), int(k[1]), int(k[2])))
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 7919])).permutation(len(keys))
    keys = [keys[i] for i in order]
    fields = []
    with ThreadPoolExecutor(max_workers=8) as ex:
        for b in range(0, len(keys), 32):
            masks = list(ex.map(lambda k: _holes(p, k, lab, dilate), keys[b : b + 32]))
            for m in masks:
                comps = components_of(m)
                if comps:
                    fields.append(comps)
                    if len(fields) >= size:
                        break
            if len(fields) >= size:
                break
    return MaskPool(tuple(p.field_shape), tuple(fields), f"{path}:{lab}")


def _plate(path: str) -> Plate:
    """Return the plate at ``path``, opened once per process while its store stays the same.

    Keyed by the path and the stamp of its root ``zarr.json`` (inode, size, mtime): a store
    rewritten at the same path (``--overwrite``, a test's new plate) is opened again, never
    read through a stale handle's metadata.
    """
    try:
        st = (Path(path) / "zarr.json").stat()
        stamp: tuple[int, ...] = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = ()  # not a plate: open_plate says so
    return _open_stamped(path, stamp)


@functools.lru_cache(maxsize=8)
def _open_stamped(path: str, stamp: tuple[int, ...]) -> Plate:
    from phirm_scale.plate import open_plate

    return open_plate(path)


def _model(spec: SelfCheckSpec) -> tuple[Model, int]:
    """(model, tiles per call) exactly as the inpaint stage builds them for the real run."""
    from phirm_scale.batcher import field_runner

    name, ckpt, device = spec.model
    return field_runner(
        {"name": name, "checkpoint": ckpt, "device": device, **dict(spec.runtime)}, spec.batch_size
    )


def selfcheck_one_field(
    spec: SelfCheckSpec,
    rec_path: str,
    rec_channel: int,
    key: tuple[str, str, int],
    pool: MaskPool,
    window: int | str | None,
    params: PhirmParams | None,
    model: Model | None = None,
) -> dict[str, Any]:
    """Run the self-check and field checks of one field (the task body).

    ``model`` overrides the spec's model (a callable, e.g. in tests).
    """
    from phirm_scale import fieldqc, qc
    from phirm_scale.plate import FieldKey, row_index
    from phirm_scale.selfcheck import selfcheck_field

    key = FieldKey(*key)
    src = _plate(spec.source)
    source = src.read_field(key, spec.channel)
    holes = _holes(src, key, spec.mask_label, spec.dilate)
    restored = _plate(rec_path).read_field(key, rec_channel)
    name = f"{spec.source}/{key.path}"
    net, batch = (model, spec.batch_size) if model is not None else _model(spec)
    try:
        out = selfcheck_field(
            source,
            holes,
            net,
            restored=restored,
            pool=pool,
            seed_key=(spec.seed, row_index(key.row), int(key.column), int(key.field)),
            draws=spec.draws,
            shapes=spec.shapes,
            margin=spec.margin,
            attempts=spec.attempts,
            window=window,
            params=params,
            inpaint_kwargs={"tile": spec.tile, "overlap": spec.overlap, "batch_size": batch},
            name=name,
        )
        out.update(fieldqc.field_checks(source, restored, holes, params=params, name=name))
        out.update(
            fieldqc.residual_window_terms(
                source,
                restored,
                holes,
                list(qc.window_grid(source.shape, window).slices()),
                params=params,
                name=name,
            )
        )
    except PlateError:
        raise
    except Exception as exc:  # InputError and friends: name the field
        raise PlateError(f"{name}: {exc}") from exc
    return out


@dataclass(frozen=True)
class PoolRecipe:
    """How a worker rebuilds the mask pool.

    The rebuild is deterministic, so every process gets the same pool; tasks carry this
    small recipe, not the pool.
    """

    plate: str
    label: str
    dilate: int
    size: int
    seed: int
    shape: tuple


@functools.lru_cache(maxsize=4)
def _pool_from_recipe(recipe: PoolRecipe) -> MaskPool:
    return build_mask_pool(
        recipe.plate,
        recipe.label,
        dilate=recipe.dilate,
        size=recipe.size,
        seed=recipe.seed,
        shape=recipe.shape,
    )


@dataclass(frozen=True)
class SelfCheckTask:
    """One task of the stage contract: self-check ``keys`` of the inpainted plate."""

    spec: SelfCheckSpec
    rec_path: str
    rec_channel: int
    keys: tuple
    pool: Any  # a PoolRecipe (plates) or a MaskPool (given in memory)
    window: Any
    params: Any
    model: Any = None


def _task(t: SelfCheckTask) -> list[dict[str, Any]]:
    pool = _pool_from_recipe(t.pool) if isinstance(t.pool, PoolRecipe) else t.pool
    return [
        selfcheck_one_field(t.spec, t.rec_path, t.rec_channel, k, pool, t.window, t.params, t.model)
        for k in t.keys
    ]


def selfcheck_tasks(
    spec: SelfCheckSpec,
    rec_path: str,
    rec_channel: int,
    keys: Iterable[FieldKeyLike],
    pool: PoolRecipe | MaskPool,
    *,
    window: int | str | None,
    params: PhirmParams | None,
    fields_per_task: int = 1,
    model: Model | None = None,
) -> list[SelfCheckTask]:
    """Task arguments, each self-checking ``fields_per_task`` fields (plate order)."""
    if fields_per_task < 1:
        raise PlateError(f"fields_per_task must be >= 1, got {fields_per_task}")
    keys = [tuple(k) for k in keys]
    return [
        SelfCheckTask(
            spec,
            rec_path,
            rec_channel,
            tuple(keys[i : i + fields_per_task]),
            pool,
            window,
            params,
            model,
        )
        for i in range(0, len(keys), fields_per_task)
    ]


def run_selfcheck(
    spec: SelfCheckSpec,
    rec_path: str,
    rec_channel: int,
    keys: Iterable[FieldKeyLike],
    *,
    window: int | str | None,
    params: PhirmParams | None,
    pool: MaskPool | None = None,
    mask_pool: str | None = None,
    pool_size: int = 16,
    cluster: Any = "threads",
    progress: bool = False,
    fields_per_task: int = 1,
    model: Model | None = None,
) -> tuple[dict[FieldKey, dict[str, Any]], MaskPool]:
    """Self-check every field of ``keys``; returns ``({key: result dict}, pool)``.

    The pool is ``pool`` (a :class:`~phirm_scale.selfcheck.MaskPool`), else the one of
    ``mask_pool`` (``PLATE[:LABEL]``), else the source plate's own holes; tasks carry the
    pool's recipe and each worker process rebuilds it once. A plate without any hole and no
    pool is refused in one line. ``cluster``: a ``--cluster`` spec or an open client.
    """
    from phirm_scale.plate import FieldKey
    from phirm_scale.stages._runner import run_tasks

    src = _plate(spec.source)
    carried: MaskPool | PoolRecipe  # what the tasks carry: the pool, or how to rebuild it
    if pool is not None:
        carried = pool
    else:
        plate, label = (
            (mask_pool, spec.mask_label)
            if mask_pool is not None
            else (spec.source, spec.mask_label)
        )
        if ":" in str(plate) and not Path(str(plate)).exists():
            plate, label = str(plate).rsplit(":", 1)
        recipe = PoolRecipe(
            str(Path(plate).resolve()),
            label,
            spec.dilate,
            int(pool_size),
            spec.seed,
            tuple(src.field_shape),
        )
        pool = _pool_from_recipe(recipe)  # validates here, before any task
        carried = recipe
    if len(pool) == 0:
        raise PlateError(
            f"{spec.source}: no field has a hole in labels/{spec.mask_label}, so "
            "there is no artefact shape to self-check with; pass --mask-pool "
            "PLATE[:LABEL] with real artefact masks of fields of this size"
        )
    tasks = selfcheck_tasks(
        spec,
        rec_path,
        rec_channel,
        keys,
        carried,
        window=window,
        params=params,
        fields_per_task=fields_per_task,
        model=model,
    )
    computed = run_tasks(_task, tasks, cluster=cluster, progress=progress, description="self-check")
    out = {}
    for t, res in zip(tasks, computed, strict=True):
        out.update({FieldKey(*k): r for k, r in zip(t.keys, res, strict=True)})
    return out, pool


def selfcheck_qc(
    ds: xr.Dataset,
    reconstruction: str | Path,
    reconstruction_channel: str | int | None = None,
    *,
    draws: int | None = None,
    seed: int = 0,
    shapes: str = "own",
    margin: int = 4,
    mask_pool: str | None = None,
    pool_size: int = 16,
    selfcheck_threshold: float = DEFAULT_SELFCHECK_THRESHOLD,
    residual_threshold: float = DEFAULT_RESIDUAL_THRESHOLD,
    hidden_threshold: float | None = None,
    device: str = "auto",
    batch_size: int = 16,
    cluster: Any = "threads",
    client: Client | None = None,
    progress: bool = False,
    fields_per_task: int = 1,
    model: Model | None = None,
) -> xr.Dataset:
    """Add the self-check PhIRM, the reference-free field checks and the flags to a QC Dataset.

    ``reconstruction`` is an inpainted plate; its provenance names the model.

    Parameters
    ----------
    ds : xarray.Dataset
        QC Dataset of the plate (:func:`phirm_scale.stages.score.score_plan`); its window
        and PhIRM parameters are used.
    reconstruction : str or Path
        The inpainted plate (``PLATE[:CHANNEL]`` accepted).
    reconstruction_channel : str or int, optional
        Default: the channel after ``:``, else the inpainted channel's name.
    draws, seed, shapes, margin
        See :func:`phirm_scale.selfcheck.selfcheck_field` (draws default
        :data:`phirm_scale.selfcheck.DEFAULT_DRAWS`).
    mask_pool : str, optional
        ``PLATE[:LABEL]`` whose hole shapes serve fields without holes (default: the source
        plate's own; a plate with none and no pool is refused).
    pool_size : int
        Fields in the pool.
    selfcheck_threshold, residual_threshold, hidden_threshold : float
        Flag thresholds (:func:`phirm_scale.qc.flag_fields`; ``hidden_threshold`` default
        :data:`phirm_scale.fieldqc.DEFAULT_HIDDEN_THRESHOLD`).
    device, batch_size
        Model device and batch (the model itself and its tiling come from the provenance).
    cluster, progress, fields_per_task
        As in :func:`phirm_scale.stages.score.score_plan` (``client``: same as passing it as
        ``cluster``).
    model : callable, optional
        Use this model instead of the provenance's (tests, oracles).

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    InputError
        A ``hidden_threshold`` that is not a finite number > 0 (checked before any work).
    """
    from phirm_scale import qc
    from phirm_scale.fieldqc import check_hidden_threshold
    from phirm_scale.plate import FieldKey
    from phirm_scale.stages.score import parse_plate_spec

    if hidden_threshold is not None:
        hidden_threshold = check_hidden_threshold(hidden_threshold)

    path, spec_chan = parse_plate_spec(reconstruction)
    chan: str | int | None = (
        reconstruction_channel if reconstruction_channel is not None else spec_chan
    )
    spec = selfcheck_spec(
        path,
        draws=draws,
        seed=seed,
        shapes=shapes,
        margin=margin,
        device=device,
        batch_size=batch_size,
    )
    rec = _plate(str(Path(path).resolve()))
    if chan is None:
        chan = _plate(spec.source).channel_names[spec.channel]
    rc = rec.channel_index(chan)
    params = qc.params_from_attrs(ds.attrs)
    win = ds.attrs.get("window", 256)
    keys = [
        FieldKey(str(r), str(c), int(f)) for r, c, f in ((k[0], k[1], k[2]) for k in rec.fields)
    ]
    results, pool = run_selfcheck(
        spec,
        str(rec.path),
        rc,
        keys,
        window=win,
        params=params,
        mask_pool=mask_pool,
        pool_size=pool_size,
        cluster=client if client is not None else cluster,
        progress=progress,
        fields_per_task=fields_per_task,
        model=model,
    )
    return add_to_dataset(
        ds,
        results,
        spec,
        pool=pool,
        selfcheck_threshold=selfcheck_threshold,
        residual_threshold=residual_threshold,
        hidden_threshold=hidden_threshold,
    )


def result_variables() -> dict[str, tuple[str, str]]:
    """Every variable of a field's self-check result (self-check and field checks)."""
    from phirm_scale import fieldqc, selfcheck

    return {
        **selfcheck.SELFCHECK_WINDOW_VARIABLES,
        **selfcheck.SELFCHECK_FIELD_VARIABLES,
        **fieldqc.CHECK_VARIABLES,
        **fieldqc.RESIDUAL_WINDOW_VARIABLES,
    }


#: The reference-free estimate of the true PhIRM per window (:func:`add_estimate`).
ESTIMATE_VARIABLE = "estimated_phirm"


def add_estimate(ds: xr.Dataset) -> xr.Dataset:
    """Add ``estimated_phirm`` per window (:func:`phirm_scale.fieldqc.estimated_phirm`).

    From the self-check PhIRM and what the restoration left (``residual_*`` variables); the
    PhIRM parameters are the QC's (``param_*`` attributes). A Dataset without those variables
    is returned unchanged. Its field, well and plate summaries are added with the
    self-check's (:func:`phirm_scale.qc.add_selfcheck_summaries`).
    """
    import xarray as xr

    from phirm_scale import fieldqc, qc

    need = ("selfcheck_phirm", *fieldqc.RESIDUAL_WINDOW_VARIABLES)
    if any(v not in ds for v in need):
        return ds
    params = qc.params_from_attrs(ds.attrs)
    dims = ds["selfcheck_phirm"].dims
    est = fieldqc.estimated_phirm(
        ds["selfcheck_phirm"].values,
        ds["residual_artefact_window"].transpose(*dims).values,
        ds["residual_hidden_nuclei"].transpose(*dims).values,
        ds["residual_hidden_nuclear_area"].transpose(*dims).values,
        params=params,
    )
    ds = ds.copy()
    ds[ESTIMATE_VARIABLE] = xr.Variable(
        dims,
        est,
        attrs={
            "long_name": "estimated PhIRM without a reference: the self-check's deficit plus "
            "PhIRM's charge for the residual artefact and the nuclei it covers "
            "(fieldqc.estimated_phirm; docs/qc-without-ground-truth.md section 8)",
            "units": "1",
        },
    )
    return ds


def add_to_dataset(
    ds: xr.Dataset,
    results: Mapping,
    spec: SelfCheckSpec,
    *,
    pool: MaskPool | None = None,
    selfcheck_threshold: float = DEFAULT_SELFCHECK_THRESHOLD,
    residual_threshold: float = DEFAULT_RESIDUAL_THRESHOLD,
    hidden_threshold: float | None = None,
) -> xr.Dataset:
    """Self-check and field-check variables, flags and summaries into a QC Dataset."""
    from phirm_scale import qc

    variables = result_variables()
    attrs = spec.attrs()
    if pool is not None:
        attrs.update({"selfcheck_pool": pool.source, "selfcheck_pool_fields": len(pool)})
    ds = add_estimate(qc.add_field_results(ds, results, variables, attrs=attrs))
    return qc.flag_fields(
        ds,
        selfcheck_threshold=selfcheck_threshold,
        residual_threshold=residual_threshold,
        hidden_threshold=DEFAULT_HIDDEN_THRESHOLD if hidden_threshold is None else hidden_threshold,
    )


# ------------------------------------------------------------------ restore, then verify
ON_FLAG = ("keep", "leave-masked", "fallback:MODEL")
#: Flag bits ``--on-flag`` acts on (not 8, hidden_nuclei_above_threshold: see verify_field).
ACTED_ON = 1 | 2 | 4


@dataclass(frozen=True)
class VerifySpec:
    """Restore-then-verify settings of the inpaint stage (``--verify``)."""

    on_flag: str = "keep"
    draws: int = DEFAULT_SELFCHECK_DRAWS
    seed: int = 0
    margin: int = 4
    selfcheck_threshold: float = DEFAULT_SELFCHECK_THRESHOLD
    residual_threshold: float = DEFAULT_RESIDUAL_THRESHOLD
    window: int = 256
    hidden_threshold: float = DEFAULT_HIDDEN_THRESHOLD

    def __post_init__(self) -> None:
        from phirm_scale.models import list_models

        if self.on_flag not in ("keep", "leave-masked"):
            if not self.on_flag.startswith("fallback:"):
                raise PlateError(
                    f"--on-flag must be keep, leave-masked or fallback:MODEL, got {self.on_flag!r}"
                )
            name = self.on_flag.split(":", 1)[1]
            if name not in list_models():
                raise PlateError(
                    f"--on-flag {self.on_flag}: unknown model {name!r}; known: "
                    f"{', '.join(list_models())}"
                )
        if self.draws < 1:
            raise PlateError(f"verify draws must be >= 1, got {self.draws}")
        from phirm_scale.fieldqc import check_hidden_threshold

        object.__setattr__(self, "hidden_threshold", check_hidden_threshold(self.hidden_threshold))

    def as_attrs(self) -> dict:
        """Return the settings as a plain dict (recorded in the restored plate's attributes)."""
        import dataclasses

        return dataclasses.asdict(self)


def verify_field(
    source: np.ndarray,
    holes: np.ndarray,
    filled: np.ndarray,
    runner: Model,
    per_call: int,
    key: FieldKeyLike,
    spec: VerifySpec,
    *,
    tile: int,
    overlap: int,
    device: str = "auto",
    name: str = "field",
) -> tuple[np.ndarray, dict]:
    """Self-check a freshly restored field and apply ``spec.on_flag`` when it is flagged.

    Returns the field the inpainted plate should hold and a record (flag, self-check PhIRM,
    residual artefact area, expected hidden nuclear area, action) for its attributes. A
    field without holes is not checked (nothing was restored): flag 0. ``spec.on_flag``
    acts on the bits :data:`ACTED_ON` (self-check below threshold, residual artefact,
    self-check not run); a field flagged only by bit 8 (nuclei expected under the holes)
    keeps its restoration, flagged: on the held-out composite plates that bit flags 32 % of
    the good fields (docs/qc-without-ground-truth.md, section 7b), whose fills zeroing or
    replacing would lose.
    """
    from phirm_scale import fieldqc
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.plate import FieldKey, row_index
    from phirm_scale.selfcheck import selfcheck_field

    key = FieldKey(*key)
    hole = np.asarray(holes) != 0
    if not hole.any():
        return filled, {"flag": 0, "action": "none"}
    sc = selfcheck_field(
        source,
        hole,
        runner,
        restored=filled,
        seed_key=(spec.seed, row_index(key.row), int(key.column), int(key.field)),
        draws=spec.draws,
        margin=spec.margin,
        window=spec.window,
        inpaint_kwargs={"tile": tile, "overlap": overlap, "batch_size": per_call},
        name=name,
    )
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(sc["selfcheck_phirm"]))
    lo, hi = fieldqc.known_range(source, hole, name=name)
    residual = fieldqc.residual_artefact_area(filled, lo=lo, hi=hi)
    hidden = fieldqc.expected_hidden_nuclear_area(source, hole, name=name)
    code = fieldqc.flag_code(
        mean,
        residual,
        True,
        selfcheck_threshold=spec.selfcheck_threshold,
        residual_threshold=spec.residual_threshold,
        hidden_area=hidden,
        hidden_threshold=spec.hidden_threshold,
    )
    record = {
        "flag": code,
        "selfcheck_phirm": None if np.isnan(mean) else mean,
        "residual_artefact_area": int(residual),
        "expected_hidden_nuclear_area": round(hidden, 3),
        "action": "keep",
    }
    if not code & ACTED_ON or spec.on_flag == "keep":
        return filled, record
    if spec.on_flag == "leave-masked":
        out = np.asarray(source).copy()
        out[hole] = 0
        record["action"] = "leave-masked"
        return out, record
    from phirm_scale.batcher import field_runner

    model = spec.on_flag.split(":", 1)[1]
    fb, fb_call = field_runner({"name": model, "checkpoint": None, "device": device}, per_call)
    record["action"] = spec.on_flag
    return inpaint_field(source, hole, fb, tile=tile, overlap=overlap, batch_size=fb_call), record
