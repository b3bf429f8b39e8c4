"""`run`'s report of a screen: :func:`write_screen_report`.

What the page says is worked out once (:class:`_Screen`: the threshold, which fields are
flagged and by what rule, whether PhIRM had a ground truth), each section is rendered by one
function from the templates of :mod:`phirm_scale.report.templates`, and
:data:`~phirm_scale.report.templates.SCREEN_PAGE` puts them together.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from phirm_scale.errors import OutputError
from phirm_scale.flags import DEFAULT_RESIDUAL_THRESHOLD, DEFAULT_SELFCHECK_THRESHOLD, FLAG_BITS
from phirm_scale.report import templates as t
from phirm_scale.report._text import _alt, _fmt, _n
from phirm_scale.report.pictures import _screen_thumbnail, reference_is_source
from phirm_scale.report.plots import _screen_heatmap, heatmap_variable
from phirm_scale.report.reasons import flag_reason, recorded_hidden_threshold, selfcheck_reason

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["write_screen_report"]

_DIMS = ("plate", "row", "column", "field")
_AGAINST = " against the damaged source"

#: (plate, row, column, field) of one field of the screen.
FieldId = tuple[str, str, str, int]

#: Flag bits counted in the summary, and the check each one names.
_FLAG_CHECKS = (
    ("selfcheck_below_threshold", "self-check"),
    ("residual_artefact_above_threshold", "residual artefact"),
    ("selfcheck_not_run", "not checked"),
    ("hidden_nuclei_above_threshold", "hidden nuclei"),
)

#: The PhIRM terms a field scored against a reference is flagged "mostly by".
_TERMS = ("ncd", "nad", "aad")


@dataclass(frozen=True)
class _Screen:
    """What the screen report says, worked out once from the QC Dataset."""

    ds: xr.Dataset
    out: Path
    threshold: float
    plates: list[str]
    #: mean PhIRM per field, ``(plate, row, column, field)``; NaN: not scored
    field_mean: npt.NDArray[np.float64]
    #: fields flagged by ``flag`` (the reference-free QC), not by PhIRM
    flagmode: bool
    #: the QC has the self-check (and then perhaps the estimated PhIRM)
    selfcheck: bool
    estimate: bool
    #: whether each plate's PhIRM compares the restored image with its own damaged input
    vs_source: dict[str, bool]
    #: ``(score, plate, row, column, field)`` of the flagged fields, worst first (score -1:
    #: none)
    flagged: list[tuple[float, str, str, str, int]]
    residual_threshold: float
    hidden_threshold: float | None

    @property
    def against(self) -> str:
        """``" against the damaged source"`` when any plate's PhIRM had no ground truth."""
        return _AGAINST if any(self.vs_source.values()) else ""

    @property
    def n_fields(self) -> int:
        """The number of fields scored."""
        return int((~np.isnan(self.field_mean)).sum())


def _fields(ds: xr.Dataset, plates: Sequence[str]) -> Iterator[tuple[tuple[int, ...], FieldId]]:
    """Yield the index and id of every field position of the screen, in plate order."""
    for i, p in enumerate(plates):
        for j, r in enumerate(ds["row"].values.tolist()):
            for k, c in enumerate(ds["column"].values.tolist()):
                for m, f in enumerate(ds["field"].values.tolist()):
                    yield (i, j, k, m), (p, str(r), str(c), int(f))


