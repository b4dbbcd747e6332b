"""Choose the unlabeled frames worth labelling next: the classifier's most uncertain frames plus a diverse
rest, without near-duplicates (neighbouring frames of a video, or near-identical features). Writes
selection.csv (fill in its 'label' column, then run scripts/label_frames.py) and a contact sheet."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.cli import run_or_exit  # noqa: E402
from rheed.errors import UserError  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="fine-tuned checkpoint (e.g. outputs/ft/checkpoint-best.pth)")
    parser.add_argument("--pool", nargs="+", required=True,
                        help="unlabeled frames: folders (searched recursively), videos or multi-page TIFF stacks; "
                             "chosen video/stack frames are written to <out>/frames/ as PNG")
    parser.add_argument("--budget", type=int, required=True, help="how many frames to choose")
    parser.add_argument("--out", type=Path, required=True, help="output folder (selection.csv, selection.png)")
    parser.add_argument("--uncertain_fraction", type=float, default=0.5,
                        help="share of the budget taken by the most uncertain frames; the rest is chosen for diversity")
    parser.add_argument("--min_gap", type=int, default=5,
                        help="frames of one sequence closer than this (in frame numbers) count as duplicates")
    parser.add_argument("--max_similarity", type=float, default=0.98,
                        help="frames whose feature cosine similarity reaches this count as duplicates")
    parser.add_argument("--pattern", default=None, help="file-name regex with named groups sequence and frame")
    parser.add_argument("--mc_passes", type=int, default=0,
                        help="> 0: Monte-Carlo drop-path, this many stochastic passes per frame; the uncertain frames "
                             "are then those the passes disagree on most (mutual information; default 0: margin)")
    parser.add_argument("--mc_drop_path", type=float, default=0.1,
                        help="stochastic-depth rate of the Monte-Carlo passes (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="breaks ties (the selection is deterministic per seed)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier selection in --out")
    return parser


def run(args) -> Path:
    from rheed import selection
    from rheed.inference import load_classifier
    from rheed.runs import check_output_dir

    check_output_dir(args.out, "--out", min_free_mb=10)
    csv_path = args.out / "selection.csv"
    if csv_path.exists() and not args.overwrite:
        raise UserError(f"{csv_path} exists (it may hold your labels); choose another --out or pass --overwrite")
    if args.mc_passes < 0 or (args.mc_passes > 0 and not 0 < args.mc_drop_path < 1):
        raise UserError("--mc_passes must be >= 0 and --mc_drop_path between 0 and 1")
    classifier = load_classifier(args.checkpoint, device=args.device,
                                 drop_path=args.mc_drop_path if args.mc_passes else 0.0)
    frames, probs, features, disagreement = selection.score_pool(classifier, args.pool, args.pattern,
                                                                 args.batch_size, args.mc_passes)
    print(f"scored {len(frames)} frames")
    picks = selection.select(frames, probs, features, args.budget, args.uncertain_fraction, args.min_gap,
                             args.max_similarity, args.seed, uncertainty=disagreement)
    args.out.mkdir(parents=True, exist_ok=True)
    exported = selection.export_stream_frames(classifier, frames, [i for i, _ in picks], args.out / "frames")
    for i, path in exported.items():  # the CSV and the sheet point at the exported PNG; sequence/frame keep the source
        frames[i] = selection.PoolFrame(path, frames[i].sequence, frames[i].frame)
    selection.write_selection(csv_path, frames, probs, classifier.class_names, picks, disagreement)
    selection.save_contact_sheet(args.out / "selection.png", [frames[i].path for i, _ in picks],
                                 [f"{reason} {Path(frames[i].path).name}" for i, reason in picks])
    n_uncertain = sum(reason == "uncertain" for _, reason in picks)
    print(f"chose {len(picks)} of {len(frames)} frames ({n_uncertain} uncertain, {len(picks) - n_uncertain} diverse): "
          f"{csv_path}; fill in its 'label' column, then run scripts/label_frames.py")
    return csv_path


def main(argv=None) -> None:
    run_or_exit(run, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    main()
