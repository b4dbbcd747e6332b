"""What the figure-writing scripts share: the --out/--lang/--dpi options and one-line errors."""
import argparse
import sys
from pathlib import Path
from typing import Callable

from rheed.errors import UserError


def add_figure_options(parser: argparse.ArgumentParser, default_out: Path | None, out_help: str) -> None:
    parser.add_argument("--out", type=Path, default=default_out, help=out_help)
    parser.add_argument("--lang", choices=("en", "zh"), default="en",
                        help="figure label language; zh needs an installed Chinese font, else English is used")
    parser.add_argument("--dpi", type=int, default=300, help="PNG resolution")


def run_or_exit(fn: Callable, *args, **kwargs):
    """fn(*args, **kwargs); a foreseeable failure (bad input, unreadable or corrupt file, full disk, an output
    path that is a file) ends the script with one 'error: ...' line and exit status 1."""
    try:
        return fn(*args, **kwargs)
    except UserError as e:
        sys.exit(f"error: {e}")
    except OSError as e:  # includes PIL's UnidentifiedImageError and truncated-file errors
        where = f"{e.filename}: " if getattr(e, "filename", None) and str(e.filename) not in str(e) else ""
        sys.exit(f"error: {where}{' '.join(str(e).split())}")
