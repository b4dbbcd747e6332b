"""Put the frames of a filled-in selection.csv (from scripts/select_frames.py) into class folders:
<dst>/<label>/<file name>, hard-linked (or copied). Unknown labels, missing frames and existing files are
refused before anything is placed; the source frames are never changed."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rheed.cli import run_or_exit  # noqa: E402
from rheed.selection import place_labelled  # noqa: E402

DEFAULT_LABELS = ("layer_smooth", "island_smooth", "island_rough")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--csv", type=Path, required=True, help="selection.csv with its 'label' column filled in")
    parser.add_argument("--dst", type=Path, default=Path("data_rheed"),
                        help="dataset folder with one sub-folder per class (default: data_rheed)")
    parser.add_argument("--labels", nargs="+", default=list(DEFAULT_LABELS),
                        help="allowed labels = class folder names (default: the fine classes of the split tool)")
    parser.add_argument("--copy", action="store_true", help="copy the frames instead of hard-linking them")
    return parser


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    counts = run_or_exit(place_labelled, args.csv, args.dst, args.labels, args.copy)
    print(f"placed {sum(counts.values())} frames in {args.dst}: "
          + ", ".join(f"{label} {n}" for label, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
