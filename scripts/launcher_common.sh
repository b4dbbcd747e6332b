# Sourced by the launchers (run_finetune_cpu.sh, run_finetune_balanced_gpu.sh, run_pretrain_cpu.sh,
# run_pretrain_gpu.sh), quickstart.sh and pretrain_synthetic.sh: the parts they share, written once.

# How every RHEED launcher (fine-tuning and pre-training alike) turns a file into a frame before any random step:
# every pixel clipped to its brightest neighbour, so the camera's hot pixels do not read as sharp spots
# (section 42); the background subtracted on the whole frame (adaptive: a smooth background surface, so glow
# and a dark screen surround go); frames decoded once (frame cache). Pre-training uses the same, so the
# encoder learns on the input it is fine-tuned on.
RHEED_FRAME_INPUT=(--despeckle true --subtract_background true --background_mode adaptive --frame_cache true)

# The RHEED input pipeline for fine-tuning (docs/EXPERIMENTS.md): crops that keep
# the pattern, windows of half to twice the frame area (zoom in and out, so the
# size of the pattern on the screen, which differs between chambers, is not a cue;
# section 36) that may reach 20 % past the frame edges (a pattern off the screen
# centre; section 43), RHEED augmentations, the frame input above, each frame also
# stored as two random cameras record it (gain, gamma, JPEG; section 34), every frame
# padded to 4:3 before it is squashed to the square input, so a square or 16:9 sensor
# does not distort the pattern (section 44), frozen stem bias, full-scale head init;
# evaluation and predict.py average the input size and 1.125x of it (section 35).
RHEED_FINETUNE_INPUT=(--crop_scale 0.5 2.0 --crop_shift 0.2 --pad_aspect 4:3 --aug_mode rheed "${RHEED_FRAME_INPUT[@]}"
    --camera_aug true --train_stem_bias false --head_init_scale 1.0 --tta_scales 1 1.125)

# The power on the background-free, scaled pattern for fine-tuning (--pattern_gamma, section 47): from scratch 2
# (squared: streaks and spots stand out of the faint residue around them); from a FINETUNE checkpoint 1, the
# linear input that FCMAE pre-training uses (pre-training on squared frames, or fine-tuning a linear one on
# them, was worse). PATTERN_GAMMA overrides.
finetune_pattern_gamma() {
    if [ -n "${FINETUNE:-}" ]; then echo "${PATTERN_GAMMA:-1}"; else echo "${PATTERN_GAMMA:-2}"; fi
}

# Stops (or, with DRY_RUN=1, warns) when FINETUNE names a missing file.
check_finetune_file() {
    if [ -n "$FINETUNE" ] && [ ! -f "$FINETUNE" ]; then
        local msg="FINETUNE=$FINETUNE not found; download the official checkpoints on a connected machine with 'bash scripts/download_weights.sh' and copy weights/ here, point FINETUNE at your own FCMAE checkpoint, or set FINETUNE= to train from scratch"
        if [ "${DRY_RUN:-0}" != 1 ]; then echo "error: $msg" >&2; exit 1; fi
        echo "warning (dry run): $msg" >&2
    fi
}

# Stops (unless DRY_RUN=1) when DATA has no train/ folder: pre-training reads only <DATA>/train.
check_train_folder() {
    if [ "${DRY_RUN:-0}" != 1 ] && [ ! -d "$DATA/train" ]; then
        echo "error: $DATA/train not found; make the split with scripts/split_dataset_simple.py first" >&2
        exit 1
    fi
}

# Prints the command as one line, then (unless DRY_RUN=1) creates OUTPUT and runs it.
print_and_run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi
    mkdir -p "$OUTPUT"
    exec "$@"
}
