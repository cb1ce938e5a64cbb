#!/usr/bin/env bash
# run_bench.sh: calibrate this node in one command.
#
#   bash run_bench.sh                 # quick run on the default device (GPU if present)
#   bash run_bench.sh --full          # overnight sweep
#   bash run_bench.sh --help
#
# Steps: environment -> kernel suite -> collective sweep -> fits -> profile in
# profiles/ -> validation against real decoder layers -> a plan for a default
# model.  A profile is replaced only when the new run succeeded; the previous
# one is compared with the new one.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

MODE="quick"
DEVICE="auto"
OUT=""
PROFILE=""
NPROC=""
MODEL=""
VENV="${ACCELCAL_VENV:-.venv}"
PYTHON_BIN=""
INSTALL=1
SKIP_VALIDATE=0
SKIP_COLLECTIVES=0
TEST_MODE=0
FORCE=0

usage() {
    cat <<'EOF'
Usage: bash run_bench.sh [options]

Calibrate this node: kernel microbenchmarks, collectives, fitted profile,
validation on real decoder layers, and a parallelism plan for a default model.

Options:
  --quick                 short sweeps (default; about 5 min on a 2-core CPU with the first install, a few on one GPU)
  --full                  dense sweeps for an overnight run
  --device DEV            device to calibrate: auto (default: the accelerator if any), cpu, cuda:0, ...
  --nproc N               ranks for the collective sweep (default: all local accelerators; 2 on a CPU node)
  --out DIR               folder for logs, raw results and plans (default: results/run-<UTC time>)
  --profile PATH          profile to write (default: profiles/<host>-<device>.yaml)
  --model NAME            model for the closing plan (default: llama3-8b; tiny with --test-mode)
  --venv DIR              virtual environment to make or reuse (default: .venv)
  --python PY             use this interpreter as it is, no virtual environment
                          (e.g. the system python3 that holds a GPU build of torch)
  --no-install            do not install anything; accelcal must already be importable
  --skip-collectives      kernel suite only (no torch.distributed sweep)
  --skip-validate         do not run the validation step
  --test-mode             tiny sweeps for the test suite (seconds, not minutes)
  --force                 replace a --profile that is not this node's measured profile
                          (another device type's, a datasheet or published one, a file that is not a profile)
  -h, --help              show this help

On a GPU node the virtual environment is made with --system-site-packages so
the torch already installed there is used, and the project installs with
`pip install --no-deps --no-build-isolation -e .` when its dependencies are
present, so no network is needed.  Without torch, it installs
${ACCELCAL_TORCH_SPEC:-torch==2.13.0}.

Exit status: 0 when every stage ran; 2 for a bad option, model name or
destination (checked before any measurement) or an environment that cannot run; 1 when calibration
failed (the previous profile is kept) or when the profile was written but
validation, the plan or the report failed (the summary names which).
EOF
}

die() { echo "run_bench.sh: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE="quick" ;;
        --full) MODE="full" ;;
        --device) [ $# -ge 2 ] || die "--device needs a value"; DEVICE="$2"; shift ;;
        --nproc) [ $# -ge 2 ] || die "--nproc needs a value"; NPROC="$2"; shift ;;
        --out) [ $# -ge 2 ] || die "--out needs a value"; OUT="$2"; shift ;;
        --profile) [ $# -ge 2 ] || die "--profile needs a value"; PROFILE="$2"; shift ;;
        --model) [ $# -ge 2 ] || die "--model needs a value"; MODEL="$2"; shift ;;
        --venv) [ $# -ge 2 ] || die "--venv needs a value"; VENV="$2"; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs a value"; PYTHON_BIN="$2"; shift ;;
        --no-install) INSTALL=0 ;;
        --skip-collectives) SKIP_COLLECTIVES=1 ;;
        --skip-validate) SKIP_VALIDATE=1 ;;
        --test-mode) TEST_MODE=1 ;;
        --force) FORCE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
if [ -z "$MODEL" ]; then MODEL="llama3-8b"; [ "$TEST_MODE" = 1 ] && MODEL="tiny"; fi
if [ -n "$NPROC" ] && ! [[ "$NPROC" =~ ^[1-9][0-9]*$ ]]; then
    die "--nproc expects a whole number >= 1, got '$NPROC'"
fi

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-results/run-$STAMP}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/run_bench.log"
: >"$LOG"
T_START=$(date +%s)
FAILED=()  # stages that failed after the profile was written: the run then exits 1

step() { echo; echo "==> [$(( $(date +%s) - T_START ))s] $*" | tee -a "$LOG"; }
# Runs a command, mirrors its output into the log, and keeps its exit status.
logged() { "$@" 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; }

