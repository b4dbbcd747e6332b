"""Keeps pre-training off the frames a split holds out for validation and test.

Two ways a held-out frame can reach pre-training: a folder inside a split's val/ or test/ (refused), and
the split's source folder, whose frames the split hard-linked or copied into val/ and test/ (left out,
found through the split's manifest.csv).
"""
import csv
import os
from pathlib import Path

from rheed.errors import UserError
from rheed.split_layout import HELD_OUT_SPLITS, SPLITS

MANIFEST = 'manifest.csv'


def split_root_of(folder: Path):
    """The split root if `folder` is a val/test folder of a split (its parent holds >= 2 split folders
    or a manifest.csv), else None."""
    if folder.name not in HELD_OUT_SPLITS:
        return None
    parent = folder.parent
    n_splits = sum((parent / name).is_dir() for name in SPLITS)
    if n_splits >= 2 or (parent / MANIFEST).is_file():
        return parent
    return None


def check_no_held_out_folders(files, flag: str) -> None:
    """Raises UserError if any file lies inside a val/test folder of a split."""
    checked = set()
    for f in files:
        directory = Path(f).resolve().parent
        if directory in checked:
            continue
        checked.add(directory)
        for folder in (directory, *directory.parents):
            split_root = split_root_of(folder)
            if split_root is not None:
                raise UserError(f"refusing to pre-train on held-out frames: {flag} includes {folder} (the "
                                f"'{folder.name}' split of {split_root}); point {flag} at the split root or its "
                                f"train/ folder")


def file_id(path: Path):
    """(device, inode) of a file, shared by its hard links; None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def held_out_ids(manifest: Path) -> set:
    """Identities of a split's val/test frames: (device, inode) of the split's files and of their sources
    (a hard link shares the inode), and the resolved source paths (a copy keeps the path)."""
    ids = set()
    with open(manifest, newline='', encoding='utf-8') as f:
        for row in csv.DictReader(f):
            if row.get('split') not in HELD_OUT_SPLITS:
                continue
            for path in (manifest.parent / row.get('path', ''), Path(row.get('source', ''))):
                if path.name:
                    ids.add(file_id(path))
            if row.get('source'):
                ids.add(os.path.realpath(row['source']))
    ids.discard(None)
    return ids


def nearby_manifests(folder: Path) -> list[Path]:
    """manifest.csv files of splits in or next to `folder` (data_rheed and data_rheed_split side by side)."""
    folder = folder.resolve()
    candidates = [folder / MANIFEST, *folder.parent.glob(f'*/{MANIFEST}')]
    return sorted({p for p in candidates if p.is_file()})


def leave_out_held_out_frames(files, folder: Path, flag: str) -> list:
    """`files` without the val/test frames of any split whose manifest sits in or next to `folder`."""
    kept = list(files)
    for manifest in nearby_manifests(folder):
        ids = held_out_ids(manifest)
        if not ids:
            continue
        before = len(kept)
        kept = [f for f in kept if file_id(Path(f)) not in ids and os.path.realpath(f) not in ids]
        if len(kept) < before:
            print(f"Leaving out {before - len(kept)} frames of {flag} that are val/test frames of the split "
                  f"{manifest.parent} ({manifest.name})")
    return kept
