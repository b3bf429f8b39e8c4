"""Import official pre-trained weights into single-channel phirm-scale checkpoints.

- EdgeConnect (github knazeri/edge-connect): ``EdgeModel_gen.pth`` and
  ``InpaintingModel_gen.pth``, each ``{"generator": state_dict, "iteration": n}``. Old
  spectral-norm keys ``<layer>.weight_orig`` / ``weight_u`` / ``weight_v`` become the
  parametrisation keys ``<layer>.parametrizations.weight.original`` / ``.0._u`` / ``.0._v``
  (the same tensors: in eval mode both compute ``W / (u . W v)``, so outputs are unchanged).
  The edge generator is already grey (inputs: grey, edges, mask). The inpainting generator's RGB
  input channels are summed into one grey channel (exact for a grey image repeated to RGB) and
  its 3 RGB output filters are averaged into one (the pre-``tanh`` mean of the three colour
  outputs).
- DeepFill v2, PyTorch port (github nipponjo/deepfillv2-pytorch): ``states.pth`` with the
  generator under ``"G"``; layer names match :mod:`.networks.deepfill_v2`. Stage-1 input
  (RGB, ones, mask) and stage-2 inputs (RGB) are reduced the same way, and both ``to_rgb``
  layers averaged to one output. The discriminator is not imported (trained afresh).

The resulting checkpoints hold generators only; fine-tune them with
``phirm-scale train --init``. Never imports Dask or Zarr.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch

from phirm_scale.errors import CheckpointError
from phirm_scale.models.checkpoint import load_state, load_torch_file, save_checkpoint
from phirm_scale.models.networks import make_generator
from phirm_scale.models.networks.common import seeded
from phirm_scale.models.registry import default_config

__all__ = [
    "convert_spectral_norm_keys",
    "import_deepfill_v2",
    "import_edgeconnect",
    "reduce_to_grey",
]

_SN = re.compile(r"^(.*)\.weight_(orig|u|v)$")


def convert_spectral_norm_keys(state: dict) -> dict:
    """Rename old ``torch.nn.utils.spectral_norm`` keys to the parametrisation layout."""
    out = {}
    for k, v in state.items():
        m = _SN.match(k)
        if m is None:
            out[k] = v
            continue
        base, part = m.groups()
        new = {
            "orig": "parametrizations.weight.original",
            "u": "parametrizations.weight.0._u",
            "v": "parametrizations.weight.0._v",
        }[part]
        out[f"{base}.{new}"] = v
    return out


def _top_singular(weight: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    w = weight.detach().to(torch.float64)
    if dim != 0:
        w = w.movedim(dim, 0)
    mat = w.reshape(w.shape[0], -1)
    u, _s, vh = torch.linalg.svd(mat, full_matrices=False)
    return u[:, 0].to(weight.dtype), vh[0].to(weight.dtype)


def reduce_to_grey(
    file_state: dict[str, Any], target: torch.nn.Module, *, source: str | Path
) -> dict[str, Any]:
    """Adapt a (converted) RGB state dict to the single-channel ``target`` module.

    Per tensor whose shape differs from the target's: a conv weight with 2 more input channels
    has its first 3 (RGB) input channels summed; a weight/bias with 3 outputs where the target
    has 1 is averaged over them. Spectral-norm vectors of a reduced layer are recomputed from
    the reduced weight (exact top singular vectors). Any other mismatch is a
    :class:`CheckpointError` naming the key.
    """
    own = target.state_dict()
    out = dict(file_state)
    reduced_sn = set()
    for k, t in file_state.items():
        if k not in own or not isinstance(t, torch.Tensor) or t.shape == own[k].shape:
            continue
        o = own[k]
        if k.endswith(("._u", "._v")):
            continue  # recomputed below once the weight is reduced
        r = t
        if r.ndim == 4 and r.shape[1] == o.shape[1] + 2:
            r = torch.cat([r[:, :3].sum(1, keepdim=True), r[:, 3:]], dim=1)
        if r.ndim >= 1 and r.shape[0] == 3 and o.shape[0] == 1:
            r = r.mean(0, keepdim=True)
        if r.shape != o.shape:
            raise CheckpointError(
                f"{source}: {k} has shape {tuple(t.shape)}, cannot be reduced to {tuple(o.shape)}"
            )
        out[k] = r
        if k.endswith("parametrizations.weight.original"):
            reduced_sn.add(k[: -len("original")])
    for prefix in reduced_sn:
        mod_name = prefix[: -len(".parametrizations.weight.")]
        mod = target.get_submodule(mod_name)
        dim = 1 if isinstance(mod, torch.nn.ConvTranspose2d) else 0
        u, v = _top_singular(out[prefix + "original"], dim)
        out[prefix + "0._u"], out[prefix + "0._v"] = u, v
    return out


def _load_raw(path: str | Path, key: str) -> tuple[dict, dict]:
    path = Path(path)
    raw = load_torch_file(path, what="weights file", expected="a PyTorch weights file")
    if not isinstance(raw, dict) or key not in raw or not isinstance(raw[key], dict):
        keys = ", ".join(list(raw)[:5]) if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{path}: no {key!r} state dict (found: {keys})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    meta = {"path": str(path), "sha256": digest}
    for extra in ("iteration", "n_iter"):
        if extra in raw and isinstance(raw[extra], (int, float)):
            meta[extra] = raw[extra]
    return raw[key], meta


def _edge_width_blocks(state: dict[str, Any], source: str | Path) -> tuple[int, int]:
    w = state.get("encoder.1.parametrizations.weight.original", state.get("encoder.1.weight"))
    if w is None:
        raise CheckpointError(f"{source}: not an EdgeConnect generator (no encoder.1 weight)")
    blocks = {int(m.group(1)) for k in state for m in [re.match(r"middle\.(\d+)\.", k)] if m}
    return int(w.shape[0]), len(blocks)


def import_edgeconnect(
    out: str | Path,
    *,
    edge: str | Path | None = None,
    inpaint: str | Path | None = None,
    seed: int = 0,
) -> str:
    """Convert official EdgeConnect generator files into one phirm-scale checkpoint.

    Parameters
    ----------
    out : path
        Checkpoint to write.
    edge, inpaint : path, optional
        ``EdgeModel_gen.pth`` / ``InpaintingModel_gen.pth`` (at least one); a missing part
        keeps its seeded random initialisation.
    seed : int
        Seed of the random initialisation of a missing part.

    Returns
    -------
    str
        Content hash of the written checkpoint.
    """
    if edge is None and inpaint is None:
        raise CheckpointError(
            "import_edgeconnect needs an edge and/or an inpainting generator file"
        )
    parts = {}
    provenance: dict[str, dict[str, Any]] = {"imported_from": {"format": "edgeconnect-official"}}
    dims = set()
    for name, path in (("edge", edge), ("inpaint", inpaint)):
        if path is None:
            continue
        state, meta = _load_raw(path, "generator")
        state = convert_spectral_norm_keys(state)
        dims.add(_edge_width_blocks(state, path))
        parts[name] = (state, path)
        provenance["imported_from"][name] = meta
    if len(dims) != 1:
        raise CheckpointError(
            f"edge and inpainting files disagree on (width, blocks): {sorted(dims)}"
        )
    width, blocks = dims.pop()
    config = default_config("edgeconnect", width=width, blocks=blocks, seed=seed)
    with seeded(seed):
        gen = make_generator("edgeconnect", {k: v for k, v in config.items() if k != "seed"})
    for name, (state, path) in parts.items():
        sub = getattr(gen, name)
        load_state(
            sub, reduce_to_grey(state, sub, source=path), what=f"{name} generator", source=path
        )
    return save_checkpoint(
        out,
        model="edgeconnect",
        config=config,
        state_dicts={"generator": gen.state_dict()},
        provenance=provenance,
    )


def import_deepfill_v2(path: str | Path, out: str | Path) -> str:
    """Convert a DeepFill v2 PyTorch-port ``states.pth`` (key ``'G'``) into a checkpoint.

    Parameters
    ----------
    path : str or Path
        The port's ``states.pth`` (github nipponjo/deepfillv2-pytorch).
    out : str or Path
        The phirm-scale checkpoint to write.

    Returns
    -------
    str
        Content hash of the written checkpoint.
    """
    state, meta = _load_raw(path, "G")
    w = state.get("stage1.conv1.conv.weight")
    if w is None:
        raise CheckpointError(f"{path}: not a DeepFill v2 generator (no stage1.conv1.conv.weight)")
    cnum = int(w.shape[0])  # gated conv to cnum//2 outputs -> 2 * (cnum // 2) filters
    config = default_config("deepfill-v2", width=cnum)
    with seeded(0):
        gen = make_generator("deepfill-v2", {k: v for k, v in config.items() if k != "seed"})
    load_state(
        gen,
        reduce_to_grey(convert_spectral_norm_keys(state), gen, source=path),
        what="generator",
        source=path,
    )
    provenance = {"imported_from": {"format": "deepfillv2-pytorch", "G": meta}}
    return save_checkpoint(
        out,
        model="deepfill-v2",
        config=config,
        state_dicts={"generator": gen.state_dict()},
        provenance=provenance,
    )
