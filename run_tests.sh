#!/usr/bin/env bash
# Set up a virtual environment with the CPU build of torch and run the test suite.
#   bash run_tests.sh            # the default suite (CI runs this)
#   bash run_tests.sh -k planner # extra arguments go to pytest
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
echo "[run_tests] running pytest"
exec python -m pytest -q "$@"
