#!/usr/bin/env bash
# FCMAE self-supervised pre-training with torchrun on one machine with several
# GPUs. It reads only <DATA>/train (plus UNLABELED, when given): validation and
# test frames are never seen before the final evaluation.
#
#   bash scripts/run_pretrain_gpu.sh
#   UNLABELED=/data/rheed_unlabeled EPOCHS=800 bash scripts/run_pretrain_gpu.sh
#
# Variables (default): GPUS (4), MODEL (convnextv2_atto), DATA (data_rheed_split),
# UNLABELED (unset: none; a folder of extra unlabeled frames, searched recursively),
# OUTPUT (outputs/pretrain_<size>), EPOCHS (400), BATCH (64 per GPU), BLR (1.5e-4),
# INPUT_SIZE (224), NUM_WORKERS (8), EXTRA_ARGS (appended as is), DRY_RUN=1 (print only).
# FINETUNE is not used here. The last checkpoint, <OUTPUT>/checkpoint-<EPOCHS-1>.pth,
# is the FINETUNE of scripts/run_finetune_balanced_gpu.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/launcher_common.sh
source scripts/launcher_common.sh

GPUS="${GPUS:-4}"
MODEL="${MODEL:-convnextv2_atto}"
DATA="${DATA:-data_rheed_split}"
UNLABELED="${UNLABELED:-}"
OUTPUT="${OUTPUT:-outputs/pretrain_${MODEL#convnextv2_}}"
EPOCHS="${EPOCHS:-400}"
BATCH="${BATCH:-64}"
BLR="${BLR:-1.5e-4}"
INPUT_SIZE="${INPUT_SIZE:-224}"
NUM_WORKERS="${NUM_WORKERS:-8}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

check_train_folder

# Upstream's pre-training recipe (mask ratio 0.6, blr 1.5e-4, 40 warmup epochs,
# normalized-pixel loss) with fewer epochs than ImageNet's 800-1600.
# Background subtraction as in the fine-tuning launchers, so the encoder is
# pre-trained on the input it will be fine-tuned on.
cmd=(torchrun --standalone --nproc_per_node="$GPUS" main_pretrain.py
    --model "$MODEL" --data_path "$DATA"
    --output_dir "$OUTPUT" --log_dir "$OUTPUT/tensorboard"
    --epochs "$EPOCHS" --warmup_epochs 40 --batch_size "$BATCH" --blr "$BLR" --input_size "$INPUT_SIZE"
    --mask_ratio 0.6 --weight_decay 0.05 "${RHEED_FRAME_INPUT[@]}"
    --num_workers "$NUM_WORKERS")
if [ -n "$UNLABELED" ]; then cmd+=(--unlabeled_data_path "$UNLABELED"); fi
# shellcheck disable=SC2206  # EXTRA_ARGS is split on spaces on purpose
cmd+=($EXTRA_ARGS)

print_and_run "${cmd[@]}"
