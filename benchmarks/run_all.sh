#!/usr/bin/env bash
# Run every benchmark script once and keep what each printed, for benchmarks/RESULTS.md.
#
#   bash benchmarks/run_all.sh benchmarks/results/cpu-2core-epyc --profile profiles/cpu-2core-epyc.yaml
#   bash benchmarks/run_all.sh "$OUT/bench" --device cuda:0 --profile "$OUT/gpu-profile.yaml"
#
# Each script prints its own figures and targets; this only runs them in a
# fixed order on an otherwise idle machine and stores the output verbatim.
set -uo pipefail
OUT="${1:?usage: benchmarks/run_all.sh OUTDIR [--device D] [--profile P]}"
shift
DEVICE="auto"
PROFILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift ;;
        --profile) PROFILE="$2"; shift ;;
        *) echo "benchmarks/run_all.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p "$OUT"
PY="${PYTHON:-python}"
DEV_ARGS=()
[ "$DEVICE" != auto ] && DEV_ARGS=(--device "$DEVICE")
run() {
    local name="$1"; shift
    echo "==> $name: $*"
    { echo "\$ $*"; echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ)"; "$@"; echo "# exit $?"; } >"$OUT/$name.txt" 2>&1
    tail -n 15 "$OUT/$name.txt"
}
run kernel_suite_time "$PY" benchmarks/kernel_suite_time.py "${DEV_ARGS[@]}"
run timing_overhead "$PY" benchmarks/timing_overhead.py --rounds 7 "${DEV_ARGS[@]}"
run sampler_estimate "$PY" benchmarks/sampler_estimate.py "${DEV_ARGS[@]}"
if [ "$DEVICE" = auto ] || [ "$DEVICE" = cpu ]; then
    run collectives_vs_plain "$PY" benchmarks/collectives_vs_plain.py
    run cache_residency "$PY" benchmarks/cache_residency.py --rounds 2
fi
if [ -n "$PROFILE" ]; then
    # The profile lists its own raw files (collectives come in several rounds).
    mapfile -t RAW_CSVS < <("$PY" -c "import sys; from pathlib import Path; from accelcal.calibrate.profile import Profile; p = Path(sys.argv[1]); print('\n'.join(str(p.parent / r) for r in Profile.load(p).identity.raw_data if r.endswith('.csv')))" "$PROFILE")
    run fit_accuracy "$PY" benchmarks/fit_accuracy.py "${RAW_CSVS[@]}"
    run validate_accuracy "$PY" benchmarks/validate_accuracy.py --profile "$PROFILE"
fi
run planner_search_speed "$PY" benchmarks/planner_search_speed.py
run serving_search_speed "$PY" benchmarks/serving_search_speed.py
if [ -f ../shared/data/serving-dev/qwen3-32b-h100.csv ]; then
    run serving_accuracy "$PY" benchmarks/serving_accuracy.py --out "$OUT/serving_rows.csv"
    run serving_error_breakdown "$PY" benchmarks/serving_error_breakdown.py "$OUT/serving_rows.csv"
fi
run nccl_import "$PY" benchmarks/nccl_import.py
run engine_gemm_tables "$PY" benchmarks/engine_gemm_tables.py
run engine_moe_tables "$PY" benchmarks/engine_moe_tables.py
# The client gap needs a benchmark client (aiperf is not a dependency): measured only where one is installed.
if command -v aiperf >/dev/null 2>&1 && [ -n "${AIPERF_TOKENIZER:-}" ]; then
    run client_gap_aiperf "$PY" benchmarks/client_gap.py --concurrency 8 --skip 16 -- aiperf profile -m mock \
        --endpoint-type chat --streaming -u '{url}' --tokenizer "$AIPERF_TOKENIZER" --isl 1024 --isl-stddev 0 \
        --osl 128 --osl-stddev 0 --extra-inputs ignore_eos:true --concurrency 8 --request-count 160 \
        --warmup-request-count 16 --random-seed 100 --ui none --artifact-dir "$OUT/client_gap_aiperf"
fi
