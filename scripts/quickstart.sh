#!/usr/bin/env bash
# The whole pipeline on the embedded synthetic data, on the CPU (< 15 min on 2 cores):
#   virtualenv + CPU dependencies -> varied synthetic RHEED videos (many materials, cameras and
#   chambers) -> split by growth run ->
#   FCMAE pre-training (atto; reconstructions shown in the report) -> fine-tuning with the CPU
#   launcher's recipe (class weights auto, best on macro-F1) -> test-split evaluation -> report figures.
#
#   bash scripts/quickstart.sh
#
# Everything is written under QUICK_OUT (default outputs/quickstart):
#   data_rheed/ data_rheed_split/ pretrain/ finetune/ (+ report/ in each run).
# A second run reuses what exists (data, finished runs); delete QUICK_OUT to start over.
# Smaller/faster runs (the test suite uses them): QUICK_SCALE (0.2: data size of the
# synthetic generator), QUICK_SEQUENCES (24: layer and island growth runs each), QUICK_SIZE (128: image size), QUICK_EPOCHS_PRE (5),
# QUICK_EPOCHS (30: fine-tuning), QUICK_BATCH (32: pre-training; fine-tuning uses the launcher's 16), QUICK_WORKERS (2),
# QUICK_FROM_FCMAE=1 (fine-tune from the FCMAE checkpoint instead of from scratch),
# QUICK_PYTHON (an interpreter that already has the requirements: skips the
# virtualenv and pip), VENV (.venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/launcher_common.sh
source scripts/launcher_common.sh

QUICK_OUT="${QUICK_OUT:-outputs/quickstart}"
QUICK_SCALE="${QUICK_SCALE:-0.2}"
QUICK_SEQUENCES="${QUICK_SEQUENCES:-24}"
QUICK_SIZE="${QUICK_SIZE:-128}"
QUICK_EPOCHS_PRE="${QUICK_EPOCHS_PRE:-5}"
QUICK_EPOCHS="${QUICK_EPOCHS:-30}"
QUICK_BATCH="${QUICK_BATCH:-32}"
QUICK_WORKERS="${QUICK_WORKERS:-2}"
VENV="${VENV:-.venv}"

data="$QUICK_OUT/data_rheed"
split="$QUICK_OUT/data_rheed_split"
pre="$QUICK_OUT/pretrain"
ft="$QUICK_OUT/finetune"
start=$SECONDS

step() { echo; echo "[quickstart $(( SECONDS - start ))s] $*"; }
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    "$@"
}

step "1/6 Python environment"
if [ -n "${QUICK_PYTHON:-}" ]; then
    PY="$QUICK_PYTHON"
    echo "using $PY (QUICK_PYTHON set: no virtualenv, no pip)"
else
    if [ ! -x "$VENV/bin/python" ]; then
        run python3 -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
    stamp="$VENV/.requirements.sha256"
    want="$(sha256sum env/requirements.txt | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
        run "$PY" -m pip install --quiet --disable-pip-version-check -r env/requirements.txt
        echo "$want" > "$stamp"
    else
        echo "$VENV already has env/requirements.txt"
    fi
fi

step "2/6 synthetic RHEED videos -> $data"
if [ -d "$data" ] && [ -n "$(ls -A "$data")" ]; then
    echo "reusing $data"
else
    # --variety --camera_randomize: a model trained on one look does not recognise frames from other
    # chambers (docs/EXPERIMENTS.md section 10); flat-surface Laue dots, rings and halos are included.
    # --transition_band 0.1: the frames where streaks and spots are mixed go to island_transition, which the
    # split leaves out, so no smooth/rough label is a coin flip (docs/EXPERIMENTS.md section 27).
    # 24 runs of each kind (about 740 frames in the split): with 12 the training split held a single Laue-dot run and the
    # test score hung on one or two runs (0.85 +- 0.04 over 5 seeds; 24 runs: section 49)
    run "$PY" scripts/make_synthetic_rheed.py --out "$data" --scale "$QUICK_SCALE" --sequences "$QUICK_SEQUENCES" --seed 0 \
        --variety --camera_randomize --transition_band 0.1 --workers "$(( QUICK_WORKERS > 0 ? QUICK_WORKERS : 1 ))"
fi

step "3/6 split by growth sequence -> $split"
if [ -d "$split" ] && [ -n "$(ls -A "$split")" ]; then
    echo "reusing $split"
else
    # whole sequences per split: the test frames come from growth runs the model never saw
    run "$PY" scripts/split_dataset_simple.py --src "$data" --dst "$split" --by_sequence --temporal_layer --seed 0
fi

