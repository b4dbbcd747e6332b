#!/usr/bin/env bash
# Pre-trains a network on a large synthetic RHEED corpus, so that fine-tuning on a lab's own
# few labelled frames starts from a model that already knows what a RHEED pattern is.
#   1. corpus: scripts/make_synthetic_rheed.py --variety --camera_randomize (every fine class,
#      many materials, cameras and screens), FRAMES frames in about FRAMES/60 growth runs per kind;
#   2. split by growth run into train/val (85:15) with one folder per fine class;
#   3. MODE=supervised: a fine-class classifier (the CPU launcher, or the GPU launcher from scratch);
#      MODE=fcmae: FCMAE self-supervised pre-training on train/ (labels unused).
# The checkpoint it prints at the end is the FINETUNE of run_finetune_cpu.sh / run_finetune_balanced_gpu.sh
# (the classifier head is always replaced).
#
#   bash scripts/pretrain_synthetic.sh                          # CPU: 2k frames, FCMAE, ~20 min on 2 cores
#   DEVICE=gpu FRAMES=20000 bash scripts/pretrain_synthetic.sh  # server: 20k frames on 4 GPUs
#   DEVICE=gpu MODE=supervised FRAMES=20000 bash scripts/pretrain_synthetic.sh
#
# Variables (default): DEVICE (cpu | gpu), MODE (fcmae | supervised), FRAMES (cpu 2000, gpu 20000),
# SEED (1000: use another seed than your test data's), OUT (outputs/synthetic_pretrain:
# corpus/, corpus_split/ and one folder per MODE),
# MODEL (convnextv2_atto), EPOCHS (supervised: cpu 10, gpu 60; fcmae: cpu 20, gpu 400),
# INPUT_SIZE (cpu 128, gpu 224), GPUS (4), WORKERS (2: generator processes and data loader workers),
# PYTHON (python), EXTRA_ARGS (appended to the training command), DRY_RUN=1 (print the commands only).
# A second run reuses the corpus and split in OUT and resumes the training run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/launcher_common.sh
source scripts/launcher_common.sh

PYTHON="${PYTHON:-python}"
DEVICE="${DEVICE:-cpu}"
MODE="${MODE:-fcmae}"
case "$DEVICE" in cpu|gpu) ;; *) echo "error: DEVICE must be cpu or gpu, got '$DEVICE'" >&2; exit 1 ;; esac
case "$MODE" in supervised|fcmae) ;; *) echo "error: MODE must be supervised or fcmae, got '$MODE'" >&2; exit 1 ;; esac
if [ "$DEVICE" = cpu ]; then default_frames=2000; default_size=128; else default_frames=20000; default_size=224; fi
case "$MODE-$DEVICE" in
    supervised-cpu) default_epochs=10 ;; supervised-gpu) default_epochs=60 ;;
    fcmae-cpu) default_epochs=20 ;; fcmae-gpu) default_epochs=400 ;;
esac
FRAMES="${FRAMES:-$default_frames}"
SEED="${SEED:-1000}"
OUT="${OUT:-outputs/synthetic_pretrain}"
MODEL="${MODEL:-convnextv2_atto}"
EPOCHS="${EPOCHS:-$default_epochs}"
INPUT_SIZE="${INPUT_SIZE:-$default_size}"
GPUS="${GPUS:-4}"
WORKERS="${WORKERS:-2}"
EXTRA_ARGS="${EXTRA_ARGS:-}"
if ! [[ "$FRAMES" =~ ^[0-9]+$ ]] || [ "$FRAMES" -lt 200 ]; then
    echo "error: FRAMES must be a whole number >= 200, got '$FRAMES'" >&2; exit 1
fi

corpus="$OUT/corpus"
split="$OUT/corpus_split"
train="$OUT/$MODE"  # both modes share the corpus and its split
run() {  # the launchers called below print (and with DRY_RUN=1 only print) their own command
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "${DRY_RUN:-0}" != 1 ]; then "$@"; fi
}

# the generator's --scale counts frames of the three base classes (3241 at scale 1); the extra
# kinds of --variety add about a fifth, hence 3950 frames per unit of scale
scale="$(awk -v f="$FRAMES" 'BEGIN { printf "%.4f", f / 3950 }')"
sequences=$(( FRAMES / 60 > 16 ? FRAMES / 60 : 16 ))  # >= 4 runs of every extra kind
if [ -d "$corpus" ] && [ -n "$(ls -A "$corpus")" ]; then
    echo "reusing corpus $corpus"
else
    run "$PYTHON" scripts/make_synthetic_rheed.py --out "$corpus" --scale "$scale" --sequences "$sequences" \
        --seed "$SEED" --variety --camera_randomize --workers "$(( WORKERS > 0 ? WORKERS : 1 ))"
fi
if [ -d "$split/train" ]; then
    echo "reusing split $split"
else
    run "$PYTHON" scripts/split_dataset_simple.py --src "$corpus" --dst "$split" --classes fine --by_sequence \
        --ratios 0.85 0.15 0 --seed "$SEED" --no_similarity
fi

if [ "$MODE" = supervised ]; then
    # from scratch on every fine class (flat-surface Laue dots, rings and halos included)
    if [ "$DEVICE" = cpu ]; then
        env PYTHON="$PYTHON" DATA="$split" OUTPUT="$train" EPOCHS="$EPOCHS" INPUT_SIZE="$INPUT_SIZE" \
            NUM_WORKERS="$WORKERS" MODEL="$MODEL" FINETUNE= EXTRA_ARGS="$EXTRA_ARGS" bash scripts/run_finetune_cpu.sh
    else
        env DATA="$split" OUTPUT="$train" EPOCHS="$EPOCHS" INPUT_SIZE="$INPUT_SIZE" GPUS="$GPUS" \
            MODEL="$MODEL" FINETUNE= EXTRA_ARGS="$EXTRA_ARGS" bash scripts/run_finetune_balanced_gpu.sh
    fi
    ckpt="$train/checkpoint-best.pth"
else
    if [ "$DEVICE" = cpu ]; then
        # upstream's blr at a CPU batch of 32 is an lr of 2e-5, too small to move in 20 epochs; 5e-4 is the lr
        # measured for this corpus size (docs/EXPERIMENTS.md section 15)
        # shellcheck disable=SC2206  # EXTRA_ARGS is split on spaces on purpose
        run "$PYTHON" main_pretrain.py --model "$MODEL" --data_path "$split" --device cpu \
            --input_size "$INPUT_SIZE" --epochs "$EPOCHS" --warmup_epochs 1 --batch_size 32 --lr 5e-4 \
            --num_workers "$WORKERS" --pin_mem false "${RHEED_FRAME_INPUT[@]}" \
            --output_dir "$train" --log_dir "$train/tensorboard" $EXTRA_ARGS
    else
        env DATA="$split" OUTPUT="$train" EPOCHS="$EPOCHS" INPUT_SIZE="$INPUT_SIZE" GPUS="$GPUS" \
            MODEL="$MODEL" EXTRA_ARGS="$EXTRA_ARGS" bash scripts/run_pretrain_gpu.sh
    fi
    ckpt="$train/checkpoint-$(( EPOCHS - 1 )).pth"
fi

if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi
echo
echo "synthetic pre-training checkpoint: $ckpt"
echo "fine-tune on your frames with:  FINETUNE=$ckpt DATA=your_split bash scripts/run_finetune_cpu.sh"
