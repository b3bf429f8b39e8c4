#!/usr/bin/env bash
# Restore and QC every plate folder of a screen, one plate after another, on one cluster.
#
#   scripts/process_screen.sh SCREEN_DIR OUT_DIR [CLUSTER] [MODEL] [CHECKPOINT]
#
# SCREEN_DIR holds one folder of TIFFs per plate; CLUSTER is any --cluster value (default
# local; e.g. slurm-cpu, cluster_configs/slurm-gpu.yaml, tcp://host:8786); MODEL defaults to
# telea. Every step is restartable: rerun the script after a failure and finished fields are
# skipped (convert and inpaint resume; masks skip fields that already have the label).
set -euo pipefail
screen=${1:?usage: $0 SCREEN_DIR OUT_DIR [CLUSTER] [MODEL] [CHECKPOINT]}
out=${2:?usage: $0 SCREEN_DIR OUT_DIR [CLUSTER] [MODEL] [CHECKPOINT]}
cluster=${3:-local}
model=${4:-telea}
ckpt=${5:-}
mkdir -p "$out"
for plate_dir in "$screen"/*/; do
  name=$(basename "$plate_dir")
  plate="$out/$name.ome.zarr"
  echo "== $name"
  phirm-scale convert "$plate_dir" "$plate" --cluster "$cluster"
  phirm-scale masks "$plate" --channel CFP --cluster "$cluster"
  phirm-scale inpaint "$plate" --channel DAPI --model "$model" ${ckpt:+--checkpoint "$ckpt"} \
      --cluster "$cluster"
  phirm-scale score --reference "$plate:DAPI" \
      --reconstruction "$out/${name}_inpainted.ome.zarr:DAPI" --mask-label artefacts \
      -o "$out/${name}_qc.zarr" --csv "$out/${name}_qc.csv" --cluster "$cluster" --overwrite
  phirm-scale report "$out/${name}_qc.zarr" -o "$out/${name}_report"
done
