"""FCMAE reconstructions of chosen frames: original, masked input, reconstruction (visible patches pasted
back) and residual heatmap, with MAE/RMSE per frame (figure + CSV)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.cli import add_figure_options, run_or_exit  # noqa: E402
from rheed.fcmae_viz import visualize_fcmae  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint-<epoch>.pth written by main_pretrain.py")
    parser.add_argument("--images", nargs="+", required=True, help="frames to reconstruct (one figure row each)")
    parser.add_argument("--mask_ratio", type=float, default=0.6, help="fraction of 32x32 patches removed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random mask (the same mask for every frame)")
    parser.add_argument("--input_size", type=int, default=None,
                        help="square input size, a multiple of 32 (default: the checkpoint's --input_size)")
    add_figure_options(parser, Path("fcmae_viz"), "output folder")
    return parser


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    written = run_or_exit(visualize_fcmae, args.checkpoint, args.images, args.out, mask_ratio=args.mask_ratio,
                          seed=args.seed, input_size=args.input_size, lang=args.lang, dpi=args.dpi)
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
