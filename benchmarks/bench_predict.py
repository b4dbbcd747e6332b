"""End-to-end monitoring speed: frames per second of scripts/predict.py's path (decode + preprocess + model +
CSV), for a folder of PNG frames, a multi-page 12-bit TIFF and a lossless FFV1 video of the same frames.

A randomly initialised classifier checkpoint (speed does not depend on the weights) at `--input_size` is
written to a temporary folder; the frames are synthetic 656 x 492 growth-run frames.

    python benchmarks/bench_predict.py [--model convnextv2_atto] [--input_size 224] [--frames 128] [--threads 2]
        [--launcher run_finetune_cpu.sh]   # exactly what that launcher's defaults store: background, despeckle,
                                           # padding to 4:3, the test-time views
        [--background_mode adaptive]       # only the background subtraction of the RHEED pipeline
        [--compile]                        # predict.py --compile
"""
import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from models import convnextv2  # noqa: E402
from rheed.augment import BACKGROUND_MODES  # noqa: E402
from rheed.inference import load_classifier  # noqa: E402
from rheed.predict import PredictOptions, predict_input  # noqa: E402
from rheed.synthetic import make_growth_run, quantize  # noqa: E402


def write_inputs(folder: Path, frames: list) -> dict:
    png = folder / "frames"
    png.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(png / f"run1_{i:06d}.png")
    stack = folder / "stack.tif"
    tifffile.imwrite(stack, np.stack([(f.astype(np.uint16) * 16) for f in frames]), photometric="minisblack")
    inputs = {"folder of PNG": png, "12-bit TIFF stack": stack}
    try:
        import av
        video = folder / "run.mkv"
        with av.open(str(video), "w") as container:
            stream = container.add_stream("ffv1", rate=25)
            stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "gray"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
            container.mux(stream.encode(None))
        inputs["FFV1 video"] = video
    except ImportError:
        print("PyAV not installed: no video row")
    return inputs


def launcher_args(script: str, model: str, input_size: int) -> dict:
    """The arguments `scripts/<script>` passes to main_finetune.py with its defaults (from scratch), as stored in a
    checkpoint it trains."""
    import main_finetune
    env = {k: v for k, v in os.environ.items() if k not in ("EXTRA_ARGS", "FINETUNE", "INPUT_SIZE", "MODEL")}
    env.update(DRY_RUN="1", FINETUNE="", INPUT_SIZE=str(input_size), MODEL=model)
    proc = subprocess.run(["bash", str(REPO / "scripts" / script)], env=env, capture_output=True, text=True,
                          check=True)
    words = shlex.split(next(line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")))
    args = main_finetune.get_args_parser().parse_args(words[words.index("main_finetune.py") + 1:])
    return vars(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="convnextv2_atto")
    parser.add_argument("--input_size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--background_mode", default="", choices=("",) + BACKGROUND_MODES,
                        help="empty: upstream's evaluation transform; else a checkpoint of the RHEED launchers "
                             "(--aug_mode rheed --subtract_background true with this mode)")
    parser.add_argument("--launcher", default="", choices=("", "run_finetune_cpu.sh", "run_finetune_balanced_gpu.sh"),
                        help="store the evaluation settings this launcher's defaults train with (at --input_size and "
                             "--model); replaces --background_mode")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (as predict.py --compile); "
                        "a warm-up pass over the folder compiles it before the timed passes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = [np.asarray(f) for f in make_growth_run(args.frames, args.frames // 2, seed=0)]
    frames = [f if f.dtype == np.uint8 else quantize(f) for f in frames]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "checkpoint-best.pth"
        if args.launcher:
            stored = launcher_args(args.launcher, args.model, args.input_size)
            pipeline = f"{args.launcher} defaults"
        else:
            stored = {"model": args.model, "input_size": args.input_size, "data_set": "RHEED"}
            if args.background_mode:
                stored.update(aug_mode="rheed", subtract_background=True, background_mode=args.background_mode)
            pipeline = f"background {args.background_mode or 'none (upstream transform)'}"
        stored["nb_classes"] = 2
        model = convnextv2.__dict__[args.model](num_classes=2)
        torch.save({"model": model.state_dict(), "class_names": ["rough", "smooth"], "epoch": 0, "args": stored}, ckpt)
        classifier = load_classifier(ckpt)
        if args.compile:   # compiled on an untimed batch
            classifier.compile(args.batch_size)
            classifier.predict_images([classifier.image_from_array(f) for f in frames[:args.batch_size]])
        print(f"{args.model}, {args.input_size} px, batch {args.batch_size}, {torch.get_num_threads()} torch threads, "
              f"{args.frames} frames of {frames[0].shape[1]}x{frames[0].shape[0]}, "
              f"{pipeline}")
        print("| input | frames/s (decode + model) |")
        print("|---|---|")
        for name, path in write_inputs(tmp, frames).items():
            summary = predict_input(classifier, path, tmp / f"out_{path.stem}",
                                    PredictOptions(batch_size=args.batch_size), progress=False)
            print(f"| {name} | {summary['frames_per_second']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
