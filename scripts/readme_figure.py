"""Draw the README's picture: one shipped BBBC039 field with composited artefacts, damaged /
restored (Telea) / difference, into ``docs/img/restoration.png``.

    .venv/bin/python scripts/readme_figure.py [--fields ../shared/data/bbbc039-rows-A-D] [-o PNG]

The field is made as ``make-plate --from-fields ... --size 520 --artefacts 0.03`` makes well
A01 field 0 (same seed), its masks as ``masks`` makes them from the CFP channel (Otsu x 0.7,
opening and closing, dilated 4 px) and the fill as ``inpaint --model telea`` fills them. The
three panels share one grey scale (the 1-99.5 percentiles of the clean field); the difference
is restored minus damaged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", default=str(REPO.parent / "shared/data/bbbc039-rows-A-D"))
    ap.add_argument("-o", "--out", default=str(REPO / "docs/img/restoration.png"))
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.masks import DEFAULT_DILATION, artefact_mask, dilate_mask
    from phirm_scale.models import get_model
    from phirm_scale.synthetic import make_field

    source = sorted(Path(args.fields).glob("*.tif"))[0]
    data, _ = make_field(("A", "01", 0), size=(520, 520), artefacts=0.03, source=source)
    damaged, cfp, clean = data
    hole = dilate_mask(artefact_mask(cfp), DEFAULT_DILATION)
    restored = inpaint_field(damaged, hole, get_model("telea"))
    diff = restored.astype(np.float64) - damaged.astype(np.float64)

    lo, hi = np.percentile(clean, [1, 99.5])
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), dpi=80)
    panels = [
        (damaged, "damaged (artefacts composited)", "gray", lo, hi),
        (restored, f"restored (Telea, {int(hole.sum())} px filled)", "gray", lo, hi),
        (diff, "difference (restored - damaged)", "RdBu_r", -(hi - lo), hi - lo),
    ]
    for ax, (img, title, cmap, vmin, vmax) in zip(axes, panels, strict=True):
        ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="antialiased")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"BBBC039 field {source.name.split('_w')[0]} (520x520 crop)", fontsize=9)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, pil_kwargs={"optimize": True})
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
