#!/usr/bin/env bash
# Every GPU measurement of issue 8 in one command, each with its own time limit, for a lent
# H100/H200 (`run` with carry [".whl", ".benchdata"]; see docs/benchmarks.md). Also runs on the
# CPU, where the benches say "cuda": false and use small sizes.
#   OUT=/tmp/gpu_out bash benchmarks/gpu_session.sh        # JSON files land in $OUT
# .whl: cp312 wheels of what the GPU machine lacks (dask, distributed, zarr, numcodecs,
# ome-zarr, pydantic...), installed into /tmp/site when those imports fail. .benchdata: 256 px
# uint8 tiles cut from the shipped BBBC039 fields as an .npz (the GPU machine has no
# ../shared/data).
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
if ! python3 -c "import dask, distributed, zarr, ome_zarr" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
tiles=()
[ -f .benchdata/bbbc039_tiles.npz ] && tiles=(--real-tiles .benchdata/bbbc039_tiles.npz)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
timeout "${CANNY_SECONDS:-90}" python3 benchmarks/bench_canny.py "${tiles[@]}" > "$OUT/bench_canny.json"
echo "bench_canny rc=$?"
timeout "${GPU_SECONDS:-420}" python3 benchmarks/bench_gpu.py "${tiles[@]}" --compile \
    --budget "${BUDGET:-360}" --out "$OUT/bench_gpu.json" > /dev/null
echo "bench_gpu rc=$?"
