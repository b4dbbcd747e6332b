"""Compare fine-tuning runs: one table of test metrics (CSV + LaTeX, mean ± sample std over seeds) and an
overlay of the validation macro-F1 curves."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.compare import compare_runs  # noqa: E402
from rheed.cli import add_figure_options, run_or_exit  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="output_dir of each main_finetune.py run")
    parser.add_argument("--group_by", "--group-by", default=None, metavar="REGEX",
                        help=r"group runs by this regex on the run folder name: its first group (or the whole "
                             r"match) is the group, e.g. '(.*)_seed\d+'; default: one row per run")
    add_figure_options(parser, None, "output folder (default: 'comparison' next to the first run directory)")
    return parser


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    written = run_or_exit(compare_runs, args.run_dirs, args.out, group_by=args.group_by, lang=args.lang,
                          dpi=args.dpi)
    print(f"compared {len(args.run_dirs)} runs: {', '.join(str(p) for p in written)}")


if __name__ == "__main__":
    main()
