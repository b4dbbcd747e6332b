#!/usr/bin/env bash
# Fine-tunes a ConvNeXt V2 classifier on the RHEED split with torchrun on one
# machine with several GPUs: class-weighted loss (weights from the training
# split), best checkpoint chosen on validation macro-F1, EMA, AMP, and the test
# split evaluated with the best checkpoint at the end (test_metrics.json).
#
#   bash scripts/run_finetune_balanced_gpu.sh
#   MODEL=convnextv2_tiny GPUS=4 FINETUNE=outputs/pretrain_atto/checkpoint-399.pth bash scripts/run_finetune_balanced_gpu.sh
#
# Variables (default): GPUS (4), MODEL (convnextv2_atto), DATA (data_rheed_split),
# OUTPUT (outputs/finetune_<model>), FINETUNE (weights/convnextv2_<size>_1k_224_fcmae.pt;
# set FINETUNE= to train from scratch), EPOCHS (100), BATCH (32 per GPU), BLR (2e-4),
# INPUT_SIZE (224), NB_CLASSES (empty: from the class folders), NUM_WORKERS (8),
# PATTERN_GAMMA (1 with FINETUNE, 2 from scratch: docs/EXPERIMENTS.md section 47), EXTRA_ARGS (appended as is),
# DRY_RUN=1 (print the command only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/launcher_common.sh
source scripts/launcher_common.sh

GPUS="${GPUS:-4}"
MODEL="${MODEL:-convnextv2_atto}"
DATA="${DATA:-data_rheed_split}"
OUTPUT="${OUTPUT:-outputs/finetune_${MODEL#convnextv2_}}"
FINETUNE="${FINETUNE-weights/${MODEL}_1k_224_fcmae.pt}"
EPOCHS="${EPOCHS:-100}"
BATCH="${BATCH:-32}"
BLR="${BLR:-2e-4}"
INPUT_SIZE="${INPUT_SIZE:-224}"
NB_CLASSES="${NB_CLASSES:-}"
NUM_WORKERS="${NUM_WORKERS:-8}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

check_finetune_file

# Recipe: the RHEED input pipeline of the CPU launcher (background subtraction on
# the whole frame, RHEED augmentations, frozen stem bias, full-scale head init;
# docs/EXPERIMENTS.md) with upstream's atto regularisation (layer decay 0.9, weight
# decay 0.3, drop path 0.1, label smoothing 0.2, no mixup/cutmix, EMA, AMP), fewer
# epochs, a short warm-up and a faster EMA for ~3k frames (~25 steps per epoch).
# The input pipeline was measured on the CPU from scratch; with ImageNet FCMAE
# weights and on GPUs it is not measured yet.
cmd=(torchrun --standalone --nproc_per_node="$GPUS" main_finetune.py
    --model "$MODEL" --data_set RHEED --data_path "$DATA"
    --output_dir "$OUTPUT" --log_dir "$OUTPUT/tensorboard"
    --epochs "$EPOCHS" --warmup_epochs 5 --batch_size "$BATCH" --blr "$BLR" --input_size "$INPUT_SIZE"
    --layer_decay_type single --layer_decay 0.9 --weight_decay 0.3 --drop_path 0.1
    --smoothing 0.2 --mixup 0 --cutmix 0 "${RHEED_FINETUNE_INPUT[@]}" --pattern_gamma "$(finetune_pattern_gamma)"
    --model_ema true --model_ema_eval true --model_ema_decay 0.999 --use_amp true
    --class_weights auto --best_metric macro_f1
    --num_workers "$NUM_WORKERS")
if [ -n "$FINETUNE" ]; then cmd+=(--finetune "$FINETUNE"); fi
if [ -n "$NB_CLASSES" ]; then cmd+=(--nb_classes "$NB_CLASSES"); fi
# shellcheck disable=SC2206  # EXTRA_ARGS is split on spaces on purpose
cmd+=($EXTRA_ARGS)

print_and_run "${cmd[@]}"