def _screen(ds: xr.Dataset, out: Path) -> _Screen:
    thr = float(ds.attrs.get("threshold", DEFAULT_SELFCHECK_THRESHOLD))
    plates = [str(p) for p in ds["plate"].values]
    fm = ds["field_phirm_mean"].transpose(*_DIMS).values
    # without a reference the fields are flagged by the self-check and the residual
    # artefact (``flag``); PhIRM against the damaged source would flag every restoration
    flagmode = "flag" in ds
    selfcheck = flagmode and "field_selfcheck_phirm_mean" in ds
    # the reference-free estimate of the true PhIRM (docs/qc-without-ground-truth.md, 8)
    estimate = selfcheck and "plate_estimated_phirm_mean" in ds
    order = ds["field_selfcheck_phirm_mean"].transpose(*_DIMS).values if selfcheck else fm
    flags = np.nan_to_num(ds["flag"].transpose(*_DIMS).values) if flagmode else None
    # (no reference channel: every artefact removed counts as damage)
    vs_source = {}
    for p in plates:
        d = ds.sel(plate=p)
        known = (
            reference_is_source(
                str(d["reference"].values),
                str(d["reference_channel"].values),
                str(d["reconstruction"].values),
            )
            if all(k in d.coords for k in ("reference", "reference_channel", "reconstruction"))
            else None
        )
        vs_source[p] = flagmode if known is None else known
    flagged = []
    for idx, (p, r, c, f) in _fields(ds, plates):
        v = order[idx]
        bad = (flags[idx] > 0) if flags is not None else v < thr
        if not math.isnan(fm[idx]) and bad:
            flagged.append((-1.0 if math.isnan(v) else v, p, r, c, f))
    flagged.sort()
    return _Screen(
        ds=ds,
        out=out,
        threshold=thr,
        plates=plates,
        field_mean=fm,
        flagmode=flagmode,
        selfcheck=selfcheck,
        estimate=estimate,
        vs_source=vs_source,
        flagged=flagged,
        residual_threshold=(
            float(ds["flag"].attrs.get("residual_threshold", DEFAULT_RESIDUAL_THRESHOLD))
            if flagmode
            else DEFAULT_RESIDUAL_THRESHOLD
        ),
        hidden_threshold=recorded_hidden_threshold(ds["flag"].attrs) if flagmode else None,
    )


def _rule(s: _Screen) -> str:
    """Say by what rule a field is flagged."""
    thr, res = s.threshold, s.residual_threshold
    hidden = (
        f" or at least {s.hidden_threshold:g} px of nuclei expected under the holes"
        if s.hidden_threshold is not None
        else ""
    )
    if s.selfcheck:
        return (
            f"mean self-check PhIRM below {thr:g}, more than {res:g} px of artefact left "
            f"after restoration{hidden}; there is no reference, so PhIRM against the damaged "
            "source is not used to flag"
        )
    if s.flagmode:
        return (
            f"more than {res:g} px of artefact left after restoration{hidden}; there is "
            "no reference and no self-check"
        )
    return f"mean PhIRM below {thr:g}"


def _picture(s: _Screen, p: str, r: str, c: str, f: int) -> str:
    """Save the picture of one field; return its ``<img>`` (or why there is none)."""
    esc = html.escape
    name = f"field_{p}_{r}{c}_{f}.png"
    try:
        captions = _screen_thumbnail(s.ds, p, r, c, f, s.out / name)
    except Exception as exc:  # noqa: BLE001 - report still useful without pictures
        return t.SCREEN_PICTURE_UNAVAILABLE.substitute(error_type=esc(type(exc).__name__))
    return t.SCREEN_PICTURE.substitute(
        src=esc(name), plate=esc(p), well=esc(r + c), field=f, panels=esc(_alt(captions))
    )


def _reasons(s: _Screen) -> str:
    """Say how many flagged fields each check (or, with a reference, each term) flagged."""
    counts: dict[str, int] = dict.fromkeys(_TERMS, 0)
    for _v, p, r, c, f in s.flagged:
        d = s.ds.sel(plate=p, row=r, column=c, field=f)
        if s.flagmode:
            code = int(np.nan_to_num(d["flag"].values))
            for meaning, name in _FLAG_CHECKS:
                if code & FLAG_BITS[meaning]:
                    counts[name] = counts.get(name, 0) + 1
        else:
            terms = {term: float(np.nanmean(d[term].values)) for term in _TERMS}
            counts[max(terms, key=lambda term: terms[term])] += 1
    if s.flagmode:
        return ", ".join(f"{n} by the {k}" for k, n in counts.items() if n and k not in _TERMS)
    return ", ".join(f"{n} mostly by {k.upper()}" for k, n in counts.items() if n)


def _flagged_rows(s: _Screen, thumbnails: int) -> str:
    """Return the flagged fields' table rows, pictures for the ``thumbnails`` worst."""
    esc = html.escape
    rows = []
    for n, (v, p, r, c, f) in enumerate(s.flagged):
        d = s.ds.sel(plate=p, row=r, column=c, field=f)
        rows.append(
            t.SCREEN_FLAGGED_ROW.substitute(
                plate=esc(p),
                well=esc(r + c),
                field=f,
                score=_fmt(v) if v >= 0 else "–",
                why=esc(selfcheck_reason(d) if s.flagmode else flag_reason(d)),
                picture="<br>" + _picture(s, p, r, c, f) if n < thumbnails else "",
            )
        )
    return "".join(rows) or t.SCREEN_FLAGGED_NONE


