"""Classical smooth/rough baseline on a split: streak/spot features and a logistic regression (rheed/classical.py).

Writes test_metrics.json and predictions_test.csv like main_finetune.py, so compare_runs.py puts it in the
same table as the networks.

    python scripts/classical_baseline.py --data_path data_rheed_split --output_dir outputs/classical
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.classical import run_classical_baseline  # noqa: E402
from rheed.cli import run_or_exit  # noqa: E402
from rheed.imageio import SCALING_MODES  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", required=True, help="split folder with train/ and test/ class folders")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--bit_scaling", default="percentile", choices=list(SCALING_MODES),
                        help="how 12/16-bit frames become 8 bit (as main_finetune.py)")
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier baseline in --output_dir")
    return parser


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    m = run_or_exit(run_classical_baseline, args.data_path, args.output_dir, bit_scaling=args.bit_scaling,
                    seed=args.seed, overwrite=args.overwrite)
    auc = f", ROC-AUC {m['roc_auc']:.3f}" if m.get("roc_auc") is not None else ""
    print(f"classical baseline: test macro-F1 {m['macro_f1']:.3f}{auc} on {m['num_samples']} frames "
          f"(trained on {m['train_samples']}); {args.output_dir}/test_metrics.json")


if __name__ == "__main__":
    main()
