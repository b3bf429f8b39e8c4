"""Give every field of a plate a synthetic artefact label (shapes only; the image is untouched).

Real clean fields (e.g. BBBC039, converted with ``phirm-scale convert``) have no artefact
channel, so ``phirm-scale masks`` finds nothing to mask. For training, the ``artefacts`` mask
family only needs artefact *shapes*: this script draws them with the generator of
``make-plate`` (:func:`phirm_scale.synthetic.synthetic_artefacts`: fibres and dust, seeded per
field from ``(seed, row, column, field)`` exactly as ``make-plate`` seeds its fields) and writes
them as the NGFF label ``--label`` (default ``artefacts_true``) beside each field. Then
``phirm-scale tiles PLATE --label artefacts_true`` stores them as the tile store's artefact
pool. Image data is never written.

Usage::

    python scripts/label_synthetic_artefacts.py PLATE.ome.zarr [--density 0.03] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys

from phirm_scale.errors import InputError
from phirm_scale.plate import open_plate
from phirm_scale.synthetic import _field_rng, synthetic_artefacts


def main(argv: list[str] | None = None) -> int:
    """Write the labels; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plate")
    ap.add_argument("--label", default="artefacts_true")
    ap.add_argument("--density", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        plate = open_plate(args.plate)
        if not 0 < args.density < 1:
            raise InputError(f"--density must be in (0, 1), got {args.density}")
        for key in plate.fields:
            _, mask = synthetic_artefacts(
                plate.field_shape, rng=_field_rng(args.seed, key), density=args.density
            )
            plate.write_label(
                key,
                args.label,
                mask,
                attrs={
                    "method": "synthetic_artefacts",
                    "density": args.density,
                    "seed": args.seed,
                },
            )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote label {args.label!r} on {len(plate.fields)} fields of {args.plate}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
