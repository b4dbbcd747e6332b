#!/usr/bin/env bash
# Packs the conda env into one relocatable tarball (conda-pack) for the offline
# server, and writes its SHA-256 next to it.
#
#   bash scripts/pack_env.sh            # -> rheed-env.tar.gz + rheed-env.tar.gz.sha256
#
# Environment: ENV_NAME (default rheed), CONDA (default conda), PACK_OUT (default
# rheed-env.tar.gz), DRY_RUN=1 (print the commands only). An existing tarball is
# never overwritten.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ENV_NAME="${ENV_NAME:-rheed}"
CONDA="${CONDA:-conda}"
PACK_OUT="${PACK_OUT:-rheed-env.tar.gz}"

run() {
    echo "+ $*"
    if [ "${DRY_RUN:-0}" != 1 ]; then "$@"; fi
}

if [ -e "$PACK_OUT" ]; then
    echo "error: $PACK_OUT already exists; move it away or set PACK_OUT" >&2
    exit 1
fi
if [ "${DRY_RUN:-0}" = 1 ]; then
    prefix="<prefix of env $ENV_NAME>"
else
    if ! prefix="$("$CONDA" run -n "$ENV_NAME" python -c 'import sys; print(sys.prefix)')"; then
        echo "error: conda env '$ENV_NAME' not found; create it with bash scripts/create_env.sh" >&2
        exit 1
    fi
    if [ ! -x "$prefix/bin/conda-pack" ]; then
        echo "error: conda-pack is missing from env '$ENV_NAME'; recreate it from env/environment.yml" >&2
        exit 1
    fi
fi
run "$prefix/bin/conda-pack" -p "$prefix" -o "$PACK_OUT"
if [ "${DRY_RUN:-0}" != 1 ]; then
    sha256sum "$PACK_OUT" > "$PACK_OUT.sha256"
    echo "packed: $PACK_OUT ($(du -h "$PACK_OUT" | cut -f1)), sha256 $(cut -d' ' -f1 "$PACK_OUT.sha256")"
fi
echo "next: copy $PACK_OUT, $PACK_OUT.sha256 and this repository to the server, then run there:"
echo "  bash scripts/unpack_env.sh $PACK_OUT"
