"""Grad-CAM heatmaps of a fine-tuned classifier, overlaid on frames, for the predicted and the other class."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.cli import add_figure_options, run_or_exit  # noqa: E402
from rheed.gradcam import DEFAULT_LAYER, run_gradcam  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint-best.pth (or any) written by main_finetune.py")
    parser.add_argument("--images", nargs="+", required=True, help="frames to explain (one figure row each)")
    parser.add_argument("--layer", default=None,
                        help=f"layer whose feature map is weighted (default: the last stage, {DEFAULT_LAYER} for "
                             f"ConvNeXt-V2, body.layer4 or body.features for the torchvision baselines)")
    parser.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights (model_ema)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_figure_options(parser, Path("gradcam"), "output folder")
    return parser


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    written = run_or_exit(run_gradcam, args.checkpoint, args.images, args.out, layer=args.layer, use_ema=args.ema,
                          device=args.device, lang=args.lang, dpi=args.dpi)
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
