#!/usr/bin/env bash
# Creates the conda environment of env/environment.yml on an internet-connected
# Linux machine -- a laptop without a GPU is fine -- and checks that its PyTorch
# is a CUDA 12.x build (what the offline server's CUDA 12.8 driver can run).
#
#   bash scripts/create_env.sh
#
# Environment: ENV_NAME (default rheed), CONDA (conda or mamba; default conda),
# CONDA_OVERRIDE_CUDA (default 12.8), RECREATE=1 (remove an existing env of that
# name first), DRY_RUN=1 (print the commands only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ENV_NAME="${ENV_NAME:-rheed}"
CONDA="${CONDA:-conda}"
# conda only offers CUDA builds of a package when it sees a CUDA driver (the
# __cuda virtual package). On a machine without one, this documented override
# makes the solver behave as on the 12.8 server instead of falling back to a
# CPU-only build.
export CONDA_OVERRIDE_CUDA="${CONDA_OVERRIDE_CUDA:-12.8}"
export CONDA_ALWAYS_YES=true   # never prompt

run() {
    echo "+ $*"
    if [ "${DRY_RUN:-0}" != 1 ]; then "$@"; fi
}

if [ "${DRY_RUN:-0}" != 1 ] && ! command -v "$CONDA" >/dev/null 2>&1; then
    echo "error: '$CONDA' not found; install Miniforge (conda-forge's conda) first, or set CONDA=mamba" >&2
    exit 1
fi

echo "+ export CONDA_OVERRIDE_CUDA=$CONDA_OVERRIDE_CUDA"
if [ "${DRY_RUN:-0}" != 1 ] && "$CONDA" env list | awk '{print $1}' | grep -qx "$ENV_NAME"; then
    if [ "${RECREATE:-0}" != 1 ]; then
        echo "error: conda env '$ENV_NAME' already exists; rerun with RECREATE=1 to rebuild it, or set ENV_NAME" >&2
        exit 1
    fi
    run "$CONDA" env remove -n "$ENV_NAME"
fi
run "$CONDA" env create -n "$ENV_NAME" -f env/environment.yml

# The env must hold a CUDA 12.x build of torch; a CPU-only or CUDA 13 build would
# only show up on the offline server.
verify='import sys, torch
cuda = torch.version.cuda
print(f"torch {torch.__version__}, CUDA build {cuda}, kernels {torch.cuda.get_arch_list()}")
sys.exit(0 if cuda and cuda.split(".")[0] == "12" else 3)'
if ! run "$CONDA" run -n "$ENV_NAME" python -c "$verify"; then
    echo "error: the torch in env '$ENV_NAME' is not a CUDA 12.x build (see the line above); the server's" \
         "CUDA 12.8 driver cannot run it. Check the pip section of env/environment.yml" >&2
    exit 1
fi
run "$CONDA" run -n "$ENV_NAME" python scripts/check_env.py --cpu
if [ "${DRY_RUN:-0}" != 1 ]; then echo "done: env '$ENV_NAME' created. Next: bash scripts/pack_env.sh"; fi