# ---------------------------------------------------------------- environment
step "environment"
if [ -n "$PYTHON_BIN" ]; then
    PY="$PYTHON_BIN"
    command -v "$PY" >/dev/null 2>&1 || die "--python '$PY' not found"
    echo "using interpreter $PY as it is" | tee -a "$LOG"
else
    if [ ! -x "$VENV/bin/python" ]; then
        BASE_PY="${PYTHON:-python3}"
        if "$BASE_PY" -c "import torch" >/dev/null 2>&1; then
            # A GPU node: reuse its torch build instead of downloading another.
            echo "creating $VENV with system site packages (torch found in $BASE_PY)" | tee -a "$LOG"
            "$BASE_PY" -m venv --system-site-packages "$VENV"
        else
            echo "creating $VENV" | tee -a "$LOG"
            "$BASE_PY" -m venv "$VENV"
        fi
    fi
    PY="$VENV/bin/python"
fi
if [ "$INSTALL" = 1 ]; then
    if ! "$PY" -c "import torch" >/dev/null 2>&1; then
        echo "installing ${ACCELCAL_TORCH_SPEC:-torch==2.13.0}" | tee -a "$LOG"
        logged "$PY" -m pip install -q "${ACCELCAL_TORCH_SPEC:-torch==2.13.0}"
    fi
    if "$PY" -c "import torch, pandas, scipy, numpy, yaml, tqdm, pytest_benchmark" >/dev/null 2>&1; then
        # Everything is there: install offline, keeping the node's torch.
        logged "$PY" -m pip install -q --no-deps --no-build-isolation -e .
    else
        # The measure and bench extras: torch, pandas, scipy, tqdm, pytest-benchmark (pyproject.toml).
        logged "$PY" -m pip install -q -e ".[measure,bench,plot]"
    fi
fi
"$PY" -c "import accelcal.kernels, accelcal.calibrate, accelcal.planner" 2>>"$LOG" \
    || die "accelcal is not importable with $PY (drop --no-install, or install it: pip install -e ".[measure,bench]")"
ACC=("$PY" -m accelcal)
# The closing plan's model, checked now rather than after minutes of calibration.
MODEL_ERR="$("$PY" -c "
import sys
from accelcal.models import ModelConfig
try:
    ModelConfig.resolve(sys.argv[1])
except (ValueError, OSError) as exc:
    print(exc)
    sys.exit(1)" "$MODEL" 2>&1)" || die "--model: $MODEL_ERR"
logged "${ACC[@]}" env --device "$DEVICE" --json-out "$OUT/environment.json" || die "environment capture failed (see $LOG)"
DEV_TYPE="$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['device_type'])" "$OUT/environment.json")"
DEV_SPEC="$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['device'])" "$OUT/environment.json")"
if [ -z "$NPROC" ]; then
    if [ "$DEV_TYPE" = "cpu" ]; then NPROC=2; else
        NPROC="$("$PY" -c "import torch; print(max(1, torch.accelerator.device_count()))")"
    fi
fi
if [ -z "$PROFILE" ]; then
    # One naming scheme (calibrate/naming.py): stem = identity.name = <host>-<device>, raw data in <stem>-raw/.
    NAME="$("$PY" -c "import json,sys; from accelcal.calibrate.naming import default_profile_name as d; print(d(json.load(open(sys.argv[1]))))" "$OUT/environment.json")"
    PROFILE="profiles/${NAME}.yaml"
fi
RAW="${PROFILE%.*}-raw"  # <stem>-raw for .yaml and .yml alike (calibrate/naming.py)

PRESET="--$MODE"
if [ "$TEST_MODE" = 1 ]; then PRESET="--smoke"; MODE="test"; fi

# ------------------------------------------------- measure, fit, write profile
PREV=""
PREV_RAW=""
if [ -f "$PROFILE" ]; then
    PREV="$OUT/previous-profile.yaml"
    cp "$PROFILE" "$PREV"
    # and its raw data, which this run replaces, beside it under the folder name its raw_data entries use
    if [ -d "$RAW" ]; then PREV_RAW="$OUT/$(basename "$RAW")"; cp -R "$RAW" "$PREV_RAW"; fi
fi
# One rank measures no collectives: that is how --skip-collectives is spelled to calibrate.
CAL_NPROC="$NPROC"
WHAT="kernels, collectives (nproc=$NPROC)"
if [ "$SKIP_COLLECTIVES" = 1 ]; then
    CAL_NPROC=1
    WHAT="kernels on 1 rank (collectives skipped$([ "$DEV_TYPE" = cpu ] && echo '; the CPU device is then every core'))"
