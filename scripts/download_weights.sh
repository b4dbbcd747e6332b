#!/usr/bin/env bash
# Run on a machine WITH internet access: downloads the official ConvNeXt V2
# ImageNet checkpoints into weights/ and checks that each one loads into the
# classifier. Copy weights/ to the offline server with the repository; nothing
# in the project downloads anything at run time.
#
#   bash scripts/download_weights.sh [--dry-run] [SIZE ...]     # default sizes: atto tiny
#
# SIZE: atto femto pico nano tiny base large huge. For each size two files:
#   weights/convnextv2_<size>_1k_224_fcmae.pt   FCMAE pre-trained only (pt_only)
#   weights/convnextv2_<size>_1k_224_ema.pt     fine-tuned on ImageNet-1K (EMA weights)
# Existing files are kept (and checked again). Environment: PYTHON (python),
# WEIGHTS_DIR (weights).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BASE_URL="https://dl.fbaipublicfiles.com/convnext/convnextv2"
SIZES_ALL="atto femto pico nano tiny base large huge"
PYTHON="${PYTHON:-python}"
WEIGHTS_DIR="${WEIGHTS_DIR:-weights}"

dry_run=0
sizes=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --dry-run) dry_run=1 ;;
        *)
            if [[ " $SIZES_ALL " != *" $arg "* ]]; then
                echo "error: unknown size '$arg' (choose from: $SIZES_ALL)" >&2
                exit 1
            fi
            sizes+=("$arg") ;;
    esac
done
if [ ${#sizes[@]} -eq 0 ]; then sizes=(atto tiny); fi

fetch() {  # url dest
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 3 -o "$2.part" "$1"
    else
        wget -O "$2.part" "$1"
    fi
    mv "$2.part" "$2"
}

# Loads a checkpoint into a 2-class classifier the way --finetune does; only the
# classifier's head and final norm may stay unloaded.
verify='import sys
sys.path.insert(0, ".")
import timm_compat  # noqa: F401
from models import convnextv2
from models.utils import load_pretrained_weights
from rheed.errors import UserError
from utils import load_checkpoint
name, path = sys.argv[1], sys.argv[2]
model = convnextv2.__dict__[name](num_classes=2)
try:
    report = load_pretrained_weights(model, load_checkpoint(path))
except UserError as e:
    sys.exit(f"error: {path}: {e}")
bad = [k for k in report["missing"] if not k.startswith(("head.", "norm."))]
if bad:
    sys.exit(f"error: {path} leaves {len(bad)} weights of {name} unloaded, e.g. {bad[:3]}")
n_left = len(report["missing"])
print(f"OK {path}: loads into {name} ({n_left} head/norm keys left to train)")'

for size in "${sizes[@]}"; do
    for file in "pt_only/convnextv2_${size}_1k_224_fcmae.pt" "im1k/convnextv2_${size}_1k_224_ema.pt"; do
        url="$BASE_URL/$file"
        dest="$WEIGHTS_DIR/$(basename "$file")"
        if [ "$dry_run" = 1 ]; then
            echo "+ download $url -> $dest"
            echo "+ verify $dest with convnextv2_$size"
            continue
        fi
        mkdir -p "$WEIGHTS_DIR"
        if [ -f "$dest" ]; then
            echo "exists: $dest"
        else
            echo "downloading $url"
            if ! fetch "$url" "$dest"; then
                echo "error: download of $url failed (no internet here? run this script on a connected machine)" >&2
                exit 1
            fi
        fi
        "$PYTHON" -c "$verify" "convnextv2_$size" "$dest"
    done
done
