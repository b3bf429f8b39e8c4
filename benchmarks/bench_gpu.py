"""Learned models on the GPU: generator, model call, one field, the inpaint stage, training.

Prints one JSON object: per learned model, tiles/s of

* the bare generator on device tensors (fp32, and ``--precision`` with channels_last; with
  ``--compile`` also torch.compile of the methods ``generate`` calls),
* the model call ``model(numpy, numpy)`` (edges included: EdgeConnect's Canny on the device),
* one field of ``--field-size`` at 1 % and 5 % artefacts (``inpaint_field``),
* training steps (bf16 autocast on CUDA, masks and tiles prefetched on threads),

the mean PhIRM on real BBBC039 tiles at fp32 and at ``--precision`` after the short training
run (the precision check of docs/models.md), and for EdgeConnect (``--stage-models``) the
inpaint stage on a generated plate with 2 % artefacts (48 fields of 2160x2160 on a GPU, the
plate of issue 8's baseline): fields/s, hole tiles/s and mean GPU utilisation
(``torch.cuda.utilization`` or ``nvidia-smi``, sampled every 0.1 s), at fp32, at
``--precision`` with channels-last, and with ``--compile`` the same compiled (a cold run that
compiles in the worker, then a warm one).

Without CUDA it runs the same paths on the CPU at a small size (narrow networks, small tiles
and fields), says so (``"cuda": false``) and exits 0. Every measurement stops at its time
limit (``--seconds``); ``--budget`` skips what would start after that many seconds.

Usage: python benchmarks/bench_gpu.py [--quick] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "bbbc039-rows-A-D"
MODELS = ("edgeconnect", "deepfill-v2", "context-encoder")


class GpuSampler:
    """Mean GPU utilisation (%) while the context is open; None without CUDA."""

    def __init__(self, cuda: bool):
        self.cuda, self.samples, self._stop = cuda, [], threading.Event()

    def _read(self):
        import torch

        try:
            return float(torch.cuda.utilization())
        except Exception:  # noqa: BLE001 - no pynvml: ask nvidia-smi
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.split()
            return float(out[0]) if out else None

    def _loop(self):
        while not self._stop.wait(0.1):
            v = self._read()
            if v is not None:
                self.samples.append(v)

    def __enter__(self):
        if self.cuda:
            self._t = threading.Thread(target=self._loop, daemon=True)
            self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.cuda:
            self._t.join()

    @property
    def mean(self):
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rate(fn, tiles_per_call, seconds, warmup=2):
    """tiles/s of ``fn`` (synchronised), called until ``seconds`` have passed (>= 2 calls)."""
    for _ in range(warmup):
        fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync()
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= 2:
            return round(n * tiles_per_call / dt, 1)


def threads_agree(model, x, h, bs, rounds=3):
    """Whether two threads calling one model at once (each on its own CUDA stream) give, bit
    for bit, what one thread gives: the same full batches, so the same kernels."""
    fixed = model.with_options(batch_size=bs, fixed_batch=True)
    batches = [(np.roll(x, k, axis=0), np.roll(h, k, axis=0)) for k in range(4)]
    alone = [fixed(a, b) for a, b in batches]
    for _ in range(rounds):
        got = [None] * 4

        def run(idx, got=got):
            for i in idx:
                got[i] = fixed(*batches[i])

        ts = [threading.Thread(target=run, args=(idx,)) for idx in ((0, 2), (1, 3))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if not all(np.array_equal(g, a) for g, a in zip(got, alone, strict=True)):
            diff = max(float(np.abs(g - a).max()) for g, a in zip(got, alone, strict=True))
            return {"identical": False, "max_abs_diff": diff}
    return {"identical": True, "rounds": rounds}


def stage_agreement(plate, out_path, name, kw, n=3):
    """Largest difference (field units) and share of differing hole pixels between the stage's
    first ``n`` fields and ``inpaint_field`` with the same model options in this process."""
    from phirm_scale.inpaint import inpaint_field
    from phirm_scale.models.registry import get_model
    from phirm_scale.plate import open_plate

    out = open_plate(out_path)
    model = get_model(
        name,
        checkpoint=kw["checkpoint"],
        device=kw.get("device", "cpu"),
        precision=kw["precision"],
        channels_last=kw["channels_last"],
        compile=kw["compile"],
    )
    c = plate.channel_index("DAPI")
    worst, differing, holes = 0.0, 0, 0
    for k in plate.fields[:n]:
        src, mask = plate.read_field(k), plate.read_label(k, kw["mask_label"]) != 0
        expect = inpaint_field(
            src[c], mask, model, tile=kw["tile"], overlap=kw["overlap"], batch_size=kw["batch_size"]
        )
        got = out.read_field(k)[c]
        if not np.array_equal(got[~mask], src[c][~mask]):
            return {"error": f"field {k}: pixels outside the holes changed"}
        d = np.abs(got.astype(np.float64) - expect.astype(np.float64))[mask]
        worst = max(worst, float(d.max()) if d.size else 0.0)
        differing += int(np.count_nonzero(d))
        holes += int(d.size)
    return {
        "fields": n,
        "max_abs_diff": worst,
        "hole_pixels_differing": round(differing / max(holes, 1), 6),
        "outside_holes_identical": True,
    }


def real_tiles(path, size, n):
    """(n, 1, size, size) float32 tiles in [0, 1] from real BBBC039 fields (or an .npz of
    uint8 tiles), min-max normalised per tile; None when neither is at hand."""
    if path and Path(path).suffix == ".npz":
        t = np.load(path)["tiles"][:n].astype(np.float32) / 255
        if t.shape[-1] != size:
            import torch
            from torch.nn import functional

            t = functional.interpolate(
                torch.from_numpy(t[:, None]), size=(size, size), mode="area"
            )[:, 0].numpy()
        return t[:, None]
    folder = Path(path) if path else SHARED
    files = sorted(folder.glob("*.tif")) if folder.is_dir() else []
    if not files:
        return None
    import tifffile

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        im = tifffile.imread(files[i % len(files)]).astype(np.float64)
        y, x = rng.integers(0, im.shape[0] - size), rng.integers(0, im.shape[1] - size)
        t = im[y : y + size, x : x + size]
        out.append((t - t.min()) / max(t.max() - t.min(), 1e-9))
    return np.stack(out)[:, None].astype(np.float32)


def main():
    import torch

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="shorter time limits, smaller plate")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--stage-models", default="edgeconnect")
    ap.add_argument("--precision", default="bf16", help="reduced precision measured against fp32")
    ap.add_argument(
        "--compile", action="store_true", help="also time torch.compile of the generator"
    )
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--field-size", type=int, default=None)
    ap.add_argument("--plate-fields", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None, help="time limit per measurement")
    ap.add_argument("--train-seconds", type=float, default=None)
    ap.add_argument("--budget", type=float, default=400, help="skip what would start after this")
    ap.add_argument(
        "--real-tiles", default=None, help="folder of BBBC039 .tif or an .npz of uint8 tiles"
    )
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    t_start = time.perf_counter()
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(os.cpu_count() or 1)
    dev = "cuda" if cuda else "cpu"
    tile = args.tile or (256 if cuda else 64)
    bs = args.batch_size or (64 if cuda else 8)
    fsize = args.field_size or (2160 if cuda else 384)
    # 48 fields on a GPU: the plate of issue 8's baseline (49 hole tiles/s at 917c6fe)
    nplate = args.plate_fields or ((12 if args.quick else 48) if cuda else 4)
    secs = args.seconds or ((2.0 if args.quick else 4.0) if cuda else 0.5)
    tsecs = args.train_seconds or ((8.0 if args.quick else 20.0) if cuda else 2.0)
    small = (
        {}
        if cuda
        else {
            "edgeconnect": {"width": 8, "blocks": 1},
            "deepfill-v2": {"width": 8},
            "context-encoder": {"width": 8},
        }
    )

    from phirm_scale.inpaint import hole_tiles, inpaint_field
    from phirm_scale.masks._generators import parse_mask_spec, sample_masks
    from phirm_scale.models.checkpoint import save_checkpoint
    from phirm_scale.models.registry import build_model, default_config, get_model
    from phirm_scale.models.train import make_trainer, validation_scores
    from phirm_scale.models.training.data import prefetch
    from phirm_scale.models.training.loop import prepared_batches
    from phirm_scale.synthetic import make_field

    res = {
        "benchmark": "bench_gpu",
        "cuda": cuda,
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "note": None
        if cuda
        else (
            "no CUDA: the same paths on the CPU at a small size "
            "(narrow networks, small tiles and fields)"
        ),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "tile": tile,
        "batch_size": bs,
        "field_size": fsize,
        "precision_candidate": args.precision,
        "models": {},
        "skipped": [],
    }

    def left():
        return args.budget - (time.perf_counter() - t_start)

    def dump():
        """Write what has been measured so far (a run killed later keeps it)."""
        if args.out:
            res["total_seconds"] = round(time.perf_counter() - t_start, 1)
            Path(args.out).write_text(json.dumps(res) + "\n")

    rng = np.random.default_rng(0)
    spec = parse_mask_spec("mix")
    real = real_tiles(args.real_tiles, tile, 160 if cuda else 24)
    if real is None:
        res["skipped"].append("no real tiles: training and the PhIRM check use synthetic fields")
        fields = [
            make_field(("A", "01", i), size=(tile * 4, tile * 4), seed=i, artefacts=0.0)[0][0]
            for i in range(4)
        ]
        real = np.stack(
            [
                f[y : y + tile, x : x + tile] / max(f.max(), 1)
                for f in fields
                for y in range(0, 4 * tile, tile)
                for x in range(0, 4 * tile, tile)
            ]
        )[:, None].astype(np.float32)
    n_val = max(4, len(real) // 5)
    train_tiles, val_tiles = real[:-n_val], real[-n_val:]
    val_masks = sample_masks(spec, n_val, (tile, tile), rng=np.random.default_rng(7))[
        :, None
    ].astype(np.float32)
    res["real_tiles"] = {"train": int(len(train_tiles)), "val": int(n_val)}
    ckdir = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    gen_inputs = {}

    for name in [m for m in args.models.split(",") if m]:
        r = res["models"][name] = {}
        cfg = default_config(name, **small.get(name, {}))
        if left() < 20:
            res["skipped"].append(f"{name}: out of time budget")
            continue
        # -- training (bf16 autocast on CUDA), tiles and masks prefetched on threads
        net = build_model(name, cfg, dev)
        trainer = make_trainer(
            net, lr=1e-4, amp="auto", stage="joint" if name == "edgeconnect" else None
        )
        tb = min(16 if cuda else 4, len(train_tiles))

        def load(j, tb=tb):
            g = np.random.default_rng([1, j])
            idx = g.choice(len(train_tiles), tb, replace=False)
            x = train_tiles[idx]
            if j % 2:
                x = x[..., ::-1]
            return np.ascontiguousarray(x), sample_masks(spec, tb, (tile, tile), rng=g)[:, None]

        batches = prefetch(load, range(1 << 30), workers=3, depth=6)
        # as train's loop: batches prepared one ahead (on CUDA on a stream of their own), a
        # step's metrics read once the next step is queued
        prepared = prepared_batches(net, batches, ahead=cuda)
        steps, t0 = 0, None
        with GpuSampler(cuda) as gs:
            pending = None
            while True:
                queued = trainer.train_step_async(next(prepared))
                if pending is not None:
                    pending.result()
                pending = queued
                steps += 1
                if steps == 3:
                    sync()
                    t0 = time.perf_counter()
                    gs.samples.clear()
                if t0 and time.perf_counter() - t0 > tsecs:
                    break
        sync()
        dt = time.perf_counter() - t0  # before closing the loaders (they finish their work)
        prepared.close()
        batches.close()
        r["train_tiles_per_s"] = round((steps - 3) * tb / dt, 1)
        r["train_gpu_util"] = gs.mean
        dump()
        r["train"] = {
            "steps": steps,
            "batch": tb,
            "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off",
        }
        ck = ckdir / f"{name}.pt"
        save_checkpoint(
            ck, model=name, config=cfg, state_dicts={"generator": net.generator.state_dict()}
        )
        net.generator.eval()
        # -- the PhIRM check: fp32 against the candidate precision on held-out real tiles
        m32 = get_model(name, checkpoint=ck, device=dev, batch_size=bs)
        mlow = m32.with_options(precision=args.precision)
        s32 = validation_scores(m32, val_tiles, val_masks)
        slow = validation_scores(mlow, val_tiles, val_masks)
        r["phirm_fp32"] = round(s32["phirm"], 5)
        r[f"phirm_{args.precision}"] = round(slow["phirm"], 5)
        r["phirm_diff"] = round(slow["phirm"] - s32["phirm"], 5)
        r["max_abs_diff"] = float(
            np.abs(m32(val_tiles, val_masks) - mlow(val_tiles, val_masks)).max()
        )
        if name == "edgeconnect":
            # the torch Canny on this device against skimage on the same known pixels
            from skimage.feature import canny as sk_canny

            from phirm_scale.models.canny import canny as torch_canny

            kn = val_masks == 0
            ref = np.stack(
                [
                    sk_canny(val_tiles[i, 0].astype(np.float64), sigma=2.0, mask=kn[i, 0])
                    for i in range(n_val)
                ]
            )[:, None]
            got = (
                torch_canny(
                    torch.from_numpy(val_tiles).to(dev), 2.0, mask=torch.from_numpy(kn).to(dev)
                )
                .cpu()
                .numpy()
            )
            r["canny_vs_skimage"] = {
                "device": dev,
                "pixel_agreement": float((got == ref).mean()),
                "differing_pixels": int((got != ref).sum()),
                "edge_pixels": int(ref.sum()),
            }
        # -- bare generator on device tensors
        x = np.ascontiguousarray(np.resize(real, (bs, 1, tile, tile)))
        h = sample_masks(spec, bs, (tile, tile), rng=rng)[:, None] != 0
        variants = [
            ("fp32", m32),
            (
                f"{args.precision}_channels_last",
                m32.with_options(precision=args.precision, channels_last=True),
            ),
        ]
        for label, m in variants:
            if left() < 10:
                res["skipped"].append(f"{name} generator {label}: out of time budget")
                continue
            with torch.inference_mode():
                batch = m._layout(m.prepare(x, h))

                def gen(m=m, batch=batch):
                    with torch.inference_mode(), m.autocast():
                        m.generate(batch)

                r[f"generator_{label}_tiles_per_s"] = rate(gen, bs, secs)
            m32.generator.to(memory_format=torch.contiguous_format)
        gen_inputs[name] = (m32, x, h)
        # -- the model call, numpy in and out (EdgeConnect: Canny on the device)
        r["model_call_tiles_per_s"] = rate(
            lambda m32=m32, x=x, h=h: m32(x, h.astype(np.float32), batch_size=bs),
            bs,
            secs,
            warmup=1,
        )
        r["threads_agree"] = threads_agree(m32, x, h.astype(np.float32), bs)
        if name == "edgeconnect" and cuda:
            sk = m32.with_options(canny="skimage")
            r["model_call_skimage_canny_tiles_per_s"] = rate(
                lambda sk=sk, x=x, h=h: sk(x, h.astype(np.float32), batch_size=bs),
                bs,
                secs,
                warmup=1,
            )
        # -- one field
        for frac in (0.01, 0.05):
            data, mask = make_field(("A", "01", 0), size=(fsize, fsize), seed=1, artefacts=frac)
            hole = mask.astype(np.uint8)
            nt = len(hole_tiles(hole, tile, tile // 8))
            t0 = time.perf_counter()
            inpaint_field(data[0], hole, m32, tile=tile, overlap=tile // 8, batch_size=bs)
            inpaint_field(data[0], hole, m32, tile=tile, overlap=tile // 8, batch_size=bs)
            dt = (time.perf_counter() - t0) / 2
            r[f"field_{int(frac * 100)}pct"] = {
                "hole_tiles": nt,
                "seconds": round(dt, 3),
                "tiles_per_s": round(nt / dt, 1),
            }
        dump()

    # -- the inpaint stage on a generated plate, 2 % artefacts
    from phirm_scale.stages.inpaint import inpaint_plate
    from phirm_scale.synthetic import make_plate

    stage_models = [m for m in args.stage_models.split(",") if m and (ckdir / f"{m}.pt").exists()]
    if stage_models and left() > 40:
        import contextlib

        from phirm_scale.cluster import open_cluster

        rows = 2
        cols = max(1, nplate // (rows * 2))
        plate = make_plate(
            ckdir / "plate.ome.zarr",
            rows=rows,
            columns=cols,
            fields=2,
            size=fsize,
            seed=3,
            artefacts=0.02,
            cluster="threads",
        )
        res["stage_plate"] = {"fields": len(plate.fields), "size": fsize, "artefacts": 0.02}
        # one local cluster with its GPU worker(s) for all runs (start-up timed apart); the
        # first run of each model also pays for loading it in the worker
        t0 = time.perf_counter()
        ctx = open_cluster("local", gpu=True, quiet=True) if cuda else contextlib.nullcontext()
        with ctx as client:
            res["stage_cluster_start_s"] = round(time.perf_counter() - t0, 1)
            address = client.scheduler.address if client is not None else "threads"
            # then the reduced precision with channels-last, and the same compiled: its first
            # run compiles the generator in the worker (cold), the second reuses it (warm)
            runs = [
                ("cold", "fp32", False),
                ("warm", "fp32", False),
                ("warm", args.precision, False),
            ]
            if args.compile:
                runs += [("cold", args.precision, True), ("warm", args.precision, True)]
            for name in stage_models:
                for run, prec, comp in runs:
                    label = f"{prec}_compiled" if comp else prec
                    cold_missing = (
                        comp
                        and run == "warm"
                        and f"stage_{label}_cold" not in (res["models"][name])
                    )
                    if left() < (150 if comp and run == "cold" else 30) or cold_missing:
                        res["skipped"].append(f"stage {name} {label} {run}: out of time budget")
                        continue
                    out = ckdir / f"out_{name}_{label}_{run}.ome.zarr"
                    kw = dict(
                        mask_label="artefacts_true",
                        model=name,
                        checkpoint=ckdir / f"{name}.pt",
                        tile=tile,
                        overlap=tile // 8,
                        batch_size=bs,
                        precision=prec,
                        progress=False,
                        channels_last=prec != "fp32",
                        compile=comp,
                        cluster=address,
                    )
                    kw.update(gpu=True, device="cuda") if cuda else kw.update(device="cpu")
                    t0 = time.perf_counter()
                    with GpuSampler(cuda) as gs:
                        st = inpaint_plate(plate.path, out, **kw)
                    dt = time.perf_counter() - t0
                    res["models"][name][f"stage_{label}_{run}"] = {
                        "seconds": round(dt, 2),
                        "fields_per_s": round(st["fields"] / dt, 2),
                        "hole_tiles": st["tiles_inpainted"],
                        "hole_tiles_per_s": round(st["tiles_inpainted"] / dt, 1),
                        "gpu_util_mean": gs.mean,
                    }
                    if run == "warm" and left() > 30:
                        # the stage's fields against the plain per-field path in this process
                        # (same model options, one field at a time, no batcher; batch sizes
                        # differ, so kernels may too: small differences are not a race)
                        res["models"][name][f"stage_{label}_{run}"]["vs_per_field"] = (
                            stage_agreement(plate, out, name, kw, n=3)
                        )
                    dump()
    # -- torch.compile of the methods generate calls (last: compiling takes a while)
    if args.compile and "edgeconnect" in gen_inputs:
        if left() < 90:
            res["skipped"].append("compile: out of time budget")
        else:
            m32, x, h = gen_inputs["edgeconnect"]
            r = res["models"]["edgeconnect"]
            for label, m in (
                (
                    f"{args.precision}_channels_last_compiled",
                    m32.with_options(precision=args.precision, channels_last=True, compile=True),
                ),
            ):
                t = time.perf_counter()
                try:
                    with torch.inference_mode():
                        batch = m._layout(m.prepare(x, h))

                    def gen(m=m, batch=batch):
                        with torch.inference_mode(), m.autocast():
                            m.generate(batch)

                    r[f"generator_{label}_tiles_per_s"] = rate(gen, bs, secs)
                    with torch.inference_mode(), m.autocast():
                        a = m.generate(batch)["output"].float()
                    with torch.inference_mode(), m32.autocast():
                        b = m32.generate(m32.prepare(x, h))["output"].float()
                    r[f"generator_{label}_max_abs_diff_vs_fp32"] = float((a - b).abs().max())
                except Exception as exc:  # noqa: BLE001 - report, do not lose the run
                    r[f"generator_{label}_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                r["compile_and_time_s"] = round(time.perf_counter() - t, 1)
    res["total_seconds"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(res)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
