"""Export a fine-tuned classifier to TorchScript and/or ONNX, verified against the eager model."""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse

from rheed.errors import UserError


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("Export a fine-tuned RHEED classifier", add_help=True)
    parser.add_argument("--checkpoint", required=True, help="fine-tuned checkpoint (e.g. outputs/ft/checkpoint-best.pth)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--formats", nargs="+", default=["torchscript", "onnx"], choices=["torchscript", "onnx"])
    parser.add_argument("--input_size", type=int, default=None, help="export resolution (default: the checkpoint's)")
    parser.add_argument("--ema", action="store_true", help="export the EMA weights (model_ema)")
    parser.add_argument("--atol", type=float, default=1e-4, help="max |exported - eager| logit difference allowed")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier exports in --out")
    return parser


def main(args: argparse.Namespace) -> None:
    from rheed.export import export_model
    from rheed.inference import load_classifier

    classifier = load_classifier(args.checkpoint, device="cpu", use_ema=args.ema)
    info = export_model(classifier, args.out, formats=args.formats, input_size=args.input_size, atol=args.atol,
                        overwrite=args.overwrite)
    for fmt, name in info["files"].items():
        diff = info["verification"][f"{fmt}_max_abs_diff"]
        print(f"{fmt}: {Path(args.out) / name} (max |exported - eager| = {diff:.2e})")
    print(f"preprocessing: {Path(args.out) / 'preprocessing.json'}")


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except UserError as e:
        sys.exit(f"error: {e}")
