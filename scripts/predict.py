"""Classify the frames of a growth run (image, folder, multi-page TIFF, video) or watch a camera folder."""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import threading

from rheed.errors import UserError


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("RHEED growth monitoring: per-frame smooth/rough prediction", add_help=True)
    parser.add_argument("--checkpoint", required=True, help="fine-tuned checkpoint (e.g. outputs/ft/checkpoint-best.pth)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="an image, a folder of frames, a multi-page TIFF or a video file")
    source.add_argument("--watch", metavar="DIR", help="follow a folder that a camera writes frames into")
    parser.add_argument("--out", default=None, help="output folder (default: <input>_predictions next to the input)")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in --out")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights (model_ema)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the network (faster inference after a compilation of up to a minute or "
                             "two at the first batch; batches are padded to --batch_size so it compiles once)")
    parser.add_argument("--pattern", default=None,
                        help="regex with a named group 'frame' (and optionally 'sequence') for frame numbers in file "
                             "names; default: the last run of digits in the name")
    parser.add_argument("--positive_class", default=None,
                        help="class whose probability is tracked (default: 'rough', or the one class named *rough*)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="probability threshold for the positive class (default: the one fitted on the validation "
                             "set and stored in the checkpoint, else 0.5)")
    parser.add_argument("--smooth_window", type=int, default=5,
                        help="frames in the causal moving average (1 = no smoothing)")
    parser.add_argument("--persist", type=int, default=10,
                        help="consecutive frames the smoothed probability must stay >= threshold to call the transition")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    watch = parser.add_argument_group("watch mode")
    watch.add_argument("--poll", type=float, default=0.5, help="seconds between folder scans")
    watch.add_argument("--max_frames", type=int, default=None, help="stop after this many frames")
    watch.add_argument("--timeout", type=float, default=None, help="stop when no new frame arrived for this many seconds")
    watch.add_argument("--incomplete_timeout", type=float, default=10.0,
                       help="give up a frame that stays unchanged and undecodable for this many seconds (it is "
                            "listed under 'skipped' in summary.json); frames still being written are retried")
    watch.add_argument("--refresh", type=float, default=10.0, help="seconds between summary/timeline updates")
    return parser


def stored_threshold(classifier, positive_class) -> float:
    """The checkpoint's validation threshold when it belongs to the tracked class, else 0.5."""
    from rheed.predict import resolve_positive_class

    if classifier.threshold is None or classifier.threshold_class is None:
        return 0.5
    tracked = classifier.class_names[resolve_positive_class(classifier.class_names, positive_class)]
    return float(classifier.threshold) if tracked == classifier.threshold_class else 0.5


def main(args: argparse.Namespace) -> None:
    from rheed.inference import load_classifier
    from rheed.predict import PredictOptions, check_out_dir, default_out_dir, predict_input
    from rheed.watch import stop_on_signals, watch_folder

    options = PredictOptions(threshold=0.5 if args.threshold is None else args.threshold,
                             smooth_window=args.smooth_window, persist=args.persist,
                             positive_class=args.positive_class, batch_size=args.batch_size, pattern=args.pattern)
    options.validate()
    check_out_dir(Path(args.out) if args.out else default_out_dir(args.input or args.watch), args.overwrite)
    classifier = load_classifier(args.checkpoint, device=args.device, use_ema=args.ema)
    if args.compile:
        classifier.compile(args.batch_size)
    if args.threshold is None:
        options.threshold = stored_threshold(classifier, options.positive_class)
    if args.watch:
        stop = threading.Event()
        with stop_on_signals(stop):
            watch_folder(classifier, args.watch, args.out, options, overwrite=args.overwrite, poll_interval=args.poll,
                         max_frames=args.max_frames, timeout=args.timeout, refresh=args.refresh, stop=stop,
                         incomplete_timeout=args.incomplete_timeout)
        return
    summary = predict_input(classifier, args.input, args.out, options, overwrite=args.overwrite,
                            progress=not args.no_progress)
    out_dir = Path(summary["output_dir"])
    print(f"{summary['num_frames']} frames ({summary['input_kind']}), {summary['frames_per_second']} frames/s")
    print(f"fraction {summary['positive_class']}: {summary['fraction_positive']:.3f}; "
          f"transition frame: {summary['transition_frame']}")
    print(f"wrote {out_dir / 'predictions.csv'}, {out_dir / 'timeline.png'}, {out_dir / 'summary.json'}")


if __name__ == "__main__":
    try:
        main(get_args_parser().parse_args())
    except UserError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted; partial results were written")
