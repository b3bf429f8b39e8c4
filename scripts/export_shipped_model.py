"""Export a training checkpoint as the shipped weights of a ``bbbc039-...`` model.

Writes ``phirm_scale/models/weights/<name>.pt`` (generator only, fp16, provenance: data, steps,
wall time, the exact train command, content hash) and updates ``weights/manifest.json``
(:func:`phirm_scale.models.shipped.export_shipped`). Refuses a checkpoint of another
architecture than the shipped name's.

Usage::

    python scripts/export_shipped_model.py training/bbbc039-deepfill-v2/checkpoints/last.pt \
        [--name bbbc039-deepfill-v2] [--out-dir DIR] [--data TEXT]
"""

from __future__ import annotations

import argparse
import json
import sys

from phirm_scale.errors import PhirmError
from phirm_scale.models.shipped import SHIPPED, export_shipped

DATA = (
    "BBBC039v1 rows A-D (49 real U2OS Hoechst fields, 520x696, 40 wells), converted with "
    "phirm-scale convert, synthetic artefact labels (scripts/label_synthetic_artefacts.py "
    "--density 0.03 --seed 0), tiles 256 stride 128 split by well 0.8,0.1,0.1 seed 0 "
    "(docs/models.md, 'The shipped model')"
)


def main(argv: list[str] | None = None) -> int:
    """Export; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--name", default=next(iter(SHIPPED)), choices=sorted(SHIPPED))
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--data", default=DATA)
    args = ap.parse_args(argv)
    try:
        entry = export_shipped(args.checkpoint, args.name, out_dir=args.out_dir, data=args.data)
    except PhirmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({args.name: entry}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
