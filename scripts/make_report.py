"""Figures and tables (PNG + PDF, CSV + LaTeX) for one fine-tuning or pre-training run directory."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.cli import add_figure_options, run_or_exit  # noqa: E402
from rheed.report import make_report  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path, help="output_dir of main_finetune.py or main_pretrain.py")
    add_figure_options(parser, None, "where to write the report (default: RUN_DIR/report)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="the split's manifest.csv for the per-fine-class breakdown (default: looked up in "
                             "the run's data_path and the folders above the predicted images)")
    parser.add_argument("--n_wrong", type=int, default=16, help="how many wrong test frames to show")
    return parser


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    written = run_or_exit(make_report, args.run_dir, args.out, lang=args.lang, manifest=args.manifest, dpi=args.dpi,
                          n_wrong=args.n_wrong)
    print(f"report of {args.run_dir}: {len(written)} files in {written[0].parent}")
    for path in written:
        print(f"  {path.name}")


if __name__ == "__main__":
    main()
