#!/usr/bin/env bash
# Local debug fine-tuning on the CPU (laptop): small images and few epochs, a few
# minutes on the synthetic data. Same recipe flags as the GPU launcher, without
# AMP and torchrun. The quick-start runs its fine-tuning step through this script.
#
#   bash scripts/run_finetune_cpu.sh
#   FINETUNE=outputs/quickstart/pretrain/checkpoint-4.pth EPOCHS=3 bash scripts/run_finetune_cpu.sh
#
# Variables (default): MODEL (convnextv2_atto), DATA (data_rheed_split),
# OUTPUT (outputs/finetune_cpu), FINETUNE (empty: from scratch), EPOCHS (5),
# BATCH (16), BLR (2e-4), INPUT_SIZE (64), NB_CLASSES (empty: from the class folders), NUM_WORKERS (2),
# WARMUP_EPOCHS (0), EXTRA_ARGS (appended as is), PYTHON (python), DRY_RUN=1 (print only).
# GPUS is ignored.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python}"
MODEL="${MODEL:-convnextv2_atto}"
DATA="${DATA:-data_rheed_split}"
OUTPUT="${OUTPUT:-outputs/finetune_cpu}"
FINETUNE="${FINETUNE:-}"
EPOCHS="${EPOCHS:-5}"
BATCH="${BATCH:-16}"
BLR="${BLR:-2e-4}"
INPUT_SIZE="${INPUT_SIZE:-64}"
NB_CLASSES="${NB_CLASSES:-}"
NUM_WORKERS="${NUM_WORKERS:-2}"
WARMUP_EPOCHS="${WARMUP_EPOCHS:-0}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

if [ -n "$FINETUNE" ] && [ ! -f "$FINETUNE" ]; then
    msg="FINETUNE=$FINETUNE not found; download the official checkpoints on a connected machine with 'bash scripts/download_weights.sh', point FINETUNE at your own FCMAE checkpoint, or leave FINETUNE empty to train from scratch"
    if [ "${DRY_RUN:-0}" != 1 ]; then echo "error: $msg" >&2; exit 1; fi
    echo "warning (dry run): $msg" >&2
fi

cmd=("$PYTHON" main_finetune.py --device cpu
    --model "$MODEL" --data_set RHEED --data_path "$DATA"
    --output_dir "$OUTPUT" --log_dir "$OUTPUT/tensorboard"
    --epochs "$EPOCHS" --warmup_epochs "$WARMUP_EPOCHS" --batch_size "$BATCH" --blr "$BLR"
    --input_size "$INPUT_SIZE"
    --layer_decay_type single --layer_decay 0.9 --weight_decay 0.3 --drop_path 0.1
    --smoothing 0.2 --mixup 0 --cutmix 0 --crop_scale 0.5 1.0
    --class_weights auto --best_metric macro_f1
    --num_workers "$NUM_WORKERS" --pin_mem false)
if [ -n "$FINETUNE" ]; then cmd+=(--finetune "$FINETUNE"); fi
if [ -n "$NB_CLASSES" ]; then cmd+=(--nb_classes "$NB_CLASSES"); fi
# shellcheck disable=SC2206  # EXTRA_ARGS is split on spaces on purpose
cmd+=($EXTRA_ARGS)

printf '+'; printf ' %q' "${cmd[@]}"; printf '\n'
if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi
mkdir -p "$OUTPUT"
exec "${cmd[@]}"
