"""Synthetic generator speed: frames per second of `make_synthetic_rheed.py`, per stage and end to end.

Per-frame stages, one process, at `--size` (median of `--repeats` passes over `--frames` frames):
- render: rheed.synthetic.render_frame (pattern, phosphor blur, shot and read noise), the default look
  and the --variety look (wide ranges; ring runs, the most expensive extra kind), in runs of
  `--run_length` frames as the generator renders them (a run's rotation matrix is built on its first frame);
- camera: rheed.camera.apply_camera on a rendered frame;
- png: quantise and PNG-encode to memory (at the generator's compression level);
End to end: generate_dataset into a temporary folder with 1 and `--workers` processes (`--scale`), in the
default look at `--size` (as 8-bit PNG and as 16-bit TIFF, which costs no compression) and in the quick-start's look (--variety --camera_randomize: every run gets its
own camera, frame size 640x480 to 1388x1038 and sometimes JPEG; the frame rate is not at `--size`).
Run it on a quiet machine: another busy process changes the numbers a lot.

    python benchmarks/bench_synthetic.py [--size 656x492] [--frames 20] [--run_length 10] [--workers 2] [--scale 0.02]
"""
import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")   # as make_synthetic_rheed.py does

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rheed import synthetic as S  # noqa: E402
from rheed import synthetic_dataset as D  # noqa: E402
from rheed.camera import apply_camera, random_camera, screen_response  # noqa: E402
from rheed.synthetic_variety import kind_params, widen  # noqa: E402


def per_second(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="656x492")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--run_length", type=int, default=10,
                        help="frames per run in the render rows (quick-start runs have 8-24)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", type=float, default=0.02)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    rng = np.random.default_rng(0)
    # several runs: brightness (photon count) and geometry change the cost of a frame by up to ~1.5x
    n_runs = -(-args.frames // args.run_length)
    plain = [S.random_params(rng, width, height) for _ in range(n_runs)]
    ring = [kind_params("ring", widen(S.random_params(rng, width, height), rng), rng) for _ in range(n_runs)]
    frame = S.render_frame(plain[0], 0.3, rng)
    cam = random_camera(np.random.default_rng(1))
    response = screen_response(cam, height, width)   # once per run, as the generator does

    def run_of(runs, i):
        if i % args.run_length == 0:      # a new run: its rotation matrix is built again, as in the generator
            S._rotation_warp.cache_clear()
        return runs[i // args.run_length]

    def encode(_):
        Image.fromarray(S.quantize(frame)).save(io.BytesIO(), format="PNG", **D.PNG_OPTIONS)

    rows = [
        ("render, default look", per_second(lambda i: S.render_frame(run_of(plain, i), i / args.frames, rng, t=i),
                                            args.frames, args.repeats)),
        ("render, variety ring run", per_second(lambda i: S.render_frame(run_of(ring, i), 0.95, rng, t=i),
                                                args.frames, args.repeats)),
        ("camera (apply_camera)", per_second(lambda i: apply_camera(frame, cam, response), args.frames, args.repeats)),
        ("png encode", per_second(encode, args.frames, args.repeats)),
    ]
    for look, options in (("", {}), (" --tiff16", {"tiff16": True}),
                          (" varied", {"variety": True, "camera_randomize": True})):
        for workers in sorted({1, args.workers}):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                summary = D.generate_dataset(Path(tmp) / "data", scale=args.scale, sequences=4, seed=0, width=width,
                                             height=height, workers=workers, **options)
                seconds = time.perf_counter() - start
            name = f"generate_dataset{look}, {workers} process(es), {summary['files']} frames"
            rows.append((name, summary["files"] / seconds))
    print(f"synthetic generator at {width}x{height} (frames per second; {os.cpu_count()} CPUs visible)")
    for name, fps in rows:
        print(f"  {name:<48} {fps:8.1f}")


if __name__ == "__main__":
    main()
