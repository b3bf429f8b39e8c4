#!/usr/bin/env bash
# SLURM batch example: restore and QC a whole screen with one `phirm-scale run`.
#
#   sbatch scripts/process_screen.sh SCREEN_DIR OUT_DIR [CLUSTER] [MODEL] [CHECKPOINT]
#
# This small job only drives the run: `--cluster slurm-cpu` (phirm_scale/cluster_configs/;
# `phirm-scale cluster show slurm-cpu` prints its job script) starts the Dask workers as their
# own SLURM jobs; use slurm-gpu for learned models. SCREEN_DIR
# holds one folder of TIFFs per plate (or OME-Zarr plates). The run is restartable: resubmit
# the same command after a failure or a time limit and only the missing fields are done.
#SBATCH --job-name=phirm-run
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=24:00:00
set -euo pipefail
screen=${1:?usage: $0 SCREEN_DIR OUT_DIR [CLUSTER] [MODEL] [CHECKPOINT]}
out=${2:?usage: $0 SCREEN_DIR OUT_DIR [CLUSTER] [MODEL] [CHECKPOINT]}
cluster=${3:-slurm-cpu}
model=${4:-telea}
ckpt=${5:-}
phirm-scale run "$screen" -o "$out" --channel DAPI --artefact-channel CFP \
    --model "$model" ${ckpt:+--checkpoint "$ckpt"} --cluster "$cluster" --no-progress \
    --fail-below 0.5
