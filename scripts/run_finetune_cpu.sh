#!/usr/bin/env bash
# Fine-tuning on the CPU (laptop): small images, a few minutes on a few hundred
# frames. The recipe is the small-data RHEED recipe measured in docs/EXPERIMENTS.md:
# background subtraction and RHEED augmentations, a full-scale classifier head,
# AdamW at lr 2e-4 with a one-epoch warm-up, light regularisation. It learns from
# scratch; a pre-trained FINETUNE checkpoint starts it further along. The
# quick-start runs its fine-tuning step through this script.
#
#   bash scripts/run_finetune_cpu.sh
#   FINETUNE=outputs/quickstart/pretrain/checkpoint-4.pth EPOCHS=3 bash scripts/run_finetune_cpu.sh
#
# Variables (default): MODEL (convnextv2_atto), DATA (data_rheed_split),
# OUTPUT (outputs/finetune_cpu), FINETUNE (empty: from scratch), EPOCHS (30),
# BATCH (16), LR (2e-4: absolute peak lr, not scaled with BATCH), BLR (empty; when set it
# replaces LR and is scaled by BATCH/256 as upstream's --blr), INPUT_SIZE (128),
# NB_CLASSES (empty: from the class folders), NUM_WORKERS (2),
# WARMUP_EPOCHS (1), MIN_EPOCH_SIZE (128: smaller training sets are passed over several times per
# epoch; the number of optimisation steps, EPOCHS x max(frames, MIN_EPOCH_SIZE) / BATCH, is what
# counts: with fewer EPOCHS raise it to keep ~400 steps, docs/EXPERIMENTS.md section 22),
# BEST_METRIC (last: checkpoint-best.pth is the final epoch - a validation set of a few growth
# runs picks a noisy epoch; macro_f1 selects on validation as upstream does on accuracy),
# LAYER_DECAY (1.0 from scratch; 0.9 with FINETUNE, as upstream fine-tunes atto: a pre-trained encoder
# fine-tuned at full lr in every layer collapsed to chance in one of three runs, docs/EXPERIMENTS.md section 18),
# PATTERN_GAMMA (2 from scratch, 1 with FINETUNE: docs/EXPERIMENTS.md section 47),
# EXTRA_ARGS (appended as is), PYTHON (python), DRY_RUN=1 (print only).
# GPUS is ignored.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/launcher_common.sh
source scripts/launcher_common.sh

PYTHON="${PYTHON:-python}"
MODEL="${MODEL:-convnextv2_atto}"
DATA="${DATA:-data_rheed_split}"
OUTPUT="${OUTPUT:-outputs/finetune_cpu}"
FINETUNE="${FINETUNE:-}"
EPOCHS="${EPOCHS:-30}"
BATCH="${BATCH:-16}"
LR="${LR:-2e-4}"
BLR="${BLR:-}"
INPUT_SIZE="${INPUT_SIZE:-128}"
NB_CLASSES="${NB_CLASSES:-}"
NUM_WORKERS="${NUM_WORKERS:-2}"
WARMUP_EPOCHS="${WARMUP_EPOCHS:-1}"
MIN_EPOCH_SIZE="${MIN_EPOCH_SIZE:-128}"
if [ -n "$FINETUNE" ]; then LAYER_DECAY="${LAYER_DECAY:-0.9}"; else LAYER_DECAY="${LAYER_DECAY:-1.0}"; fi
BEST_METRIC="${BEST_METRIC:-last}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

check_finetune_file

cmd=("$PYTHON" main_finetune.py --device cpu
    --model "$MODEL" --data_set RHEED --data_path "$DATA"
    --output_dir "$OUTPUT" --log_dir "$OUTPUT/tensorboard"
    --epochs "$EPOCHS" --warmup_epochs "$WARMUP_EPOCHS" --batch_size "$BATCH"
    --input_size "$INPUT_SIZE" "${RHEED_FINETUNE_INPUT[@]}" --pattern_gamma "$(finetune_pattern_gamma)"
    --min_epoch_size "$MIN_EPOCH_SIZE"
    --weight_decay 0.05 --drop_path 0 --layer_decay "$LAYER_DECAY"
    --smoothing 0 --mixup 0 --cutmix 0
    --class_weights auto --best_metric "$BEST_METRIC"
    --num_workers "$NUM_WORKERS" --pin_mem false)
if [ -n "$BLR" ]; then cmd+=(--blr "$BLR"); else cmd+=(--lr "$LR"); fi
if [ -n "$FINETUNE" ]; then cmd+=(--finetune "$FINETUNE"); fi
if [ -n "$NB_CLASSES" ]; then cmd+=(--nb_classes "$NB_CLASSES"); fi
# shellcheck disable=SC2206  # EXTRA_ARGS is split on spaces on purpose
cmd+=($EXTRA_ARGS)

print_and_run "${cmd[@]}"
