#!/usr/bin/env bash
# FCMAE pre-training on the CPU (laptop), the in-domain route measured in
# docs/EXPERIMENTS.md sections 38, 46, 48 and 49: the training frames of the split
# plus the unlabeled frames of your videos, about 1600 optimisation steps at 96 px
# (16 min on 2 cores for ~660 frames; 800 steps, 8 min, transferred clearly worse
# to frames of another simulator, section 49; 128 px took twice as long and
# fine-tuned no better, section 46 - the fine-tuning still runs at 128 px), with
# 40 % of the 32-px blocks masked (4 of the 9 at 96 px; upstream's 0.6 fine-tuned
# worse on unseen runs, 0.75 much worse, section 48). Fewer steps made unseen
# growth runs worse than training from scratch (sections 19-20, 39).
# It reads only <DATA>/train (plus UNLABELED): validation and test frames are
# never seen. Then fine-tune from the checkpoint it names:
#
#   UNLABELED=data_unlabeled bash scripts/run_pretrain_cpu.sh
#   FINETUNE=outputs/pretrain_cpu/checkpoint-<EPOCHS-1>.pth bash scripts/run_finetune_cpu.sh
#
# Variables (default): MODEL (convnextv2_atto), DATA (data_rheed_split),
# UNLABELED (unset: none; a folder of extra unlabeled frames, searched recursively),
# OUTPUT (outputs/pretrain_cpu), STEPS (1600), EPOCHS (empty: STEPS / (frames // BATCH),
# rounded up; when set it replaces STEPS), BATCH (32), LR (5e-4: absolute peak lr),
# WARMUP_EPOCHS (empty: an eighth of EPOCHS), INPUT_SIZE (96; a multiple of 32), MASK_RATIO (0.4),
# NUM_WORKERS (2), EXTRA_ARGS (appended as is), PYTHON (python), DRY_RUN=1 (print only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/launcher_common.sh
source scripts/launcher_common.sh

PYTHON="${PYTHON:-python}"
MODEL="${MODEL:-convnextv2_atto}"
DATA="${DATA:-data_rheed_split}"
UNLABELED="${UNLABELED:-}"
OUTPUT="${OUTPUT:-outputs/pretrain_cpu}"
STEPS="${STEPS:-1600}"
EPOCHS="${EPOCHS:-}"
BATCH="${BATCH:-32}"
LR="${LR:-5e-4}"
WARMUP_EPOCHS="${WARMUP_EPOCHS:-}"
INPUT_SIZE="${INPUT_SIZE:-96}"
MASK_RATIO="${MASK_RATIO:-0.4}"
NUM_WORKERS="${NUM_WORKERS:-2}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

check_train_folder
if [ -n "$UNLABELED" ] && [ "${DRY_RUN:-0}" != 1 ] && [ ! -d "$UNLABELED" ]; then
    echo "error: UNLABELED=$UNLABELED not found" >&2
    exit 1
fi

# The measured quantity is optimisation steps, not epochs: count the frames once.
if [ -z "$EPOCHS" ]; then
    frames=$( { find "$DATA/train" ${UNLABELED:+"$UNLABELED"} -type f \( -iname '*.png' -o -iname '*.jpg' \
        -o -iname '*.jpeg' -o -iname '*.bmp' -o -iname '*.tif' -o -iname '*.tiff' \) 2>/dev/null || true; } | wc -l)
    if [ "$frames" -eq 0 ]; then
        if [ "${DRY_RUN:-0}" != 1 ]; then
            echo "error: no image files in $DATA/train${UNLABELED:+ or $UNLABELED}" >&2
            exit 1
        fi
        EPOCHS=40
        echo "warning (dry run): no frames found; EPOCHS=40 shown" >&2
    else
        steps_per_epoch=$(( frames / BATCH ))   # the pre-training loader drops the last partial batch
        if [ "$steps_per_epoch" -lt 1 ]; then steps_per_epoch=1; fi
        EPOCHS=$(( (STEPS + steps_per_epoch - 1) / steps_per_epoch ))
        echo "$frames frames, $steps_per_epoch steps per epoch: $EPOCHS epochs for about $STEPS steps"
    fi
fi
WARMUP_EPOCHS="${WARMUP_EPOCHS:-$(( (EPOCHS + 7) / 8 ))}"
echo "the encoder for scripts/run_finetune_cpu.sh: FINETUNE=$OUTPUT/checkpoint-$((EPOCHS - 1)).pth"

# Background subtraction and frame cache as in the fine-tuning launchers, so the
# encoder is pre-trained on the input it will be fine-tuned on; upstream's
# normalized-pixel loss.
cmd=("$PYTHON" main_pretrain.py --device cpu
    --model "$MODEL" --data_path "$DATA"
    --output_dir "$OUTPUT" --log_dir "$OUTPUT/tensorboard"
    --epochs "$EPOCHS" --warmup_epochs "$WARMUP_EPOCHS" --batch_size "$BATCH" --lr "$LR"
    --input_size "$INPUT_SIZE" --mask_ratio "$MASK_RATIO" --weight_decay 0.05
    "${RHEED_FRAME_INPUT[@]}"
    --save_ckpt_freq 20 --num_workers "$NUM_WORKERS" --pin_mem false)
if [ -n "$UNLABELED" ]; then cmd+=(--unlabeled_data_path "$UNLABELED"); fi
# shellcheck disable=SC2206  # EXTRA_ARGS is split on spaces on purpose
cmd+=($EXTRA_ARGS)

print_and_run "${cmd[@]}"
