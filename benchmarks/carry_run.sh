#!/usr/bin/env bash
# Copy a running (or stopped) run's resumable state into the repository so that a later session can resume it.
# usage: bash benchmarks/carry_run.sh RUN_DIR DEST_DIR   (e.g. /work/runs/induction-finite benchmarks/results/induction-finite)
# Copies config.json, state.pt, metrics.parquet and the checkpoints at multiples of 20,000 steps plus the last one.
# state.pt is written atomically (temp file + rename) every checkpoint_every steps, so copying mid-run is safe.
set -euo pipefail
src=$1; dst=$2
mkdir -p "$dst/checkpoints"
tmp=$(mktemp -d "$dst/.carry.XXXX")
cp "$src/config.json" "$src/state.pt" "$src/metrics.parquet" "$tmp/"
rm -f "$dst"/checkpoints/*.safetensors
last=$(ls "$src/checkpoints" | sort | tail -1)
for f in "$src"/checkpoints/*.safetensors; do
  b=$(basename "$f"); n=$((10#$(echo "$b" | tr -dc 0-9)))
  if (( n % 20000 == 0 )) || [[ $b == "$last" ]]; then cp "$f" "$dst/checkpoints/"; fi
done
mv "$tmp"/* "$dst/"; rmdir "$tmp"
python - "$dst" <<'PY'
import sys, torch
s = torch.load(sys.argv[1] + "/state.pt", map_location="cpu", weights_only=False)
print("carried state at step", int(s["epoch"]))
PY
