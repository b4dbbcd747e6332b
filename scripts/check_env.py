"""Self-check of the software and hardware before a long run.

One line per check, `PASS <name>: <detail>` or `FAIL <name>: <detail>`, and a
non-zero exit status when any check fails. Nothing is downloaded.

    python scripts/check_env.py --cpu                        # laptop / CI subset
    python scripts/check_env.py --output_dir outputs --data_path data_rheed_split   # GPU server
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.envcheck import run_checks  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser("Environment self-check", add_help=True)
    parser.add_argument("--cpu", action="store_true",
                        help="run only the CPU subset (versions, imports, model, gloo DDP, disk, data)")
    parser.add_argument("--output_dir", default="outputs", help="directory whose free disk space is checked")
    parser.add_argument("--min_free_gb", type=float, default=10.0, help="minimum free space in --output_dir")
    parser.add_argument("--data_path", default="",
                        help="split root to check: <data_path>/{train,val,test}/<class>/<images>")
    parser.add_argument("--model", default="convnextv2_atto", help="model used for the forward/backward checks")
    parser.add_argument("--input_size", type=int, default=64, help="image size of the forward/backward checks")
    parser.add_argument("--gpus", type=int, default=0,
                        help="expected number of GPUs (0: at least one); ignored with --cpu")
    parser.add_argument("--require", nargs="*", default=[], metavar="MODULE",
                        help="extra modules that must be importable")
    parser.add_argument("--only", default="", metavar="NAMES",
                        help="comma-separated check names to run (e.g. imports,data); default: all")
    return parser


# ---------------------------------------------------------------- helpers


def main():
    args = get_args_parser().parse_args()
    sys.exit(run_checks(args))


if __name__ == "__main__":
    main()
