"""Benchmark inputs: 2160x2160 8-bit fields tiled from the real BBBC039 fields (or synthetic
blobs when ../shared/data is absent), with bright artefacts composited into some."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbbc039-rows-A-D"


def real_fields_u8(n: int, size: int = 2160, seed: int = 0) -> tuple[list[np.ndarray], str]:
    import cv2

    from phirm_scale.metric import to_uint8

    rng = np.random.default_rng(seed)
    files = sorted(DATA.glob("*.tif"))
    out = []
    if files:
        import tifffile

        small = [to_uint8(tifffile.imread(f)) for f in files]
        source = f"BBBC039 fields tiled to {size}x{size}"
    else:
        from skimage.filters import gaussian

        small = []
        for _ in range(8):
            img = np.zeros((520, 696))
            yy, xx = rng.integers(0, 520, 80), rng.integers(0, 696, 80)
            img[yy, xx] = 1
            small.append((np.clip(gaussian(img, 6) * 4000, 0, 255)).astype(np.uint8))
        source = f"synthetic blobs tiled to {size}x{size}"
    for i in range(n):
        reps = (size // 520 + 1, size // 696 + 1)
        tiles = [small[(i + k) % len(small)] for k in range(reps[0] * reps[1])]
        rows = [np.hstack(tiles[r * reps[1] : (r + 1) * reps[1]]) for r in range(reps[0])]
        field = np.vstack(rows)[:size, :size].copy()
        if i % 2:
            pts = np.stack([rng.integers(0, size, 4), rng.integers(0, size, 4)], 1)
            cv2.polylines(field, [pts.astype(np.int32)], False, 255, thickness=15)
        out.append(field)
    return out, source
