"""Pictures of single fields: source | holes filled | restored | (reference) | difference.

:func:`read_field_images` reads a field's images from the plates a QC records (the damaged
source and the holes from the restored plate's ``inpaint`` provenance),
:func:`reference_is_source` says whether PhIRM had a ground truth, and
:func:`field_thumbnail` (single-plate QC) and :func:`_screen_thumbnail` (screen QC) save the
picture as PNG. Matplotlib is used through :class:`matplotlib.figure.Figure` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from phirm_scale.flags import DEFAULT_SELFCHECK_THRESHOLD

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FieldImages",
    "field_thumbnail",
    "read_field_images",
    "reference_is_source",
]


def _fig(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


class FieldImages(NamedTuple):
    """The pictures of one field: what was damaged, what was filled, what came out.

    ``source`` is the damaged input the inpainting read (None when the restored plate records
    no ``inpaint`` provenance), ``mask`` the holes filled (the label the restored plate
    carries, dilated as inpainted; None when none is recorded), ``reference`` what PhIRM
    scored against and ``reference_is_source`` whether that is the damaged input itself
    (no reference channel: every artefact removed then counts as damage).
    """

    source: npt.NDArray[Any] | None
    mask: npt.NDArray[np.bool_] | None
    restored: npt.NDArray[Any]
    reference: npt.NDArray[Any]
    source_channel: str | None
    reference_channel: str
    reference_is_source: bool
    dilate: int | None


def _inpaint_provenance(reconstruction: str | Path) -> Mapping[str, Any] | None:
    from phirm_scale.plate import ATTRS_KEY, open_plate

    try:
        prov = open_plate(reconstruction).attrs.get(ATTRS_KEY, {}).get("inpaint")
    except Exception:  # noqa: BLE001 - no plate there: nothing recorded
        return None
    return prov if isinstance(prov, Mapping) else None


def _same_store(a: object, b: object) -> bool:
    try:
        return Path(str(a)).resolve() == Path(str(b)).resolve()
    except OSError:
        return str(a) == str(b)


def reference_is_source(
    reference: str | Path, reference_channel: object, reconstruction: str | Path
) -> bool | None:
    """Whether PhIRM scored a restored plate against the damaged input it was made from.

    Read from the restored plate's ``inpaint`` provenance (its source plate and channel);
    None when it records none. True means there was no ground truth: every artefact the
    inpainting removed counts as damage in that PhIRM.
    """
    prov = _inpaint_provenance(reconstruction)
    if prov is None:
        return None
    return _same_store(prov.get("source"), reference) and str(prov.get("channel")) == str(
        reference_channel
    )


def read_field_images(
    reference: str | Path,
    reference_channel: str | int,
    reconstruction: str | Path,
    reconstruction_channel: str | int,
    key: tuple[str, str, int],
    *,
    mask_label: str | None = None,
) -> FieldImages:
    """Read :class:`FieldImages` of field ``key`` from the plates a QC records.

    The damaged source and the holes come from the restored plate's ``inpaint`` provenance
    (``source``, ``channel``) and its label (the mask as filled); without provenance the mask
    is ``mask_label`` of the reference plate, where it has one.
    """
    from phirm_scale.plate import FieldKey, open_plate

    k = FieldKey(str(key[0]), str(key[1]), int(key[2]))
    rec_plate = open_plate(reconstruction)
    restored = rec_plate.read_field(k, reconstruction_channel)
    ref_plate = open_plate(reference)
    ref = ref_plate.read_field(k, reference_channel)
    ref_ch = (
        ref_plate.channel_names[reference_channel]
        if isinstance(reference_channel, int)
        else str(reference_channel)
    )
    prov = _inpaint_provenance(reconstruction)
    source = mask = None
    source_channel = None
    dilate = None
    same = False
    if prov is not None:
        source_channel = str(prov.get("channel"))
        same = _same_store(prov.get("source"), reference) and source_channel == ref_ch
        if same:
            source = ref
        else:
            try:
                source = open_plate(str(prov["source"])).read_field(k, source_channel)
            except Exception:  # noqa: BLE001 - moved or deleted: shown as not recorded
                source = None
        label = prov.get("mask_label")
        if label and rec_plate.has_label(k, str(label)):
            mask = rec_plate.read_label(k, str(label)) > 0
            dilate = int(prov.get("dilate") or 0)
    if mask is None and mask_label and ref_plate.has_label(k, mask_label):
        mask = ref_plate.read_label(k, mask_label) > 0
    return FieldImages(source, mask, restored, ref, source_channel, ref_ch, same, dilate)


def _field_figure(
    images: FieldImages,
    *,
    title: str,
    windows: Sequence[tuple[int, int, int, int]] = (),
) -> tuple[Figure, list[str]]:
    """Draw source | mask | restored | (reference) | difference of one field.

    Returns the figure and the panel captions.
    The reference gets a panel of its own when it is not the damaged source (a ground
    truth). Source, restored and reference share one grey scale: the 1-99.5 percentiles of
    the source's pixels outside the holes (its saturated artefacts would otherwise set it).
    The difference is ``|restored - reference|`` on 8 bit as PhIRM sees it (the reference's
    min / max), shown from 0 to its 99.9th percentile. ``windows`` ``(y0, x0, h, w)`` are
    outlined in red on the restored image and the difference.
    """
    from matplotlib.patches import Rectangle

    from phirm_scale.metric import to_uint8

    src = images.source if images.source is not None else images.reference
    mask = images.mask
    known = src[~mask] if mask is not None and not mask.all() else src
    p1, p995 = (float(v) for v in np.percentile(known, [1, 99.5]))
    lo, hi = float(np.min(images.reference)), float(np.max(images.reference))
    diff = np.abs(
        to_uint8(images.restored, lo, hi).astype(np.int16)
        - to_uint8(images.reference, lo, hi).astype(np.int16)
    ).astype(np.float64)
    top = max(float(np.percentile(diff, 99.9)), 1.0)
    first = (
        f"reference ({images.reference_channel}; damaged source not recorded)"
        if images.source is None
        else f"source: the damaged input ({images.source_channel})"
    )
    if mask is None:
        mask_title = "holes: no mask recorded"
        mask_img = np.zeros(src.shape)
    else:
        grown = f", grown {images.dilate} px" if images.dilate else ""
        mask_title = f"holes filled: {int(mask.sum()):,} px{grown}"
        mask_img = mask.astype(np.float64)
    panels: list[tuple[npt.ArrayLike, str]] = [
        (_stretch(src, p1, p995), first),
        (mask_img, mask_title),
        (_stretch(images.restored, p1, p995), "restored (same grey scale)"),
    ]
    if images.source is not None and not images.reference_is_source:
        panels.append(
            (_stretch(images.reference, p1, p995), f"reference ({images.reference_channel})")
        )
    against = (
        "source: what the inpainting changed"
        if images.reference_is_source or images.source is None
        else "reference"
    )
    panels.append(
        (
            np.clip(diff / top, 0.0, 1.0),
            f"|restored - {against}|\n(8 bit as PhIRM sees it; white = {top:.0f} of 255)",
        )
    )
    fig = _fig(3.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels))
    _draw_panels(axes, panels)
    for y0, x0, h, w in windows:
        for ax in (axes[2], axes[-1]):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, lw=1.0, ec="crimson"))
    fig.suptitle(title, fontsize=11)
    return fig, [t for _, t in panels]


def _display(
    img: npt.ArrayLike, target: int = 720
) -> tuple[npt.NDArray[np.float64], tuple[float, float, float, float]]:
    """Block-mean an image down for a thumbnail panel, keeping its pixel coordinates.

    A panel is ~330 px wide, so a 2160-px field is averaged over 3x3 blocks (the largest integer
    factor leaving at least ``target`` px a side) before matplotlib resamples it: the picture
    is the same to the eye and a thumbnail takes ~0.2 s instead of ~2 s. Returns the image and
    the ``extent`` that keeps drawing in full-resolution pixel coordinates.
    """
    a = np.asarray(img, dtype=np.float64)
    f = max(1, min(a.shape) // target)
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    if f > 1:
        a = a[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    return a, (-0.5, w - 0.5, h - 0.5, -0.5)


def _draw_panels(
    axes: Axes | npt.NDArray[np.object_], panels: Sequence[tuple[npt.ArrayLike, str]]
) -> None:
    """Draw ``(image in [0, 1], title)`` panels in grey, one per axis, at display size."""
    all_axes = np.atleast_1d(axes)  # type: ignore[arg-type]  # one Axes -> a 1-element array
    for ax, (img, title) in zip(all_axes, panels, strict=True):
        shown, extent = _display(img)
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="antialiased", extent=extent)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()


def _stretch(img: npt.ArrayLike, lo: float, hi: float) -> npt.NDArray[np.float64]:
    a = (np.asarray(img, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
    return np.clip(a, 0.0, 1.0)


def _scored_against(ds: xr.Dataset) -> str:
    """Say ``" against the damaged source"`` when PhIRM had no ground truth, else ``""``.

    That is when a single-plate QC's reference is the damaged input its reconstruction was
    made from (:func:`reference_is_source`).
    """
    ref, rec = ds.attrs.get("reference"), ds.attrs.get("reconstruction")
    if not ref or not rec:
        return ""
    same = reference_is_source(ref, ds.attrs.get("reference_channel", ""), rec)
    return " against the damaged source" if same else ""


def field_thumbnail(
    ds: xr.Dataset,
    row: str,
    column: str,
    field: int,
    path: str | Path,
    *,
    reference: npt.NDArray[np.number[Any]] | None = None,
    reconstruction: npt.NDArray[np.number[Any]] | None = None,
    source: npt.NDArray[np.number[Any]] | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
) -> Path:
    """Save source | holes | restored | (reference) | |difference| of one field as PNG.

    ``source`` is the damaged input, ``mask`` the holes filled, ``reference`` what PhIRM
    scored against (shown apart when it is not the source), all ``(Y, X)``. By default they
    are read from the plates recorded in ``ds.attrs`` (:func:`read_field_images`). Windows of
    PhIRM below the QC's threshold are outlined in red.
    """
    _field_thumbnail(
        ds, row, column, field, path, reference, reconstruction, source=source, mask=mask
    )
    return Path(path)


def _field_thumbnail(
    ds: xr.Dataset,
    row: str,
    column: str,
    field: int,
    path: str | Path,
    reference: npt.NDArray[Any] | None = None,
    reconstruction: npt.NDArray[Any] | None = None,
    *,
    source: npt.NDArray[Any] | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
) -> list[str]:
    """:func:`field_thumbnail`, returning the panel captions."""
    if reference is None or reconstruction is None:
        images = read_field_images(
            ds.attrs["reference"],
            ds.attrs.get("reference_channel", 0),
            ds.attrs["reconstruction"],
            ds.attrs.get("reconstruction_channel", 0),
            (row, column, field),
            mask_label=ds.attrs.get("mask_label"),
        )
    else:
        images = FieldImages(
            source,
            mask,
            reconstruction,
            reference,
            "source" if source is not None else None,
            str(ds.attrs.get("reference_channel", "reference")),
            False,
            None,
        )
    thr = float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))
    sel = ds.sel(row=row, column=column, field=field)
    h = int(ds.attrs.get("window_height", int(images.reference.shape[0])))
    w = int(ds.attrs.get("window_width", int(images.reference.shape[1])))
    low = [
        (int(y0), int(x0), h, w)
        for y0, x0, p in zip(sel["y0"].values, sel["x0"].values, sel["phirm"].values, strict=True)
        if p < thr
    ]
    against = " against the damaged source" if images.reference_is_source else ""
    fig, captions = _field_figure(
        images,
        title=f"{row}{column} field {field}: mean PhIRM{against} "
        f"{float(np.nanmean(sel['phirm'].values)):.3f} (red: windows < {thr:g})",
        windows=low,
    )
    fig.savefig(Path(path))
    return captions


def _screen_thumbnail(
    ds: xr.Dataset, plate: str, row: str, column: str, field: int, path: str | Path
) -> list[str]:
    """Save source | holes | restored | (reference) | |difference| of one screen field.

    As PNG (:func:`_field_figure`); returns the panel captions.
    """
    d = ds.sel(plate=plate)
    images = read_field_images(
        str(d["reference"].values),
        str(d["reference_channel"].values),
        str(d["reconstruction"].values),
        str(d["reconstruction_channel"].values),
        (row, column, field),
        mask_label=str(d["mask_label"].values) or None,
    )
    sel = d.sel(row=row, column=column, field=field)
    if "field_selfcheck_phirm_mean" in d:
        score = f"mean self-check PhIRM {float(sel['field_selfcheck_phirm_mean'].values):.3f}"
    else:
        against = " against the damaged source" if images.reference_is_source else ""
        score = f"mean PhIRM{against} {float(sel['field_phirm_mean'].values):.3f}"
    fig, captions = _field_figure(
        images, title=f"plate {plate}, {row}{column} field {field}: {score}"
    )
    fig.savefig(Path(path))
    return captions
