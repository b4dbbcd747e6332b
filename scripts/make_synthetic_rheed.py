"""Writes synthetic RHEED growth videos as data_rheed/<fine class>/ (layer_smooth, island_smooth, island_rough;
with --variety also laue_smooth, ring_rough, amorphous_halo; with --transition_band island_transition)."""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Rendering uses many small matrix products; extra BLAS threads only spin and slow it down.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from rheed.errors import UserError  # noqa: E402
from rheed.synthetic_dataset import DEFAULT_SEQUENCES, generate_dataset, save_contact_sheet  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser("Synthetic RHEED growth videos", add_help=True)
    parser.add_argument("--out", default="data_rheed", type=str, help="output folder (must be empty or new)")
    parser.add_argument("--scale", default=0.1, type=float,
                        help="fraction of the real data set size (2003 / 567 / 671 frames)")
    parser.add_argument("--sequences", default=None, type=int,
                        help=f"growth runs per kind (layer runs and island runs; default {DEFAULT_SEQUENCES})")
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--tiff16", action="store_true", help="write 12-bit data in 16-bit TIFF instead of 8-bit PNG")
    parser.add_argument("--width", default=656, type=int)
    parser.add_argument("--height", default=492, type=int)
    parser.add_argument("--camera_randomize", action="store_true",
                        help="give every run its own camera and screen: orientation, screen edge, vignetting, "
                             "gamma, gain, JPEG compression and frame size (rheed/camera.py)")
    parser.add_argument("--variety", action="store_true",
                        help="draw each run's geometry over wide ranges (3-20 streaks, short to long, dim to "
                             "glowing) and add runs of flat-surface Laue dots (laue_smooth), polycrystalline "
                             "rings (ring_rough) and amorphous halos (amorphous_halo, no binary label); "
                             "see rheed/synthetic_variety.py")
    parser.add_argument("--transition_band", default=0.0, type=float,
                        help="give every island run extra frames whose roughness lies within this distance "
                             "(<= 0.25) of the transition at 0.5, written to island_transition: streaks and spots "
                             "mixed, no binary label, left out of binary splits; the labelled frames stay outside "
                             "the band (default 0: off; the quick-start uses 0.1)")
    parser.add_argument("--workers", default=1, type=int,
                        help="processes writing runs in parallel (same files as with 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder (replaces only earlier generated frames)")
    parser.add_argument("--contact_sheet", default=None, type=str, help="also save a PNG grid of sample frames")
    return parser


def main(args):
    start = time.time()

    def report(done, total):
        print(f"run {done}/{total} written ({time.time() - start:.1f} s)", flush=True)

    summary = generate_dataset(args.out, scale=args.scale, sequences=args.sequences, seed=args.seed,
                               tiff16=args.tiff16, width=args.width, height=args.height,
                               overwrite=args.overwrite, progress_callback=report,
                               camera_randomize=args.camera_randomize, variety=args.variety,
                               workers=args.workers, transition_band=args.transition_band)
    counts = ", ".join(f"{name} {n}" for name, n in summary["counts"].items())
    print(f"wrote {summary['files']} frames in {summary['sequences']} sequences to {args.out} ({counts}) "
          f"in {time.time() - start:.1f} s")
    if args.contact_sheet:
        print(f"contact sheet: {save_contact_sheet(args.out, args.contact_sheet)}")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    try:
        main(args)
    except UserError as e:
        sys.exit(f"error: {e}")
