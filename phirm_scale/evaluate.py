"""The paper's experiment (4.2): inpainting models x mask families, scored with PhIRM.

For every mask family (rectangles in four area bins, DeepFill v2 strokes, real artefact
masks) one mask is drawn per test tile, seeded by ``(seed, family, tile index)`` so every
model sees the same masks whatever ``limit`` or batch size.  Each model fills the holes; the
8-bit result ``rint(255 * output)`` is scored against the original tile with PhIRM in both
modes (paper text and published code), PSNR and SSIM (:mod:`phirm_scale.metric`).

Outputs (with ``out_dir``): ``evaluation_tiles.csv`` (one row per model x family x tile),
``evaluation.csv`` (the summary table), ``table.txt`` (the printed table),
``phirm_by_mask.png`` (like the paper's Figure 2b), ``examples_<family>.png`` (original |
masked | each model, like Figures 2a and 3) and ``evaluation.json`` (provenance).
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from phirm_scale.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from phirm_scale.inpaint import Model
    from phirm_scale.metric import PhirmParams
    from phirm_scale.tiles import TileSet

    # a model name or a callable, alone, as a (label, model) pair or in a {label: model} dict
    _ModelSpec = str | Model
    _Models = str | dict[str, _ModelSpec] | Sequence[_ModelSpec | tuple[str, _ModelSpec]]
    # per tile: nuclei counts, nuclei areas, artefact areas, artefact counts
    _CompArrays = tuple[
        npt.NDArray[np.int_], npt.NDArray[np.int_], npt.NDArray[np.int_], npt.NDArray[np.int_]
    ]

__all__ = [
    "CHECKPOINT_ALIASES",
    "evaluate",
    "format_table",
    "parse_checkpoints",
    "plot_phirm_by_mask",
    "reference_components",
    "score_tiles",
    "summarise",
    "evaluation_table",
    "tile_masks",
]

log = logging.getLogger(__name__)

#: Short names accepted in ``--checkpoints``.
CHECKPOINT_ALIASES = {
    "ce": "context-encoder",
    "context-encoder": "context-encoder",
    "contextencoder": "context-encoder",
    "deepfill": "deepfill-v2",
    "deepfill-v2": "deepfill-v2",
    "deepfillv2": "deepfill-v2",
    "df": "deepfill-v2",
    "edge": "edgeconnect",
    "edgeconnect": "edgeconnect",
    "edge-connect": "edgeconnect",
    "ec": "edgeconnect",
}

_METRIC_COLS = ["phirm", "phirm_reference", "psnr", "ssim"]
_SCORE_COLS = ["phirm", "phirm_reference", "ncd", "nad", "aad", "psnr", "ssim"]
_COMPONENT_COLS = [
    "ref_nuclei_count",
    "rec_nuclei_count",
    "ref_nuclei_area",
    "rec_nuclei_area",
    "ref_artefact_area",
    "rec_artefact_area",
]


def parse_checkpoints(text: str | dict[str, str] | None) -> dict[str, str]:
    """``'ce=a.pt,deepfill-v2=b.pt'`` -> ``{'context-encoder': 'a.pt', 'deepfill-v2': 'b.pt'}``.

    Accepts a dict (returned normalised) or an empty string / None (no checkpoints).
    """
    if not text:
        return {}
    items = (
        text.items()
        if isinstance(text, dict)
        else (
            part.split("=", 1) if "=" in part else (part, None)
            for part in str(text).split(",")
            if part.strip()
        )
    )
    out: dict[str, str] = {}
    for name, path in items:
        if path is None or not str(path).strip():
            raise InputError(f"--checkpoints entry {name!r} must be NAME=PATH")
        key = CHECKPOINT_ALIASES.get(str(name).strip().lower(), str(name).strip())
        out[key] = str(path).strip()
    return out


def _family_seed(seed: int, spec: str) -> int:
    return zlib.crc32(spec.encode()) ^ (int(seed) & 0xFFFFFFFF)


def tile_masks(
    spec: str,
    indices: Sequence[int],
    shape: Sequence[int],
    *,
    seed: int = 0,
    artefact_pool: npt.ArrayLike | None = None,
) -> npt.NDArray[np.uint8]:
    """Draw the evaluation masks of one family for the given tile indices.

    Mask ``i`` depends only on ``(seed, spec, i)``, so every model, batch size and
    ``limit`` sees the same mask on the same tile.

    Parameters
    ----------
    spec : str
        Mask family (:func:`phirm_scale.masks.parse_mask_spec`).
    indices : sequence of int
        Tile indices.
    shape : (int, int)
        Tile shape.
    seed : int
        Experiment seed.
    artefact_pool : (N, H, W) array_like, optional
        Real artefact masks for ``'artefacts'``.

    Returns
    -------
    (len(indices), H, W) ndarray of uint8
        1 = hole.
    """
    from phirm_scale.masks import parse_mask_spec, sample_mask

    ms = parse_mask_spec(spec)
    fam = _family_seed(seed, ms.spec)
    out = np.empty((len(indices), *shape), np.uint8)
    for j, i in enumerate(indices):
        rng = np.random.default_rng([fam, int(i)])
        out[j] = sample_mask(ms, shape, rng=rng, artefact_pool=artefact_pool)
    return out


def _resolve_models(
    models: _Models,
    checkpoints: Mapping[str, str],
    *,
    device: str,
    allow_untrained: bool,
    batch_size: int,
) -> list[tuple[str, Model, str | None]]:
    """[(label, callable, checkpoint_hash)] with every model loaded before any work."""
    from phirm_scale.models.registry import LEARNED, TORCH_MODELS, get_model, list_models

    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if isinstance(models, dict):
        entries = list(models.items())
    else:
        entries = []
        for i, m in enumerate(models):
            if isinstance(m, str):
                entries.append((m, m))
            elif isinstance(m, tuple) and len(m) == 2:
                entries.append(m)
            elif callable(m):
                entries.append((getattr(m, "name", None) or f"model{i}", m))
            else:
                raise InputError(f"models[{i}]: expected a model name or a callable; got {m!r}")
    if not entries:
        raise InputError("no models to evaluate")
    labels = [e[0] for e in entries]
    if len(set(labels)) != len(labels):
        raise InputError(f"duplicate model names in {labels}")
    names = {e[1] for e in entries if isinstance(e[1], str)}
    extra = sorted(set(checkpoints) - names)
    if extra:
        raise InputError(
            f"--checkpoints names {', '.join(extra)} not among the evaluated models "
            f"({', '.join(sorted(names))})"
        )
    known = list_models()
    out: list[tuple[str, Model, str | None]] = []
    for label, m in entries:
        if isinstance(m, str):
            if m not in known:
                raise InputError(f"unknown model {m!r}; known models: {', '.join(known)}")
            ck = checkpoints.get(m)
            if m in LEARNED and ck is None and not allow_untrained:
                raise InputError(
                    f"model {m!r} is learned and has no checkpoint: pass --checkpoints {m}=PATH "
                    f"(train one with 'phirm-scale train'), or --allow-untrained for a smoke test "
                    f"with random weights"
                )
            extra_cfg = {"batch_size": batch_size} if m in TORCH_MODELS else {}
            model = get_model(m, ck, device=device, **extra_cfg)
            out.append((label, model, getattr(model, "checkpoint_hash", None)))
        elif callable(m):
            out.append((label, m, getattr(m, "checkpoint_hash", None)))
        else:
            raise InputError(f"model {label!r}: expected a model name or a callable")
    return out


def _comp_arrays(images_u8: Iterable[npt.NDArray[np.uint8]], params: PhirmParams) -> _CompArrays:
    from phirm_scale.metric import components

    cs = [components(im, params) for im in images_u8]
    return (
        np.array([c.nuclei_count for c in cs]),
        np.array([c.nuclei_area for c in cs]),
        np.array([c.artefact_area for c in cs]),
        np.array([c.artefact_count for c in cs]),
    )


def _to_u8(x: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    return np.clip(np.rint(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def reference_components(originals_u8: np.ndarray) -> tuple[tuple, tuple]:
    """Return the PhIRM components of original tiles, in both modes, for :func:`score_tiles`.

    Parameters
    ----------
    originals_u8 : (N, H, W) ndarray of uint8
        The original tiles.

    Returns
    -------
    tuple
        ``(paper-mode arrays, reference-mode arrays)``, each (nuclei counts, nuclei areas,
        artefact areas, artefact counts) per tile.
    """
    from phirm_scale.metric import PhirmParams

    return _comp_arrays(originals_u8, PhirmParams()), _comp_arrays(
        originals_u8, PhirmParams.reference()
    )


def score_tiles(
    originals_u8: np.ndarray, restored_u8: np.ndarray, *, reference: tuple | None = None
) -> dict[str, np.ndarray]:
    """Score restored 8-bit tiles against their originals: the experiment's per-tile scores.

    Parameters
    ----------
    originals_u8, restored_u8 : (N, H, W) ndarray of uint8
        Originals and reconstructions (``rint(255 * output)``).
    reference : tuple, optional
        :func:`reference_components` of ``originals_u8`` (computed when not given).

    Returns
    -------
    dict of str to ndarray
        Per tile: ``phirm``, ``phirm_reference``, ``ncd``, ``nad``, ``aad``, ``psnr``,
        ``ssim`` and the reference/reconstruction components (``ref_nuclei_count``...).
    """
    from phirm_scale.metric import PhirmParams, phirm_from_components, psnr, ssim

    p_paper, p_ref = PhirmParams(), PhirmParams.reference()
    ref_p, ref_r = reference if reference is not None else reference_components(originals_u8)
    rec_p = _comp_arrays(restored_u8, p_paper)
    rec_r = _comp_arrays(restored_u8, p_ref)
    ncd, nad, aad, ph = phirm_from_components(
        ref_p[0], ref_p[1], ref_p[2], rec_p[0], rec_p[1], rec_p[2], p_paper
    )
    _, _, _, ph_ref = phirm_from_components(
        ref_r[0], ref_r[1], ref_r[2], rec_r[0], rec_r[1], rec_r[2], p_ref
    )
    n = len(originals_u8)
    return {
        "phirm": np.asarray(ph, np.float64),
        "phirm_reference": np.asarray(ph_ref, np.float64),
        "ncd": np.asarray(ncd, np.float64),
        "nad": np.asarray(nad, np.float64),
        "aad": np.asarray(aad, np.float64),
        "psnr": np.array([psnr(originals_u8[i], restored_u8[i]) for i in range(n)]),
        "ssim": np.array([ssim(originals_u8[i], restored_u8[i]) for i in range(n)]),
        "ref_nuclei_count": ref_p[0],
        "rec_nuclei_count": rec_p[0],
        "ref_nuclei_area": ref_p[1],
        "rec_nuclei_area": rec_p[1],
        "ref_artefact_area": ref_p[2],
        "rec_artefact_area": rec_p[2],
    }


def evaluate(
    models: _Models,
    tiles: str | Path | TileSet,
    *,
    masks: Sequence[str] | None = None,
    checkpoints: str | dict[str, str] | None = None,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    device: str = "auto",
    allow_untrained: bool = False,
    n_examples: int = 3,
    split: str | None = None,
) -> pd.DataFrame:
    """Run the paper's experiment: every model on every mask family over the test tiles.

    Parameters
    ----------
    models : str, sequence or dict
        Model names for :func:`phirm_scale.models.get_model` (``'telea,deepfill-v2'`` or a
        list), callables ``f(images, masks) -> images`` on ``(N, 1, H, W)`` float32 in
        [0, 1] (named by their ``name`` attribute), ``(label, name_or_callable)`` pairs or a
        ``{label: name_or_callable}`` dict.
    tiles : str, Path or TileSet
        A tile store, optionally with a split suffix (``TILES.zarr:test``); default split
        ``'test'``.
    masks : sequence of str, optional
        Mask families; default :data:`phirm_scale.masks.MASK_FAMILIES`.
    checkpoints : dict or str, optional
        ``{model name: checkpoint path}`` (or ``'ce=a.pt,...'``).
    out_dir : path, optional
        Write CSVs, the table, plots and provenance there.
    limit : int, optional
        Use only the first ``limit`` tiles.
    seed : int
        Seed of the masks.
    batch_size : int
        Tiles per model call.
    device : str
        ``'auto'``, ``'cpu'`` or ``'cuda'`` for the learned models.
    allow_untrained : bool
        Allow learned models without a checkpoint (random weights).
    n_examples : int
        Example tiles per family in the example panels.
    split : str, optional
        Split to use when ``tiles`` has no suffix (default ``'test'``).

    Returns
    -------
    pandas.DataFrame
        One row per model x mask family x tile: ``model``, ``mask``, ``tile``, ``well``,
        ``hole_fraction``, ``phirm``, ``phirm_reference``, ``ncd``, ``nad``, ``aad``,
        ``psnr``, ``ssim``, the reference/reconstruction components, ``checkpoint_hash``
        and ``seconds`` (model time per tile in its batch).  :func:`evaluation_table` makes the
        table.

    Raises
    ------
    InputError
        Unknown model or mask family, learned model without checkpoint, no test tiles,
        ``'artefacts'`` without artefact masks in the store; all before any model runs.
    """
    import pandas as pd

    from phirm_scale.masks import MASK_FAMILIES, parse_mask_spec
    from phirm_scale.tiles import TileSet, open_tiles, parse_tiles_path

    t_start = time.perf_counter()
    # ---- validate everything before running a model
    if isinstance(tiles, TileSet):
        ts = tiles
    else:
        path, suffix = parse_tiles_path(tiles)
        ts = open_tiles(path, split=suffix or split or "test")
    if out_dir is not None:
        from phirm_scale.outputs import check_output_folder

        check_output_folder(out_dir, inputs=[getattr(ts, "path", None)])
    specs = [parse_mask_spec(m).spec for m in (masks if masks is not None else MASK_FAMILIES)]
    if not specs:
        raise InputError("no mask families to evaluate")
    if len(set(specs)) != len(specs):
        raise InputError(f"duplicate mask families in {specs}")
    n = len(ts) if limit is None else min(len(ts), int(limit))
    if limit is not None and int(limit) < 1:
        raise InputError(f"--limit must be >= 1; got {limit}")
    if n == 0:
        raise InputError(f"{ts.path}: split {ts.split!r} has no tiles")
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1; got {batch_size}")
    pool = None
    if any(parse_mask_spec(s).kind in ("artefacts",) for s in specs):
        if ts.artefacts is None:
            raise InputError(
                f"{ts.path}: no artefact masks in this tile store (write it with "
                f"'phirm-scale tiles --label artefacts_true' or drop 'artefacts' from --masks)"
            )
        pool = np.asarray(ts.artefacts[:])
        if not pool.reshape(len(pool), -1).any(axis=1).any():
            raise InputError(
                f"{ts.path}: split {ts.split!r} has no tile with an artefact pixel; "
                f"cannot draw 'artefacts' masks"
            )
    ckpts = parse_checkpoints(checkpoints)
    resolved = _resolve_models(
        models, ckpts, device=device, allow_untrained=allow_untrained, batch_size=batch_size
    )

    images = np.asarray(ts.images[:n])
    size = images.shape[1:]
    wells = ts.wells[:n] if "wells" in ts.attrs else [""] * n
    ref_p, ref_r = reference_components(images)
    # example tiles: those with the most nuclei among the first tiles, in index order
    order = np.argsort(-ref_p[0], kind="stable")
    ex_idx = sorted(order[: max(0, int(n_examples))].tolist())
    examples: dict[str, dict[str, Any]] = {}

    rows = []
    for spec in specs:
        m_all = tile_masks(spec, range(n), size, seed=seed, artefact_pool=pool)
        examples[spec] = {
            "index": ex_idx,
            "original": images[ex_idx],
            "mask": m_all[ex_idx],
            "models": {},
        }
        for label, model, ck_hash in resolved:
            outs = np.empty_like(images)
            secs = np.zeros(n)
            for b0 in range(0, n, batch_size):
                b1 = min(n, b0 + batch_size)
                x = (images[b0:b1].astype(np.float32) / np.float32(255.0))[:, None]
                mk = m_all[b0:b1][:, None]
                t0 = time.perf_counter()
                y = np.asarray(model(x, mk))
                secs[b0:b1] = (time.perf_counter() - t0) / (b1 - b0)
                if y.shape != x.shape:
                    raise InputError(
                        f"model {label!r} returned shape {y.shape}, expected {x.shape}"
                    )
                outs[b0:b1] = _to_u8(y[:, 0])
            sc = score_tiles(images, outs, reference=(ref_p, ref_r))
            examples[spec]["models"][label] = (outs[ex_idx], sc["phirm"][ex_idx])
            for i in range(n):
                rows.append(
                    {
                        "model": label,
                        "mask": spec,
                        "tile": i,
                        "well": wells[i],
                        "hole_fraction": float(m_all[i].mean()),
                        **{k: float(sc[k][i]) for k in _SCORE_COLS},
                        **{k: int(sc[k][i]) for k in _COMPONENT_COLS},
                        "checkpoint_hash": ck_hash,
                        "seconds": float(secs[i]),
                    }
                )
            ph = sc["phirm"]
            log.info("%16s %11s: PhIRM %.3f  (%.1f s)", label, spec, np.mean(ph), secs.sum())
    df = pd.DataFrame(rows)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        df.to_csv(out / "evaluation_tiles.csv", index=False)
        evaluation_table(df).to_csv(out / "evaluation.csv", index=False)
        (out / "table.txt").write_text(format_table(df) + "\n")
        plot_phirm_by_mask(df, out / "phirm_by_mask.png")
        for spec, ex in examples.items():
            _plot_examples(ex, out / f"examples_{_safe(spec)}.png", spec)
        prov = {
            "tiles": str(ts.path),
            "split": ts.split,
            "n_tiles": n,
            "seed": seed,
            "masks": specs,
            "tile_size": list(size),
            "device": device,
            "models": [
                {
                    "label": lab,
                    "checkpoint": ckpts.get(lab),
                    "checkpoint_hash": h,
                    "device": str(getattr(mdl, "device", "cpu")),
                }
                for lab, mdl, h in resolved
            ],
            "seconds": round(time.perf_counter() - t_start, 3),
        }
        (out / "evaluation.json").write_text(json.dumps(prov, indent=2))
    return df


def _safe(spec: str) -> str:
    return spec.replace(":", "_").replace("+", "_")


def evaluation_table(df: pd.DataFrame) -> pd.DataFrame:
    """Summarise the experiment: one row per model x mask family (in run order).

    Columns: ``model``, ``mask``, ``n``, ``hole_pct`` (mean hole area, %), ``phirm``
    (mean, paper mode), ``phirm_std``, ``phirm_reference`` (mean, published-code mode),
    ``psnr`` (mean over tiles, dB; ``inf`` if a tile is reproduced exactly), ``ssim`` and
    ``ms_per_tile`` (model time).
    """
    import pandas as pd

    out = []
    for (model, mask), g in df.groupby(["model", "mask"], sort=False):
        out.append(
            {
                "model": model,
                "mask": mask,
                "n": len(g),
                "hole_pct": 100 * g.hole_fraction.mean(),
                "phirm": g.phirm.mean(),
                "phirm_std": g.phirm.std(ddof=0),
                "phirm_reference": g.phirm_reference.mean(),
                "psnr": g.psnr.mean(),
                "ssim": g.ssim.mean(),
                "ms_per_tile": 1000 * g.seconds.mean(),
            }
        )
    return pd.DataFrame(out)


def format_table(df: pd.DataFrame) -> str:
    """Format the results for printing: the summary, then PhIRM (paper mode) per model x mask."""
    s = evaluation_table(df)
    long = s.to_string(
        index=False, float_format=lambda v: f"{v:.3f}" if math.isfinite(v) else str(v)
    )
    piv = s.pivot(index="model", columns="mask", values="phirm")
    piv = piv.loc[list(dict.fromkeys(s.model)), list(dict.fromkeys(s["mask"]))]
    wide = piv.to_string(float_format=lambda v: f"{v:.3f}")
    return f"{long}\n\nmean PhIRM (paper mode), model x mask family:\n{wide}"


def plot_phirm_by_mask(df: pd.DataFrame, path: str | Path) -> Path:
    """Plot grouped bars of mean PhIRM (+- std) by mask family and model (paper Figure 2b).

    With PhIRM (reference mode), PSNR and SSIM panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = evaluation_table(df)
    models = list(dict.fromkeys(s.model))
    fams = list(dict.fromkeys(s["mask"]))
    d = df.replace([np.inf], np.nan)
    fig, axes = plt.subplots(
        2, 2, figsize=(max(8, 1.6 * len(fams) * max(1, len(models)) / 2 + 4), 8)
    )
    w = 0.8 / len(models)
    x = np.arange(len(fams))
    for ax, col, title in (
        (axes[0, 0], "phirm", "PhIRM (paper mode)"),
        (axes[0, 1], "phirm_reference", "PhIRM (reference mode)"),
        (axes[1, 0], "psnr", "PSNR (dB, exact tiles left out)"),
        (axes[1, 1], "ssim", "SSIM"),
    ):
        for j, m in enumerate(models):
            g = d[d.model == m].groupby("mask", sort=False)[col]
            mean = g.mean().reindex(fams)
            std = g.std(ddof=0).reindex(fams).fillna(0)
            ax.bar(x + (j - (len(models) - 1) / 2) * w, mean, w, yerr=std, capsize=2, label=m)
        ax.set_xticks(x)
        ax.set_xticklabels(fams, rotation=20)
        ax.set_title(title)
        if col != "psnr":
            ax.set_ylim(0, 1.05)
    axes[0, 0].legend(fontsize=8)
    n = df.tile.nunique()
    fig.suptitle(f"Inpainting on {n} test tiles per mask family (mean +- std)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _plot_examples(ex: Mapping[str, Any], path: Path, spec: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(ex["index"])
    if k == 0:
        return
    cols = 2 + len(ex["models"])
    fig, axes = plt.subplots(k, cols, figsize=(2.4 * cols, 2.5 * k), squeeze=False)
    for r in range(k):
        orig = ex["original"][r]
        masked = np.where(ex["mask"][r] != 0, 255, orig).astype(np.uint8)
        panels = [(f"original (tile {ex['index'][r]})", orig), ("masked", masked)]
        for lab, (outs, ph) in ex["models"].items():
            panels.append((f"{lab}\nPhIRM {ph[r]:.2f}", outs[r]))
        for c, (t, im) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(im, cmap="gray", vmin=0, vmax=255)
            ax.set_title(t, fontsize=8)
            ax.axis("off")
    fig.suptitle(f"mask family {spec}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


#: The former name of :func:`evaluation_table` (kept importable; issue 21: three functions were
#: named ``summarise``).
summarise = evaluation_table
