"""A copy of a split whose training folder also holds every frame re-recorded by K random cameras - the
experiment of docs/EXPERIMENTS.md section 33 (camera augmentation before background subtraction).

The project's training transform subtracts the background first and augments afterwards, so it cannot show
the model what a saturating camera or lossy compression does to a raw frame. Here each training frame (the
8-bit view the project's loader makes of it) gets K variants, each drawn independently by
rheed.augment.camera_response: camera gamma 0.5-0.8 (p 0.3), gain 1.3-3 with saturation at 255 (p 0.6, off
with --no_gain), JPEG quality 30-90 (p 0.5); at least one of them. The originals and the val/test folders are
linked, not copied; labels and runs stay the same. `main_finetune.py --camera_aug true` draws the same cameras
inside the training pipeline (section 34); this script is the offline form that section 33 used.

    python benchmarks/camera_augmented_split.py --data SPLIT --out SPLIT_CAM [--variants 2] [--no_gain] [--seed 0]
    EPOCHS=10 DATA=SPLIT_CAM EXTRA_ARGS="--warmup_steps 14" bash scripts/run_finetune_cpu.sh

With K variants a training epoch has K + 1 times as many frames: divide EPOCHS by K + 1 and give the warm-up
in steps to keep the launcher's schedule (30 epochs of 229 frames at batch 16 = 420 steps, 14 of warm-up).
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from camera_robustness import file_suffix, labelled_frames, write_frame  # noqa: E402
from rheed.augment import camera_response  # noqa: E402
from rheed.imageio import rheed_loader  # noqa: E402


def write_split(data: Path, out: Path, variants: int, gain: bool = True, seed: int = 0) -> int:
    """Writes out/train (links to the originals plus the variants) and links out/val, out/test; returns the
    number of variants written."""
    frames = labelled_frames(data / "train")
    rng = np.random.default_rng(seed)
    for split in ("val", "test"):
        if (data / split).is_dir():
            out.mkdir(parents=True, exist_ok=True)
            os.symlink((data / split).resolve(), out / split)
    for path, label in frames:
        folder = out / "train" / label
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(path.resolve(), folder / path.name)
        gray = np.asarray(rheed_loader(str(path)).convert("L"), dtype=np.float32)
        for k in range(variants):
            quality, pixels = camera_response(gray, rng, gain)
            fmt = "png" if quality is None else f"jpeg{quality}"
            write_frame(fmt, pixels, folder / f"{path.stem}_cam{k}{file_suffix(fmt)}", rng)
    return len(frames) * variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True,
                        help="split folder with train/<class>/ (val/ and test/ are linked)")
    parser.add_argument("--out", type=Path, required=True, help="new split folder (must not exist yet)")
    parser.add_argument("--variants", type=int, default=2, help="camera variants per training frame")
    parser.add_argument("--no_gain", action="store_true", help="no gain/saturation, only gamma and JPEG")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        sys.exit(f"error: {args.data}/train is not a folder")
    if args.out.exists():
        sys.exit(f"error: {args.out} exists; choose a new --out")
    if args.variants < 1:
        sys.exit(f"error: --variants must be at least 1, got {args.variants}")
    written = write_split(args.data, args.out, args.variants, gain=not args.no_gain, seed=args.seed)
    print(f"{written} camera variants of {written // args.variants} training frames written to {args.out}/train")


if __name__ == "__main__":
    main()
