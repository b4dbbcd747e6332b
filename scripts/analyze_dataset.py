"""Summarise a RHEED dataset (class folders or a train/val/test split): JSON + overview figure."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.analysis import analyze_dataset, format_analysis  # noqa: E402
from rheed.errors import UserError  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('data_dir', help='data_rheed/ (one folder per class) or a split folder (train/val/test)')
    parser.add_argument('--out', default=None,
                        help='output folder (default: outputs/dataset_analysis/<name of DATA_DIR>)')
    parser.add_argument('--samples', type=int, default=6, help='sample frames per class in the figure')
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        result = analyze_dataset(args.data_dir, args.out, samples_per_class=args.samples)
    except UserError as e:
        sys.exit(f"error: {e}")
    print(format_analysis(result), end='')
    print('wrote ' + ', '.join(result['outputs']))


if __name__ == '__main__':
    main()
