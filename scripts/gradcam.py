"""Heat maps of what a fine-tuned classifier bases its decision on, overlaid on frames: Grad-CAM for the
predicted and the other class, or occlusion sensitivity of the predicted class (--method occlusion)."""
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
    parser.add_argument("--method", choices=("gradcam", "occlusion"), default="gradcam",
                        help="gradcam: gradient-weighted feature map of --layer (coarse: 4x4 cells at 128 px); "
                             "occlusion: hide one patch at a time and record how the predicted class's log-odds "
                             "change (red: evidence for it, blue: against; one forward pass per patch position)")
    parser.add_argument("--patch", type=int, default=None,
                        help="occlusion patch side in input pixels (default: a tenth of the input size, 12 at 128)")
    parser.add_argument("--stride", type=int, default=None,
                        help="occlusion patch step in input pixels (default: a third of the patch, 4 at 128)")
    parser.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights (model_ema)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_figure_options(parser, Path("gradcam"), "output folder")
    return parser


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    written = run_or_exit(run_gradcam, args.checkpoint, args.images, args.out, layer=args.layer, use_ema=args.ema,
                          device=args.device, lang=args.lang, dpi=args.dpi, method=args.method, patch=args.patch,
                          stride=args.stride)
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
