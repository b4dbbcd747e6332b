"""CPU inference speed of the ConvNeXt-V2 classifiers: per-frame latency (batch 1) and throughput (batched).

Random weights (speed does not depend on them), random 3 x S x S inputs, torch.inference_mode, eval mode,
`--warmup` untimed passes, then `--repeats` timed passes; the median pass time (wall clock) and the median
process CPU time per frame (all torch threads together) are reported. The
preprocessing column times the project's evaluation path for one 656 x 492 8-bit frame (PNG decode +
scaling + resize + center crop + normalize), which runs before the network in scripts/predict.py.

    python benchmarks/bench_inference.py [--models convnextv2_atto convnextv2_nano convnextv2_tiny]
        [--input_size 224] [--batch_sizes 1 16] [--warmup 3] [--repeats 10] [--threads N]
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load_average_1_5_15": None if load is None else [round(v, 2) for v in load],
    }


def time_passes(fn, warmup: int, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds of one call of fn, after warmup calls.

    On a shared machine the wall time grows with the load; the CPU time (summed over torch's threads)
    is the work itself and varies much less."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def bench_model(name: str, input_size: int, batch_sizes, warmup: int, repeats: int) -> dict:
    import timm_compat  # noqa: F401
    from models import convnextv2

    model = convnextv2.__dict__[name](num_classes=2).eval()
    params = sum(p.numel() for p in model.parameters())
    result = {"model": name, "params_m": params / 1e6, "ms_per_frame": {}, "frames_per_s": {}, "cpu_ms_per_frame": {}}
    for bs in batch_sizes:
        x = torch.randn(bs, 3, input_size, input_size)

        def run():
            with torch.inference_mode():
                model(x)

        seconds, cpu_seconds = time_passes(run, warmup, repeats)
        result["ms_per_frame"][bs] = 1000 * seconds / bs
        result["cpu_ms_per_frame"][bs] = 1000 * cpu_seconds / bs
        result["frames_per_s"][bs] = bs / seconds
    return result


def bench_preprocess(input_size: int, warmup: int, repeats: int) -> float:
    """Median ms to load + preprocess one 656 x 492 8-bit PNG frame with the evaluation transform."""
    import timm_compat  # noqa: F401
    import datasets
    from PIL import Image
    from rheed.imageio import make_loader

    transform = datasets.build_transform(False, argparse.Namespace(
        input_size=input_size, crop_pct=None, imagenet_default_mean_and_std=True))
    loader = make_loader("percentile")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "frame.png")
        Image.fromarray(rng.integers(0, 256, (492, 656), dtype=np.uint8), mode="L").save(path)
        return 1000 * time_passes(lambda: transform(loader(path)), warmup, repeats)[0]


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine_info()
    print(f"Machine: {info['cpu']}, {info['logical_cores']} logical cores, torch {info['torch']} "
          f"({info['torch_threads']} threads), Python {info['python']}, {info['os']}")
    print(f"Load average at start (1, 5, 15 min): {info['load_average_1_5_15']}")
    print(f"Input {args.input_size} x {args.input_size}, warm-up {args.warmup}, median of {args.repeats} passes, "
          f"torch.inference_mode, float32\n")
    print("| model | params (M) | " + " | ".join(
        f"batch {bs}: ms/frame | batch {bs}: frames/s | batch {bs}: CPU ms/frame" for bs in args.batch_sizes) + " |")
    print("|" + "---|" * (2 + 3 * len(args.batch_sizes)), flush=True)
    for name in args.models:
        r = bench_model(name, args.input_size, args.batch_sizes, args.warmup, args.repeats)
        cells = [f"{r['ms_per_frame'][bs]:.1f} | {r['frames_per_s'][bs]:.1f} | {r['cpu_ms_per_frame'][bs]:.1f}"
                 for bs in args.batch_sizes]
        print(f"| {r['model']} | {r['params_m']:.1f} | " + " | ".join(cells) + " |", flush=True)
    pre_ms = bench_preprocess(args.input_size, args.warmup, args.repeats)
    print(f"\nPreprocessing (656 x 492 PNG -> {args.input_size} px tensor): {pre_ms:.1f} ms/frame")
    if hasattr(os, "getloadavg"):
        print(f"Load average at the end (1, 5, 15 min): {[round(v, 2) for v in os.getloadavg()]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser("CPU inference benchmark")
    parser.add_argument("--models", nargs="+", default=["convnextv2_atto", "convnextv2_nano", "convnextv2_tiny"])
    parser.add_argument("--input_size", type=int, default=224)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    main(parser.parse_args())
