#!/usr/bin/env bash
# Set up a virtual environment with the CPU build of torch and run the test suite.
#   bash run_tests.sh            # the default suite (CI runs this)
#   bash run_tests.sh -k planner # extra arguments go to pytest
#   ACCELCAL_TEST_WORKERS=0 bash run_tests.sh   # one process (pytest-xdist's -n 0), e.g. to debug
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
VENV="${ACCELCAL_VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[run_tests] creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
if ! python -c "import torch" 2>/dev/null; then
    # Pinned: an unpinned torch pulls a multi-GB CUDA build.
    echo "[run_tests] installing torch==2.13.0 (CPU build)"
    pip install -q torch==2.13.0
fi
echo "[run_tests] installing accelcal and test dependencies"
pip install -q -e ".[measure,bench,dev,plot,parquet]"
# Two workers by default (the CI machines have 2 cores): each test file runs whole in one worker, so a file's
# module fixtures (a fresh venv, a clean checkout) are built once. ACCELCAL_TEST_WORKERS=0 runs in one process.
WORKERS="${ACCELCAL_TEST_WORKERS:-2}"
echo "[run_tests] running pytest ($WORKERS workers)"
exec python -m pytest -q -n "$WORKERS" --dist loadfile "$@"