step "4/6 FCMAE pre-training of convnextv2_atto on $split/train -> $pre"
# lr 5e-4 as measured for FCMAE on RHEED (docs/EXPERIMENTS.md sections 6, 15); upstream's --blr 1.5e-4 at
# batch 32 would be 1.9e-5, too little to learn anything in these ~80 steps (a demo: the model is fine-tuned from scratch)
run "$PY" main_pretrain.py --model convnextv2_atto --data_path "$split" --device cpu \
    --input_size "$QUICK_SIZE" --epochs "$QUICK_EPOCHS_PRE" --warmup_epochs 1 --lr 5e-4 \
    --batch_size "$QUICK_BATCH" --num_workers "$QUICK_WORKERS" --pin_mem false "${RHEED_FRAME_INPUT[@]}" \
    --output_dir "$pre" --log_dir "$pre/tensorboard"
pre_ckpt="$(ls "$pre"/checkpoint-*.pth | grep -E 'checkpoint-[0-9]+\.pth$' | sort -t- -k2 -n | tail -1)"
echo "pre-trained checkpoint: $pre_ckpt"

# From scratch by default: the short pre-training above is a demo (FCMAE starts that fit this budget did
# worse than scratch, docs/EXPERIMENTS.md sections 8, 19); the in-domain route that beats scratch is
# run_pretrain_cpu.sh's ~1600 steps with unlabeled frames (sections 46-49), another ~16 minutes.
# QUICK_FROM_FCMAE=1 starts from the checkpoint above.
start_from=""
if [ "${QUICK_FROM_FCMAE:-0}" = 1 ]; then start_from="$pre_ckpt"; fi
step "5/6 fine-tuning (${start_from:-from scratch}) + test evaluation -> $ft"
run env PYTHON="$PY" FINETUNE="$start_from" DATA="$split" OUTPUT="$ft" EPOCHS="$QUICK_EPOCHS" \
    INPUT_SIZE="$QUICK_SIZE" NUM_WORKERS="$QUICK_WORKERS" bash scripts/run_finetune_cpu.sh

step "6/6 report, FCMAE reconstructions, Grad-CAM and occlusion maps"
run "$PY" scripts/make_report.py "$pre"
run "$PY" scripts/make_report.py "$ft"
# one late-island (rough) and one layer-growth (smooth) test frame: the textbook pair
first_of() { ls "$@" 2>/dev/null | head -n 1; }
last_of() { ls "$@" 2>/dev/null | tail -n 1; }
rough_frame="$(last_of "$split"/test/rough/island_rough__*)"; rough_frame="${rough_frame:-$(first_of "$split"/test/rough/*)}"
smooth_frame="$(first_of "$split"/test/smooth/layer_smooth__*)"; smooth_frame="${smooth_frame:-$(first_of "$split"/test/smooth/*)}"
frames=("$rough_frame" "$smooth_frame")
run "$PY" scripts/visualize_fcmae.py --checkpoint "$pre_ckpt" --images "${frames[@]}" --out "$pre/report/fcmae_viz"
# Grad-CAM on the first stage (stride 4): at 128 px the last stage is 4x4 cells that each see the whole frame and
# cannot show where a spot or streak is; hiding patches (occlusion) shows where the evidence lies and which way
# it pushes (docs/REPORTS.md, EXPERIMENTS.md section 50; about 20 s for the two frames)
run "$PY" scripts/gradcam.py --checkpoint "$ft/checkpoint-best.pth" --images "${frames[@]}" --layer stages.0 \
    --out "$ft/report/gradcam"
run "$PY" scripts/gradcam.py --checkpoint "$ft/checkpoint-best.pth" --images "${frames[@]}" --method occlusion \
    --out "$ft/report/occlusion"

step "done in $(( SECONDS - start ))s"
"$PY" - "$ft" <<'PYEOF'
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
m = json.loads((run / "test_metrics.json").read_text())
print(f"test split ({m['num_samples']} frames, checkpoint {Path(str(m.get('checkpoint', '?'))).name}):")
for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc"):
    if m.get(key) is not None:
        print(f"  {key:<18} {m[key]:.4f}")
for name, c in m["per_class"].items():
    print(f"  {name:<18} precision {c['precision']:.3f}  recall {c['recall']:.3f}  "
          f"f1 {c['f1']:.3f}  n={c['support']}")
print(f"  confusion matrix (rows = true {m['class_names']}, cols = predicted): {m['confusion_matrix']}")
print("outputs:")
print(f"  metrics      {run / 'test_metrics.json'}  (per-epoch validation: {run / 'log.txt'})")
print(f"  predictions  {run / 'predictions_test.csv'}")
print(f"  checkpoint   {run / 'checkpoint-best.pth'}")
report = run / "report"
if report.is_dir():
    print(f"  figures      {report}/  (Grad-CAM in {report / 'gradcam'}/, occlusion maps in {report / 'occlusion'}/)")
    print(f"  FCMAE        {run.parent / 'pretrain' / 'report'}/  (reconstructions in fcmae_viz/)")
print(f"  tensorboard  tensorboard --logdir {run.parent}")
PYEOF
