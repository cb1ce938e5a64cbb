#!/usr/bin/env bash
# The whole GPU check in one script, for a lent H100/H200 (no network there).
#
#   bash scripts/gpu_check.sh "$OUT"                          # OUT: folder that comes back
#   bash scripts/gpu_check.sh /tmp/x cpu --test-mode           # dry run of the script itself on a CPU
#   GPU_CHECK_DEADLINE_S=240 bash scripts/gpu_check.sh "$OUT"  # tighter overall limit
#   GPU_CHECK_SKIP=collectives_world1 bash scripts/gpu_check.sh "$OUT"   # leave stages out (space-separated)
#
# Installs accelcal offline against the node's own torch, runs run_bench.sh in
# quick mode (kernels, fits, profile, validation, plan), the validation
# benchmark over every dense-layer shape with a per-node breakdown, the nccl
# collective path at world size 1 (graph capture included) and the
# harness-overhead benchmark.
#
# Device time is short and a lease may end mid-run, so every stage runs under
# its own time limit inside one overall deadline, and what it produced is copied
# into OUT as soon as it ends: a killed run still returns its log, the profile
# and the raw data measured so far.  OUT gets at most 8 flat files (the device
# tool's limit): gpu_check.log, gpu-profile.yaml, raw.tar.gz.
#
# Exit status: 0 when every stage ended with 0; 1 when one failed or timed out (named in the log's last line;
# the stages after it still ran and OUT holds what they made); 2 for a bad argument.
set -uo pipefail
case "${1:-}" in
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    "") echo "usage: scripts/gpu_check.sh OUTDIR [DEVICE] [run_bench mode flag] (see --help)" >&2; exit 2 ;;
    -*) echo "scripts/gpu_check.sh: error: unknown option '$1'; the first argument is OUTDIR (see --help)" >&2; exit 2 ;;
esac
OUT="$1"
DEVICE="${2:-cuda:0}"
MODE_FLAG="${3:---quick}"
DEADLINE_S="${GPU_CHECK_DEADLINE_S:-420}"
mkdir -p "$OUT" || { echo "scripts/gpu_check.sh: error: cannot make OUTDIR $OUT" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"  # before the cd below: a relative OUTDIR is the caller's, not the repository's
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT  # what it holds is in OUT (raw.tar.gz, gpu-profile.yaml) once each stage ends
FAILED_STAGES=()
export PYTHONUNBUFFERED=1
T0=$(date +%s)
LOG="$OUT/gpu_check.log"
: >"$LOG"
stamp() { echo "# [$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

save() {
    # Copy what exists now into OUT (atomic renames: a kill mid-copy leaves the last good copy).
    if [ -f "$WORK/gpu-profile.yaml" ]; then
        cp "$WORK/gpu-profile.yaml" "$OUT/.gpu-profile.yaml.tmp" && mv "$OUT/.gpu-profile.yaml.tmp" "$OUT/gpu-profile.yaml"
    fi
    tar -czf "$OUT/.raw.tar.gz.tmp" -C "$WORK" . 2>/dev/null && mv "$OUT/.raw.tar.gz.tmp" "$OUT/raw.tar.gz"
}

# stage NAME MAX_S CMD...: run CMD under min(MAX_S, time left before the deadline), log it, save outputs.
stage() {
    local name="$1" max_s="$2"; shift 2
    case " ${GPU_CHECK_SKIP:-} " in *" $name "*) stamp "SKIP $name (GPU_CHECK_SKIP)"; return 0 ;; esac
    local left=$(( DEADLINE_S - ($(date +%s) - T0) - 5 ))
    local limit=$(( max_s < left ? max_s : left ))
    if [ "$limit" -lt 10 ]; then
        stamp "SKIP $name: ${left}s left before the ${DEADLINE_S}s deadline"
        return 0
    fi
    stamp "BEGIN $name (limit ${limit}s)"
    timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    stamp "END $name rc=$rc$([ $rc = 124 ] && echo ' (timed out)')"
    [ "$rc" = 0 ] || FAILED_STAGES+=("$name")
    save
    return 0
}

stamp "start $(date -u +%Y-%m-%dT%H:%M:%SZ) device=$DEVICE mode=$MODE_FLAG deadline=${DEADLINE_S}s"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv 2>&1 || true; } >>"$LOG"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" >>"$LOG" 2>&1
stage install 60 python3 -m pip install -q --no-deps --no-build-isolation -e .
stage run_bench 260 bash run_bench.sh "$MODE_FLAG" --python python3 --no-install --device "$DEVICE" --nproc 1 \
    --out "$WORK/run" --profile "$WORK/gpu-profile.yaml"
DEV_TYPE="${DEVICE%%:*}"
if [ "$DEV_TYPE" != cpu ] && [ -f "$WORK/gpu-profile.yaml" ]; then
    # Every shape of the dense layer, eager and graph-replayed, on a temporary copy of the profile,
    # and a per-node breakdown of the largest prefill and decode shapes: which op's prediction is off.
    stage validate_accuracy 75 python3 benchmarks/validate_accuracy.py --device "$DEVICE" \
        --profile "$WORK/gpu-profile.yaml" --nproc 1 --models llama3-8b --breakdown-shape 3
fi
# The collective harness on 2 ranks (nccl on GPUs, graph capture of collectives included; gloo in a CPU dry run).
# A collective needs 2 ranks on 2 devices (accelcal refuses --nproc 1; NCCL refuses two ranks on one GPU), so a
# one-GPU machine skips it.  One dtype keeps it short.
if [ "$DEV_TYPE" = cpu ]; then
    NDEV=2
else
    NDEV=$(python3 -c "import torch; print(getattr(torch, '$DEV_TYPE').device_count())" 2>/dev/null || echo 0)
fi
if [ "${NDEV:-0}" -ge 2 ]; then
    stage collectives_2ranks 30 python3 -m accelcal bench collectives --device-type "$DEV_TYPE" --nproc 2 --quick \
        --dtypes bf16 --ops all_reduce,all_gather,broadcast --out "$WORK/collectives-2ranks"
else
    stamp "SKIP collectives: ${NDEV:-0} $DEV_TYPE device(s); a collective needs 2 ranks on 2 devices"
fi
stage timing_overhead 40 python3 benchmarks/timing_overhead.py --device "$DEVICE"
if [ -f "$WORK/gpu-profile.yaml" ]; then
    stage show 15 python3 -m accelcal show "$WORK/gpu-profile.yaml"
    # the samplers run_bench just measured against the copy-bandwidth estimate older profiles get (no device time)
    stage sampler_estimate 20 python3 benchmarks/sampler_estimate.py --profile "$WORK/gpu-profile.yaml"
fi
stamp "done"
save
tail -80 "$LOG"
if [ "${#FAILED_STAGES[@]}" -gt 0 ]; then
    stamp "stages that failed or timed out: ${FAILED_STAGES[*]}"
    exit 1
fi