def _summary(s: _Screen) -> str:
    """Return "what was done and what was found" in plain words."""
    ds = s.ds
    # pixels restored: the filled masks counted once per field (window fractions would count
    # the pixels of overlapping windows twice)
    masked_px = (
        float(np.nansum(ds["field_restored_area"].values)) if "field_restored_area" in ds else None
    )
    area = (
        f"{_n(masked_px)} px (about {masked_px / max(s.n_fields, 1):,.0f} px per field)"
        if masked_px is not None
        else "not recorded (no mask label)"
    )
    scored_against = (
        "against the damaged source (no reference channel: every artefact removed counts as "
        "damage in that PhIRM)"
        if s.against
        else "against the reference image"
    )
    return t.SCREEN_SUMMARY.substitute(
        plates=len(s.plates),
        wells=int((~np.isnan(ds["well_phirm_mean"].values)).sum()),
        fields=s.n_fields,
        scored_against=scored_against,
        area=area,
        flagged=len(s.flagged),
        rule=_rule(s),
        reasons=f": {_reasons(s)}." if s.flagged else ".",
    )


def _sample(s: _Screen, thumbnails: int, sample: int) -> list[FieldId]:
    """Pick ``sample`` fields not pictured as flagged: those with the most pixels restored."""
    ds = s.ds
    shown = {e[1:] for e in s.flagged[:thumbnails]}
    area_of = (
        ds["field_restored_area"]
        if "field_restored_area" in ds
        else ds["masked_fraction_field"]
        if "masked_fraction_field" in ds
        else ds["masked_fraction"].mean("window")
        if "masked_fraction" in ds
        else None
    )
    scored = ~np.isnan(s.field_mean)
    candidates = []
    for idx, key in _fields(ds, s.plates):
        if scored[idx] and key not in shown:
            p, r, c, f = key
            a = (
                float(np.nan_to_num(area_of.sel(plate=p, row=r, column=c, field=f)))
                if area_of is not None
                else 0.0
            )
            candidates.append((-a, *idx, key))
    candidates.sort()
    return [e[-1] for e in candidates[: max(0, int(sample))]]  # type: ignore[misc]


def _plates(s: _Screen) -> tuple[str, str]:
    """Draw each plate's heatmap; return the plate table's rows and the heatmaps' HTML."""
    esc = html.escape
    ds, thr = s.ds, s.threshold
    rows = []
    heatmaps = []
    for p in s.plates:
        d = ds.sel(plate=p)
        extra = []
        if s.selfcheck:
            extra.append(_fmt(d["plate_selfcheck_phirm_mean"].values))
        if s.estimate:
            extra.append(_fmt(d["plate_estimated_phirm_mean"].values))
        rows.append(
            t.SCREEN_PLATE_ROW.substitute(
                plate=esc(p),
                fields=int((~np.isnan(d["field_phirm_mean"].values)).sum()),
                flagged=sum(1 for e in s.flagged if e[1] == p),
                phirm_mean=_fmt(d["plate_phirm_mean"].values),
                phirm_min=_fmt(d["plate_phirm_min"].values),
                frac_below=_fmt(d["plate_phirm_frac_below"].values),
                masked_fraction=(
                    _fmt(d["plate_masked_fraction_mean"].values)
                    if "plate_masked_fraction_mean" in d
                    else "–"
                ),
                extra_cells="".join(t.SCREEN_CELL.substitute(value=v) for v in extra),
                store=esc(str(d["reference"].values)),
            )
        )
        name = f"heatmap_{p}.png"
        _screen_heatmap(ds, p, s.out / name, thr, against=_AGAINST if s.vs_source[p] else "")
        var, what = heatmap_variable(ds)
        if var == "well_phirm_mean" and s.vs_source[p]:
            what = "PhIRM against the damaged source"
        heatmaps.append(
            t.SCREEN_HEATMAP.substitute(
                plate=esc(p), src=esc(name), what=what, threshold=f"{thr:g}"
            )
        )
    return "".join(rows), "".join(heatmaps)


