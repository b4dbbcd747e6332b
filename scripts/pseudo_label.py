"""One round of self-training data: label the unlabeled frames of growth videos with a fine-tuned classifier
where it is confident and the neighbouring frames agree, and write a new split = your labelled split plus
those frames in train/ (val/ and test/ unchanged). Every decision goes to pseudo_labels.csv. Then fine-tune
on the new split as usual; repeat with the new checkpoint for another round (docs/DATA.md)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.cli import run_or_exit  # noqa: E402
from rheed.errors import UserError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="fine-tuned checkpoint (e.g. outputs/ft/checkpoint-best.pth)")
    parser.add_argument("--pool", nargs="+", required=True, help="folders (searched recursively) of unlabeled frames")
    parser.add_argument("--split", type=Path, required=True,
                        help="the labelled split the checkpoint was trained on (train/, val/, test/)")
    parser.add_argument("--out", type=Path, required=True, help="new split folder to write (must be new or empty)")
    parser.add_argument("--threshold", type=float, default=0.95,
                        help="minimum class probability, averaged over the frame and its neighbours (default 0.95)")
    parser.add_argument("--window", type=int, default=2,
                        help="neighbours within this many frame numbers of the same sequence must agree (default 2; "
                             "0 judges every frame alone)")
    parser.add_argument("--pattern", default=None, help="file-name regex with named groups sequence and frame")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--copy", action="store_true", help="copy files instead of hard-linking them")
    return parser


def run(args) -> Path:
    import numpy as np

    from rheed import pseudo_label
    from rheed.imageio import list_images, verify_files
    from rheed.inference import load_classifier
    from rheed.runs import check_output_dir
    from rheed.selection import pool_frame

    if not 0.5 <= args.threshold <= 1.0:
        raise UserError(f"--threshold must be between 0.5 and 1, got {args.threshold}")
    if args.window < 0:
        raise UserError(f"--window must be >= 0, got {args.window}")
    if not (args.split / "train").is_dir():
        raise UserError(f"{args.split}/train not found; --split is the labelled split the checkpoint was trained on")
    check_output_dir(args.out, "--out", min_free_mb=10)
    if args.out.is_dir() and any(args.out.iterdir()):
        raise UserError(f"{args.out} exists and is not empty; choose a new --out (earlier rounds are kept)")
    classifier = load_classifier(args.checkpoint, device=args.device)
    from datasets import class_folders  # after load_classifier, which makes timm importable
    split_classes = class_folders(args.split / "train")
    if sorted(split_classes) != sorted(classifier.class_names):
        raise UserError(f"the checkpoint's classes {classifier.class_names} differ from {args.split}/train's "
                        f"{split_classes}")
    paths = sorted({p for folder in args.pool for p in list_images(folder)})
    paths = pseudo_label.usable_pool(paths, args.split)
    paths, _ = verify_files(paths, skip_corrupt=True)
    if not paths:
        raise UserError(f"no usable frames in {', '.join(args.pool)}")
    print(f"scoring {len(paths)} frames")
    probs = np.concatenate([classifier.predict_paths(paths[s:s + args.batch_size])
                            for s in range(0, len(paths), args.batch_size)])
    frames = [pool_frame(p, args.pattern) for p in paths]
    result = pseudo_label.temporal_accept(frames, probs, args.threshold, args.window)
    counts = pseudo_label.build_self_training_split(args.split, args.out, frames, result[0], result[3],
                                                    classifier.class_names, args.copy)
    pseudo_label.write_pseudo_csv(args.out / "pseudo_labels.csv", frames, probs, classifier.class_names, result)
    print(f"accepted {int(result[3].sum())} of {len(paths)} frames "
          f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'}); new split {args.out} "
          f"(pseudo-labelled frames are train/<class>/pseudo__*, decisions in {args.out / 'pseudo_labels.csv'})")
    print(f"next: DATA={args.out} OUTPUT=<new run> bash scripts/run_finetune_cpu.sh")
    return args.out


def main(argv=None) -> None:
    run_or_exit(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    main()
