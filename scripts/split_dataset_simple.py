"""Split data_rheed/<fine_class>/ into train/val/test without temporal leakage (see rheed/split.py)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.errors import UserError  # noqa: E402
from rheed.split import DEFAULT_GAP, split_dataset  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--src', default='data_rheed', help='folder with one sub-folder per fine class')
    parser.add_argument('--dst', default='data_rheed_split', help='output folder (train/val/test/<class>/)')
    parser.add_argument('--ratios', type=float, nargs=3, default=[0.7, 0.15, 0.15], metavar=('TRAIN', 'VAL', 'TEST'),
                        help='split ratios, normalised to sum 1 (e.g. 7 2 1)')
    parser.add_argument('--gap', type=int, default=DEFAULT_GAP,
                        help='frames left out between blocks of different splits in one sequence')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--by_sequence', '--by-sequence', action='store_true',
                        help='assign whole sequences (growth runs) to one split instead of blocks')
    parser.add_argument('--classes', choices=['binary', 'fine'], default='binary',
                        help='binary: smooth/rough folders; fine: one folder per source class')
    parser.add_argument('--pattern', default=None,
                        help='regex with named groups (?P<sequence>...) and (?P<frame>...) searched in the file stem')
    parser.add_argument('--frames_csv', '--frames-csv', default=None,
                        help='CSV with columns file,sequence,frame (file relative to --src or a bare name)')
    parser.add_argument('--folds', type=int, default=0,
                        help='grouped k-fold by growth sequence: write DST/fold_0 .. fold_{K-1}, each a full split '
                             '(test = one fold, val = the next, train = the rest; every frame tested once)')
    parser.add_argument('--temporal_layer', '--temporal-layer', action='store_true',
                        help='split layer_smooth by time as well (recommended when its frames come from videos)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a previous split in --dst (only its train/val/test folders and reports)')
    parser.add_argument('--copy', action='store_true', help='copy files instead of hard-linking them')
    parser.add_argument('--no_similarity', '--no-similarity', action='store_true',
                        help='skip the nearest-neighbour similarity of val/test frames to the training set')
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    options = dict(ratios=args.ratios, gap=args.gap, seed=args.seed, by_sequence=args.by_sequence,
                   classes=args.classes, pattern=args.pattern, overwrite=args.overwrite,
                   temporal_layer=args.temporal_layer, frames_csv=args.frames_csv, copy=args.copy,
                   similarity=not args.no_similarity)
    try:
        if args.folds:
            for k in range(args.folds):
                print(f"===== fold {k} of {args.folds}: {Path(args.dst) / f'fold_{k}'}")
                split_dataset(args.src, str(Path(args.dst) / f'fold_{k}'), fold=(k, args.folds), **options)
        else:
            split_dataset(args.src, args.dst, **options)
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == '__main__':
    main()
