#!/usr/bin/env bash
# On the offline server: checks the tarball's SHA-256 (when the .sha256 file is
# beside it), extracts the packed env and fixes its paths with conda-unpack.
# Needs neither conda nor network.
#
#   bash scripts/unpack_env.sh rheed-env.tar.gz [TARGET_DIR]     # default TARGET_DIR: ~/envs/rheed
#
# DRY_RUN=1 prints the commands only. An existing non-empty TARGET_DIR is never touched.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [ $# -ge 1 ] && exit 0 || exit 2
fi
tarball="$1"
target="${2:-$HOME/envs/rheed}"

run() {
    echo "+ $*"
    if [ "${DRY_RUN:-0}" != 1 ]; then "$@"; fi
}

if [ ! -f "$tarball" ]; then
    echo "error: $tarball not found (make it on the laptop with bash scripts/pack_env.sh)" >&2
    exit 1
fi
if [ -d "$target" ] && [ -n "$(ls -A "$target")" ]; then
    echo "error: $target exists and is not empty; pass another TARGET_DIR or remove it" >&2
    exit 1
fi
if [ -f "$tarball.sha256" ]; then
    want="$(cut -d' ' -f1 "$tarball.sha256")"
    have="$(sha256sum "$tarball" | cut -d' ' -f1)"
    if [ "$want" != "$have" ]; then
        echo "error: SHA-256 of $tarball does not match $tarball.sha256 (incomplete copy?)" >&2
        exit 1
    fi
    echo "checksum OK: $have"
else
    echo "warning: no $tarball.sha256 beside the tarball; skipping the checksum" >&2
fi
run mkdir -p "$target"
run tar -xzf "$tarball" -C "$target"
# conda-unpack (shipped inside the tarball) rewrites the prefixes baked into
# scripts and text files; conda-pack's docs run it from the activated env.
run bash -c "source '$target/bin/activate' && conda-unpack"
echo "done. Activate the env in every new shell with:"
echo "  source $target/bin/activate"
echo "then check the server (from the repository root):"
echo "  python scripts/check_env.py --output_dir outputs --data_path data_rheed_split"