def _how_to_read(s: _Screen) -> str:
    """Return "how to read this": PhIRM, the flag rule, the heatmaps, the self-check."""
    ds, thr = s.ds, s.threshold
    ref_ch = str(ds["reference_channel"].values[0]) if "reference_channel" in ds.coords else "?"
    rec_ch = (
        str(ds["reconstruction_channel"].values[0])
        if "reconstruction_channel" in ds.coords
        else "?"
    )
    how = t.HOW_TO_READ.substitute(
        window=f"{ds.attrs.get('window_height', '?')}x{ds.attrs.get('window_width', '?')} px",
        flagging=(
            "Without a reference fields are flagged by the reference-free checks named above, "
            "not by PhIRM;"
            if s.flagmode
            else f"A field is <b>flagged</b> when its mean PhIRM is below the threshold "
            f"<b>{thr:g}</b>;"
        ),
        what=heatmap_variable(ds)[1],
        ref=f"source plate, channel {html.escape(ref_ch)}"
        + (" (the damaged input: no ground truth)" if s.against else ""),
        rec=f"inpainted plate, channel {html.escape(rec_ch)}",
    )
    if s.selfcheck:
        how += t.HOW_SELFCHECK.substitute(thr=f"{thr:g}", res=f"{s.residual_threshold:g}")
    return how


def write_screen_report(
    ds: xr.Dataset,
    out_dir: str | Path,
    *,
    warnings: list[str] | None = None,
    links: dict[str, str] | None = None,
    thumbnails: int = 24,
    sample: int = 3,
) -> Path:
    """Write the report of a screen QC Dataset (:func:`phirm_scale.screenqc.screen_dataset`).

    Writes ``out_dir/index.html`` with: warnings at the top, a plain-words summary (fields
    processed, area restored, fields flagged and why), a heatmap per plate with a colour
    range fitted to the data and the threshold marked, every flagged field with a sentence
    of why (pictures for the ``thumbnails`` worst), pictures of ``sample`` more fields (the
    unflagged ones with the most pixels restored, so that a screen without a flagged field
    still shows what was done), "how to read this", and ``links``. Each picture is source
    (the damaged input) | holes filled | restored | (reference, when it is not the source) |
    |restored - reference|, captioned as such, with alt text.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    page = _page(_screen(ds, out), warnings or [], links or {}, thumbnails, sample)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _page(
    s: _Screen, warnings: Sequence[str], links: Mapping[str, str], thumbnails: int, sample: int
) -> str:
    """Render the page (and draw its pictures, in the order they appear in the tables)."""
    esc = html.escape
    ds = s.ds
    flagged_rows = _flagged_rows(s, thumbnails)
    samples = _sample(s, thumbnails, sample)
    sample_html = "".join(
        t.SCREEN_SAMPLE.substitute(
            plate=esc(p), well=esc(r + c), field=f, picture=_picture(s, p, r, c, f)
        )
        for p, r, c, f in samples
    )
    plate_rows, heatmaps = _plates(s)
    heads = []
    if s.selfcheck:
        heads.append("self-check PhIRM mean")
    if s.estimate:
        heads.append("estimated PhIRM (no reference)")
    panels = (
        "each picture is the damaged source, the holes the inpainting filled, the restored "
        "image and |restored - reference| (the reference is the damaged source)"
        if s.against
        else "each picture is the damaged source, the holes the inpainting filled, the "
        "restored image, the reference and |restored - reference|"
    )
    values: dict[str, Any] = {
        "warnings": "".join(t.SCREEN_WARNING.substitute(text=esc(w)) for w in warnings),
        "summary": _summary(s),
        "links": t.SCREEN_LINK_SEPARATOR.join(
            t.SCREEN_LINK.substitute(href=esc(href), text=esc(text)) for text, href in links.items()
        ),
        "against": s.against,
        "threshold": f"{s.threshold:g}",
        "extra_heads": "".join(t.SCREEN_HEAD.substitute(name=h) for h in heads),
        "plate_rows": plate_rows,
        "heatmaps": heatmaps,
        "n_flagged": len(s.flagged),
        "rule": esc(_rule(s)),
        "pictured": (
            f"; pictures for the {thumbnails} worst" if len(s.flagged) > thumbnails else ""
        ),
        "score_head": "mean self-check PhIRM" if s.selfcheck else "mean PhIRM",
        "flagged_rows": flagged_rows,
        "n_sample": len(samples),
        "panels": panels,
        "samples": sample_html or t.SCREEN_SAMPLE_NONE,
        "how": _how_to_read(s),
        "version": esc(str(ds.attrs.get("software_version", "?"))),
        "mode": esc(str(ds.attrs.get("mode", "paper"))),
    }
    return t.SCREEN_PAGE.substitute(values)
