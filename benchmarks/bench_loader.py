"""Frame loading speed: what a DataLoader worker spends per frame before the network, with and without the
frame cache (rheed/frame_cache.py).

Writes `--frames` synthetic frames per format into a temporary folder (8-bit PNG and 12-bit TIFF, at each
`--sizes` W x H), then times one pass over them per path, single process:
- decode: the project loader only (PIL / tifffile decode + bit scaling to 8 bit);
- decode+bg: loader + background subtraction (the launchers' adaptive mode; what it would add per epoch);
- cache build: the one-off pass that fills the cache (decode + background subtraction + write);
- cached: reading the frame back from a full-resolution cache (--frame_cache_size 0);
- cached+crop: that plus the training crop and resize to `--input_size` and ToTensor (the geometry of the
  RHEED training transform), from the full-resolution cache and from one stored at the default short side
  (twice the input size).
Frames per second per worker are reported (median of `--repeats` passes).

    python benchmarks/bench_loader.py [--frames 64] [--sizes 656x492 780x580] [--input_size 224] [--repeats 3]
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from torchvision import transforms  # noqa: E402

from rheed.augment import RandomCropKeepingAspect, SubtractBackground  # noqa: E402
from rheed.frame_cache import FrameCache, cache_short_side  # noqa: E402
from rheed.imageio import make_loader  # noqa: E402
from rheed.synthetic import quantize, random_params, render_frame  # noqa: E402


def write_frames(folder: Path, n: int, width: int, height: int, fmt: str) -> list[str]:
    rng = np.random.default_rng(0)
    params = random_params(rng, width=width, height=height)
    paths = []
    for i in range(n):
        frame = render_frame(params, progress=i / max(n - 1, 1), rng=rng, t=i)
        path = folder / f"seq001_{i:06d}.{'png' if fmt == 'png8' else 'tif'}"
        if fmt == "png8":
            Image.fromarray(quantize(frame)).save(path)
        else:
            tifffile.imwrite(path, quantize(frame, bits=12), photometric="minisblack")
        paths.append(str(path))
    return paths


def frames_per_second(fn, paths, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for p in paths:
            fn(p)
        times.append(time.perf_counter() - start)
    return len(paths) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--sizes", nargs="+", default=["656x492", "780x580"])
    parser.add_argument("--input_size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    loader, background = make_loader("percentile"), SubtractBackground("adaptive")
    crop = transforms.Compose([RandomCropKeepingAspect(args.input_size), transforms.ToTensor()])
    short_side = cache_short_side(None, args.input_size)
    print(f"| format | size | decode (frames/s) | decode+bg | cache build | cached | cached+crop, full cache | "
          f"cached+crop, cache at {short_side} px |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        for fmt in ("png8", "tiff12"):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "frames"
                folder.mkdir()
                paths = write_frames(folder, args.frames, width, height, fmt)
                decode = frames_per_second(loader, paths, args.repeats)
                decode_bg = frames_per_second(lambda p: background(loader(p)), paths, args.repeats)
                cache = FrameCache(Path(tmp) / "cache", {"fmt": fmt})
                start = time.perf_counter()
                cache.build(paths, loader, background)
                build = len(paths) / (time.perf_counter() - start)
                cache.open()
                cached = frames_per_second(cache, paths, args.repeats)
                cropped = frames_per_second(lambda p: crop(cache(p)), paths, args.repeats)
                small = FrameCache(Path(tmp) / "small", {"fmt": fmt}, short_side)
                small.build(paths, loader, background)
                small.open()
                cropped_small = frames_per_second(lambda p: crop(small(p)), paths, args.repeats)
                print(f"| {fmt} | {size} | {decode:.0f} | {decode_bg:.0f} | {build:.0f} | {cached:.0f} | "
                      f"{cropped:.0f} | {cropped_small:.0f} |", flush=True)


if __name__ == "__main__":
    main()
