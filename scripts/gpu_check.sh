#!/usr/bin/env bash
# The whole GPU check in one script, for a lent H100/H200 (no network there).
#
#   bash scripts/gpu_check.sh "$OUT"               # OUT: folder that comes back
#   bash scripts/gpu_check.sh /tmp/x cpu --test-mode   # dry run of the script itself on a CPU
#
# Installs accelcal offline against the node's own torch, runs run_bench.sh in
# quick mode (kernels, fits, profile, validation, plan), the nccl collective
# path at world size 1 (graph capture included), the harness-overhead and
# planner benchmarks, and leaves at most 8 flat files in OUT so the device
# tool returns them: gpu_check.log, the profile, and one tarball of all raw data.
set -uo pipefail
OUT="${1:?usage: scripts/gpu_check.sh OUTDIR [DEVICE] [run_bench mode flag]}"
DEVICE="${2:-cuda:0}"
MODE_FLAG="${3:---quick}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p "$OUT"
WORK="$(mktemp -d)"
T0=$(date +%s)
stamp() { echo "# [$(( $(date +%s) - T0 ))s] $*"; }
{
    stamp "start $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv 2>&1 || true
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    stamp "install (offline)"
    python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -3
    stamp "run_bench.sh $MODE_FLAG"
    bash run_bench.sh "$MODE_FLAG" --python python3 --no-install --device "$DEVICE" --nproc 1 \
        --out "$WORK/run" --profile "$WORK/gpu-profile.yaml"
    stamp "run_bench exit $?"
    DEV_TYPE="${DEVICE%%:*}"
    stamp "collectives at world size 1 ($DEV_TYPE)"
    python3 -m accelcal bench collectives --device-type "$DEV_TYPE" --nproc 1 --quick --out "$WORK/collectives-world1"
    stamp "collectives exit $?"
    stamp "timing overhead"
    python3 benchmarks/timing_overhead.py --device "$DEVICE"
    stamp "planner search speed"
    python3 benchmarks/planner_search_speed.py --profile "$WORK/gpu-profile.yaml"
    python3 -m accelcal show "$WORK/gpu-profile.yaml"
    stamp "done"
} >"$OUT/gpu_check.log" 2>&1
cp "$WORK/gpu-profile.yaml" "$OUT/" 2>/dev/null
tar -czf "$OUT/raw.tar.gz" -C "$WORK" . 2>/dev/null
tail -60 "$OUT/gpu_check.log"