fi
step "calibrate ($MODE): $WHAT, fits -> $PROFILE"
CAL_ARGS=(calibrate --device "$DEV_SPEC" "$PRESET" --nproc "$CAL_NPROC" --out "$PROFILE" --raw-dir "$RAW")
[ "$FORCE" = 1 ] && CAL_ARGS+=(--force)
CAL_RC=0; logged "${ACC[@]}" "${CAL_ARGS[@]}" || CAL_RC=$?
if [ "$CAL_RC" != 0 ]; then
    if [ "$CAL_RC" = 2 ]; then  # refused before measuring (its error line above): bad input, as the options
        echo "run_bench.sh: error: calibrate stopped before measuring (its error is above: bad input, a --profile it" \
             "replaces only with --force, or a missing extra); ${PREV:+the previous profile is unchanged: }$PROFILE" >&2
        exit 2
    fi
    echo "run_bench.sh: calibration failed; ${PREV:+the previous profile is unchanged: }$PROFILE (log: $LOG)" >&2
    exit 1
fi

# ---------------------------------------------------------------- validation
if [ "$SKIP_VALIDATE" = 0 ]; then
    step "validate: real decoder layers vs planner predictions"
    VAL_ARGS=(validate --profile "$PROFILE" --device "$DEV_SPEC" --write --nproc "$([ "$NPROC" -ge 2 ] && echo 2 || echo 1)")
    if [ "$MODE" != full ]; then VAL_ARGS+=(--quick); fi
    # test mode checks that every stage runs, not the figures: one shape per phase and model is enough
    if [ "$TEST_MODE" = 1 ]; then VAL_ARGS+=(--shapes 1); fi
    if ! logged "${ACC[@]}" "${VAL_ARGS[@]}" | tee "$OUT/validation.txt"; then
        echo "run_bench.sh: validation failed (profile kept without a validation section; see $LOG)" | tee -a "$LOG"
        FAILED+=(validation)
    fi
fi

# ------------------------------------------------------------------ compare
if [ -n "$PREV" ]; then
    step "compare with the previous profile"
    logged "${ACC[@]}" compare "$PREV" "$PROFILE" | tee "$OUT/compare.txt" || true
fi

# --------------------------------------------------------------------- plan
step "plan: $MODEL on this node"
if ! logged "${ACC[@]}" plan --profile "$PROFILE" --model "$MODEL" --export-dir "$OUT/plan" | tee "$OUT/plan.txt"; then
    echo "run_bench.sh: planning failed (see $LOG)" | tee -a "$LOG"
    FAILED+=(plan)
fi

# ------------------------------------------------------------------- report
HAVE_REPORT=0
if "$PY" -c "import matplotlib" >/dev/null 2>&1; then
    step "report: one HTML page (summary, fit quality, plots, validation, plan)"
    # exit 3 / 4: the page is written and its plan is infeasible or misses the targets, which the plan step reports
    RC=0; logged "${ACC[@]}" report "$PROFILE" --model "$MODEL" --out "$OUT/report.html" || RC=$?
    if [ "$RC" = 0 ] || [ "$RC" = 3 ] || [ "$RC" = 4 ]; then HAVE_REPORT=1; else
        echo "run_bench.sh: report failed (see $LOG)" | tee -a "$LOG"; FAILED+=(report); fi
fi

# ------------------------------------------------------------------ summary
ELAPSED=$(( $(date +%s) - T_START ))
{
    echo
    echo "==> done in ${ELAPSED}s ($MODE mode, device $DEV_SPEC, calibrated on $CAL_NPROC rank(s))"
    echo "  profile          $PROFILE"
    echo "  raw measurements $RAW/"
    echo "  environment      $OUT/environment.json"
    [ "$SKIP_VALIDATE" = 0 ] && echo "  validation       $OUT/validation.txt"
    [ -n "$PREV" ] && echo "  changes          $OUT/compare.txt (the previous profile: $PREV${PREV_RAW:+, its raw data in $PREV_RAW/})"
    if [[ " ${FAILED[*]} " == *" plan "* ]]; then echo "  plan             FAILED: its error is in $OUT/plan.txt"; else
        echo "  plan             $OUT/plan.txt (DAG/trace exports in $OUT/plan/)"; fi
    [ "$HAVE_REPORT" = 1 ] && echo "  report           $OUT/report.html (open in a browser; plots inline)"
    echo "  log              $LOG"
} | tee -a "$LOG"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "run_bench.sh: the profile was written, but these stages failed: ${FAILED[*]} (see $LOG)" >&2
    exit 1
fi
