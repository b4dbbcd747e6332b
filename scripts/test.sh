#!/usr/bin/env bash
# The test command: bash scripts/test.sh [extra pytest args]
# Creates/reuses .venv in the repository root, installs env/requirements-dev.txt
# (skipped when a stamp with the requirements' hash matches) and runs the suite.
# Environment: VENV (default .venv), PYTHON (interpreter that creates the venv,
# default python3), TEST_WORKERS (test processes, default: the CPU count, at most 4;
# 1 runs the suite in one process). With several workers each one gets one
# OpenMP thread (unless OMP_NUM_THREADS is set): on 2 cores two one-thread
# workers run the suite ~2x faster than one process with two threads.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

workers="${TEST_WORKERS:-$(nproc)}"
case "$workers" in
    ''|*[!0-9]*) echo "error: TEST_WORKERS must be a whole number of test processes, got '$workers'" >&2; exit 2 ;;
esac
if [ "$workers" -gt 4 ] && [ -z "${TEST_WORKERS:-}" ]; then workers=4; fi
parallel=()
if [ "$workers" -gt 1 ]; then
    parallel=(-n "$workers")
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[test] creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.requirements-dev.sha256"
want="$(cat env/requirements.txt env/requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "[test] installing env/requirements-dev.txt into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r env/requirements-dev.txt
    echo "$want" > "$stamp"
fi

set +e
"$VENV/bin/python" -m pytest tests -q "${parallel[@]}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    # pytest exit code 5 = no test was collected: a broken suite, not a pass.
    echo "error: pytest collected no tests (check the tests/ folder and the -k/-m filters)" >&2
    exit 1
fi
exit "$rc"
