#!/usr/bin/env bash
# The whole GPU check in one script, for a lent H100/H200 (no network there).
#
#   bash scripts/gpu_check.sh "$OUT"        # OUT: folder that comes back
#
# Installs accelcal offline against the node's own torch, runs run_bench.sh in
# quick mode (kernels, collectives at world size 1 with nccl, fits, profile,
# validation, plan), the harness-overhead benchmark, and copies profile, raw
# data and logs into OUT (at most 8 files, flat, so the device tool returns them).
set -uo pipefail
OUT="${1:?usage: scripts/gpu_check.sh OUTDIR}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p "$OUT"
WORK="$(mktemp -d)"
T0=$(date +%s)
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -3
    bash run_bench.sh --quick --python python3 --no-install --device cuda:0 --nproc 1 \
        --out "$WORK/run" --profile "$WORK/gpu-profile.yaml"
    echo "run_bench exit: $?"
    python3 benchmarks/timing_overhead.py --device cuda:0
    echo "timing_overhead exit: $?"
    echo "wall_s: $(( $(date +%s) - T0 ))"
} >"$OUT/gpu_check.log" 2>&1
cp "$WORK/gpu-profile.yaml" "$OUT/" 2>/dev/null
# Raw data: one tarball keeps the returned file count small.
tar -czf "$OUT/raw.tar.gz" -C "$WORK" . 2>/dev/null
tail -40 "$OUT/gpu_check.log"
