"""Train/val/test split of RHEED frames without temporal leakage, plus the leakage report.

`data_rheed/<fine_class>/` -> `<dst>/{train,val,test}/<label>/<fine_class>__<name>` + `<dst>/manifest.csv`
(+ `split_report.json`, `split_report.txt`).

Rules:
- 'random' classes (layer_smooth by default): seeded shuffle, exact ratios (largest remainder).
- 'temporal' classes (every other class; layer_smooth too with temporal_layer=True): frames are
  grouped by sequence id and ordered by frame number. In each sequence every class is cut into three
  contiguous blocks with `gap` frames left out between consecutive blocks. The block order alternates
  between the classes of a sequence (ordered by time): the first class runs train|val|test, the next
  test|val|train, the next train|val|test, ... so the blocks that meet at a class boundary (e.g. the
  last island_smooth frames and the first island_rough frames of a growth run) both belong to the
  test split and no frames are lost there. Block sizes are chosen so that every class meets the
  requested ratios within one frame over all its sequences. A class with fewer than 2*gap+3 frames
  in a sequence goes to one split as a whole; that sequence's blocks are then ordered so that this
  split is the one meeting the neighbouring class, chosen as the split furthest below its target.
- by_sequence=True: whole sequences (all temporal classes of a growth run together) go to one split;
  ratios are then only approximate.
- Frames whose name carries no frame number are independent and split randomly.
Afterwards every val/test frame that still lies within `gap` frames of a frame of another split in
the same sequence (only possible with interleaved classes or duplicate frame numbers) is left out,
and the result is verified; a violation raises UserError before anything is written.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from rheed.errors import UserError
from rheed.split_layout import AMBIGUOUS_CLASSES, FINE_TO_BINARY, MANIFEST_COLUMNS, SPLITS, SplitFrame, label_of
from rheed.split_report import build_report, format_report
from rheed.split_similarity import nearest_train_similarity
from rheed.imageio import list_images
from rheed.naming import compile_pattern, parse_sequence_frame

RANDOM_BY_DEFAULT = ('layer_smooth',)
REPORT_FILES = ('manifest.csv', 'split_report.json', 'split_report.txt')
STAGING = '.split-staging'
DEFAULT_GAP = 3


# ----------------------------------------------------------------------------- collecting frames

def _read_frames_csv(path: str) -> dict:
    """file -> (sequence, frame) from a CSV with columns file,sequence,frame."""
    try:
        with open(path, newline='') as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise UserError(f"cannot read --frames_csv {path}: {e.strerror}") from None
    if not rows or not {'file', 'sequence', 'frame'} <= set(rows[0]):
        raise UserError(f"--frames_csv {path} needs the columns file,sequence,frame")
    table = {}
    for i, row in enumerate(rows, start=2):
        try:
            frame = int(row['frame']) if row['frame'].strip() != '' else None
        except ValueError:
            raise UserError(f"--frames_csv {path} line {i}: frame '{row['frame']}' is not an integer") from None
        sequence = row['sequence'].strip() if frame is not None else None
        table[row['file'].strip().replace('\\', '/')] = (sequence, frame)
    return table


def collect_frames(src: str | os.PathLike, pattern: str | None = None, frames_csv: str | None = None) -> list[SplitFrame]:
    """Every image in src/<class>/ (recursively) with its sequence and frame number."""
    src = Path(src)
    if not src.is_dir():
        raise UserError(f"source folder not found: {src}")
    class_dirs = sorted(d for d in src.iterdir() if d.is_dir() and not d.name.startswith('.'))
    if {d.name for d in class_dirs} & set(SPLITS):
        raise UserError(f"{src} contains train/val/test folders: it looks like a split already; "
                        f"pass the folder with one sub-folder per class")
    regex = compile_pattern(pattern)
    table = _read_frames_csv(frames_csv) if frames_csv else {}
    names = Counter(Path(k).name for k in table)
    frames = []
    for class_dir in class_dirs:
        for path in list_images(class_dir):
            rel = Path(path).relative_to(class_dir).as_posix()
            key = f'{class_dir.name}/{rel}'
            if key in table:
                sequence, frame = table[key]
            elif rel in table:
                sequence, frame = table[rel]
            elif names.get(Path(rel).name) == 1 and Path(rel).name in table:
                sequence, frame = table[Path(rel).name]
            else:
                sequence, frame = parse_sequence_frame(rel, regex)
                subdir = Path(rel).parent.as_posix()
                if frame is not None and subdir != '.':  # frames sorted into one folder per run
                    sequence = f'{subdir}/{sequence}' if sequence else subdir
            frames.append(SplitFrame(path, rel, class_dir.name, sequence, frame))
    if not frames:
        raise UserError(f"no images ({', '.join(('.png', '.jpg', '.bmp', '.tif'))}...) in class folders under {src}")
    return frames


# ----------------------------------------------------------------------------- planning

def exact_counts(ratios: Sequence[float], n: int) -> list[int]:
    """Largest-remainder split of n items; each count within one of ratio * n."""
    ideal = [r * n for r in ratios]
    counts = [int(np.floor(x)) for x in ideal]
    order = sorted(range(len(ratios)), key=lambda k: (counts[k] - ideal[k], k))
    for k in order[: n - sum(counts)]:
        counts[k] += 1
    return counts


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _assign_random(frames: list[SplitFrame], ratios, seed: int, name: str) -> None:
    order = _rng(seed, name).permutation(len(frames))
    counts = exact_counts(ratios, len(frames))
    bounds = np.cumsum([0] + counts)
    for k, split in enumerate(SPLITS):
        for i in order[bounds[k]:bounds[k + 1]]:
            frames[i].split = split


def _frame_key(f: SplitFrame):
    return (f.frame, f.rel)


# block order of the first class of a sequence, by the split that meets the next class
ORDER_ENDING_WITH = {'test': ('train', 'val', 'test'), 'train': ('test', 'val', 'train'),
                     'val': ('train', 'test', 'val')}


def _assign_temporal(frames: list[SplitFrame], ratios, gap: int) -> None:
    """Contiguous blocks per sequence and class; see the module doc."""
    pieces = defaultdict(list)  # (sequence, fine_class) -> frames in time order
    for f in frames:
        pieces[(f.sequence, f.fine_class)].append(f)
    for piece in pieces.values():
        piece.sort(key=_frame_key)
    sequences = sorted({s for s, _ in pieces})
    fine_classes = sorted({c for _, c in pieces})
    in_time = {seq: sorted((c for s, c in pieces if s == seq),
                           key=lambda c: (float(np.median([f.frame for f in pieces[(seq, c)]])), c))
               for seq in sequences}
    is_short = {key: len(piece) < 2 * gap + 3 for key, piece in pieces.items()}
    total = {c: sum(len(p) if is_short[k] else len(p) - 2 * gap for k, p in pieces.items() if k[1] == c)
             for c in fine_classes}
    target = dict(zip(SPLITS, ratios))
    counts = {c: dict.fromkeys(SPLITS, 0) for c in fine_classes}

    def most_needed(classes):
        return max(SPLITS, key=lambda s: (sum(target[s] * total[c] - counts[c][s] for c in classes),
                                          -SPLITS.index(s)))

    # short pieces cannot be cut: each goes whole to the split that meets the neighbouring class,
    # chosen per sequence as the split that needs frames most
    order = {}
    for seq in sequences:
        short = [c for c in in_time[seq] if is_short[(seq, c)]]
        boundary = most_needed(short) if short else 'test'
        for rank, c in enumerate(in_time[seq]):
            first = ORDER_ENDING_WITH[boundary]
            order[(seq, c)] = first if rank % 2 == 0 else first[::-1]
            if is_short[(seq, c)]:
                split = order[(seq, c)][-1] if rank == 0 else order[(seq, c)][0]
                for f in pieces[(seq, c)]:
                    f.split = split
                counts[c][split] += len(pieces[(seq, c)])
    # long pieces: frame by frame to the split furthest below its share, then laid out as blocks
    for c in fine_classes:
        assigned = sum(counts[c].values())
        for key in sorted(k for k in pieces if k[1] == c and not is_short[k]):
            size = dict.fromkeys(SPLITS, 0)
            for _ in range(len(pieces[key]) - 2 * gap):
                assigned += 1
                split = max(SPLITS, key=lambda s: (target[s] * assigned - counts[c][s], -SPLITS.index(s)))
                counts[c][split] += 1
                size[split] += 1
            start = 0
            for i, split in enumerate(order[key]):
                for f in pieces[key][start:start + size[split]]:
                    f.split = split
                start += size[split]
                if i < 2:
                    for f in pieces[key][start:start + gap]:
                        f.excluded = 'gap'
                    start += gap


def _assign_by_sequence(frames: list[SplitFrame], ratios, seed: int) -> None:
    """Whole sequences to one split each. Sequences holding the same classes (e.g. island runs with
    island_smooth + island_rough, layer runs with layer_smooth) are balanced as one group: in a seeded
    order, the smaller splits first get one sequence each (the one closest to their target size), then
    every sequence goes to the split furthest below its share of the group's frames."""
    units = defaultdict(list)
    for f in frames:
        units[f.sequence].append(f)
    groups = defaultdict(list)
    for name in sorted(units, key=str):
        groups[tuple(sorted({f.fine_class for f in units[name]}))].append(name)
    target = dict(zip(SPLITS, ratios))
    wanted = [s for s in sorted(SPLITS, key=lambda s: (target[s], SPLITS.index(s))) if target[s] > 0]
    for signature, names in sorted(groups.items()):
        names = [names[i] for i in _rng(seed, 'by-sequence:' + '+'.join(signature)).permutation(len(names))]
        total = sum(len(units[n]) for n in names)
        counts = dict.fromkeys(SPLITS, 0)

        def put(name, split):
            for f in units[name]:
                f.split = split
            counts[split] += len(units[name])

        if len(names) >= len(wanted):
            for split in wanted[:-1]:
                best = min(names, key=lambda n: abs(len(units[n]) - target[split] * total))
                names.remove(best)
                put(best, split)
        for name in names:
            put(name, max(SPLITS, key=lambda s: (target[s] * total - counts[s], -SPLITS.index(s))))


def _assign_fold(frames: list[SplitFrame], fold: int, folds: int, seed: int) -> None:
    """Fold `fold` of `folds` grouped folds: every sequence (a frame without a frame number is its own
    unit) belongs to one fold, balanced by frame count within each group of sequences with the same
    classes; test = that fold, val = the next fold, train = the rest. Over all folds each frame is tested
    exactly once."""
    units = defaultdict(list)
    for f in frames:
        key = ('seq', f.sequence) if f.frame is not None else ('frame', f.fine_class, f.rel)
        units[key].append(f)
    groups = defaultdict(list)
    for key in sorted(units, key=str):
        groups[tuple(sorted({f.fine_class for f in units[key]}))].append(key)
    for signature, keys in sorted(groups.items()):
        keys = [keys[i] for i in _rng(seed, 'folds:' + '+'.join(signature)).permutation(len(keys))]
        sizes = [0] * folds
        for key in sorted(keys, key=lambda k: -len(units[k])):  # largest first, into the smallest fold
            which = min(range(folds), key=lambda k: (sizes[k], k))
            sizes[which] += len(units[key])
            split = 'test' if which == fold else 'val' if which == (fold + 1) % folds else 'train'
            for f in units[key]:
                f.split = split


def _neighbours_in_other_split(frames: list[SplitFrame], gap: int):
    """(frame, other split's frame) pairs within `gap` frame numbers in the same sequence, for kept
    non-train frames: against train, and val against test."""
    by_seq = defaultdict(list)
    for f in frames:
        if f.split is not None and f.frame is not None:
            by_seq[f.sequence].append(f)
    pairs = []
    for seq in sorted(by_seq, key=str):
        group = by_seq[seq]
        for split, other in (('val', 'train'), ('test', 'train'), ('val', 'test')):
            ref = sorted((g.frame, g.rel, g) for g in group if g.split == other)
            if not ref:
                continue
            ref_frames = np.array([r[0] for r in ref])
            for f in (g for g in group if g.split == split):
                i = int(np.searchsorted(ref_frames, f.frame))
                near = [ref[j][2] for j in (i - 1, i) if 0 <= j < len(ref)]
                near = [g for g in near if abs(g.frame - f.frame) <= gap]
                if near:
                    pairs.append((f, min(near, key=lambda g: abs(g.frame - f.frame))))
    return pairs


def plan_split(frames: list[SplitFrame], ratios=(0.7, 0.15, 0.15), gap: int = DEFAULT_GAP, seed: int = 0,
               by_sequence: bool = False, temporal_classes: Sequence[str] | None = None,
               fold: tuple[int, int] | None = None) -> dict:
    """Sets `split` (and `excluded`) on every frame. Returns a summary with the leakage check.
    `fold` = (k, K): grouped K-fold by sequence, fold k (ratios and temporal_classes are not used)."""
    if fold is not None:
        temporal_classes = sorted({f.fine_class for f in frames})
    elif temporal_classes is None:
        temporal_classes = sorted({f.fine_class for f in frames} - set(RANDOM_BY_DEFAULT))
    temporal = [f for f in frames if f.fine_class in temporal_classes and f.frame is not None]
    temporal_ids = {id(f) for f in temporal}
    if fold is not None:
        _assign_fold(frames, fold[0], fold[1], seed)
    else:
        for fine_class in sorted({f.fine_class for f in frames}):
            loose = [f for f in frames if f.fine_class == fine_class and id(f) not in temporal_ids]
            _assign_random(loose, ratios, seed, fine_class)
        if by_sequence:
            _assign_by_sequence(temporal, ratios, seed)
        else:
            _assign_temporal(temporal, ratios, gap)
    for f in temporal:
        if f.excluded:
            f.split = None
    # safety net for interleaved classes or duplicate frame numbers: leave such frames out
    conflicts = 0
    while True:
        pairs = _neighbours_in_other_split(temporal, gap)
        if not pairs:
            break
        for f, _ in pairs:
            if f.split is not None:
                f.split, f.excluded = None, 'conflict'
                conflicts += 1
    violations = _neighbours_in_other_split(temporal, gap)
    if violations:
        f, g = violations[0]
        raise UserError(f"leakage check failed: {f.fine_class}/{f.rel} ({f.split}) is within {gap} frames of "
                        f"{g.fine_class}/{g.rel} ({g.split}) in sequence {f.sequence}")
    random_frames = [f for f in frames if id(f) not in temporal_ids]
    near_random = Counter(f.fine_class for f, g in _neighbours_in_other_split(random_frames, gap)
                          if g.split == 'train')
    return {
        'temporal_classes': sorted(temporal_classes),
        'gap_check': {'passed': True, 'checked_frames': sum(f.split in ('val', 'test') for f in temporal),
                      'violations': 0, 'left_out_for_conflicts': conflicts},
        'random_class_neighbours': {c: near_random.get(c, 0) for c in sorted({f.fine_class for f in random_frames})},
    }


# ----------------------------------------------------------------------------- writing

def _is_previous_split(dst: Path) -> bool:
    manifest = dst / 'manifest.csv'
    if not manifest.is_file():
        return False
    with open(manifest, newline='') as f:
        header = next(csv.reader(f), [])
    return tuple(header) == MANIFEST_COLUMNS


def check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    s, d = src.resolve(), dst.resolve()
    if s == d or s in d.parents or d in s.parents:
        raise UserError(f"--dst {dst} must not be --src {src}, inside it or contain it")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"--dst {dst} exists and is not a folder")
    if not dst.exists():
        return
    entries = [p.name for p in dst.iterdir() if p.name != STAGING]
    if not entries:
        return
    if not overwrite:
        raise UserError(f"{dst} already exists and is not empty; pass --overwrite to replace a previous split "
                        f"or choose another --dst")
    if any(name in SPLITS for name in entries) and not _is_previous_split(dst):
        raise UserError(f"{dst} holds train/val/test folders without this tool's manifest.csv; "
                        f"refusing to delete them even with --overwrite")


def place_file(source: str, target: Path, copy: bool) -> str:
    """Hard-links source to target (copies across file systems, or with `copy`); returns the method used."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(source, target)
            return 'hardlink'
        except OSError:
            pass
    shutil.copy2(source, target)
    return 'copy'


def output_path(f: SplitFrame, label: str) -> str:
    return f"{f.split}/{label}/{f.fine_class}__{f.rel.replace('/', '__')}"


def write_split(frames: list[SplitFrame], dst: Path, classes: str, copy: bool, report: dict, text: str) -> Counter:
    """Links the frames into dst/.split-staging, writes manifest and report there, then replaces the
    previous split's folders and files (only those) in dst."""
    staging = dst / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    methods = Counter()
    rows = []
    for f in sorted((f for f in frames if f.split is not None),
                    key=lambda f: (SPLITS.index(f.split), f.fine_class, f.rel)):
        label = label_of(f.fine_class, classes)
        rel = output_path(f, label)
        methods[place_file(f.source, staging / rel, copy)] += 1
        rows.append([rel, f.source, f.fine_class, label, '' if f.sequence is None else f.sequence,
                     '' if f.frame is None else f.frame, f.split])
    for split in SPLITS:
        if split not in report['unused_splits']:
            (staging / split).mkdir(exist_ok=True)
    with open(staging / 'manifest.csv', 'w', newline='') as fh:
        writer = csv.writer(fh)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    report['link_method'] = dict(methods)
    (staging / 'split_report.json').write_text(json.dumps(report, indent=2) + '\n')
    (staging / 'split_report.txt').write_text(text)
    for name in (*SPLITS, *REPORT_FILES):  # only what a previous split wrote
        old = dst / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    for name in (*SPLITS, *REPORT_FILES):
        if (staging / name).exists():
            os.replace(staging / name, dst / name)
    staging.rmdir()
    return methods


# ----------------------------------------------------------------------------- entry point

def split_dataset(src: str, dst: str, ratios=(0.7, 0.15, 0.15), gap: int = DEFAULT_GAP, seed: int = 0,
                  by_sequence: bool = False, classes: str = 'binary', pattern: str | None = None,
                  overwrite: bool = False, temporal_layer: bool = False, frames_csv: str | None = None,
                  copy: bool = False, similarity: bool = True, verbose: bool = True,
                  fold: tuple[int, int] | None = None) -> dict:
    """Splits src/<fine_class>/ into dst/{train,val,test}/<label>/; returns the report dict.
    `fold` = (k, K): fold k of a grouped K-fold by sequence (see _assign_fold) instead of the ratios."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise UserError(f"--ratios needs three non-negative numbers (train val test), got {list(ratios)}")
    ratios = tuple(float(r) / sum(ratios) for r in ratios)
    if gap < 0:
        raise UserError(f"--gap must be >= 0, got {gap}")
    if classes not in ('binary', 'fine'):
        raise UserError(f"--classes must be binary or fine, got {classes}")
    src_path, dst_path = Path(src), Path(dst)
    if not src_path.is_dir():
        raise UserError(f"source folder not found: {src}")
    check_destination(src_path, dst_path, overwrite)
    frames = collect_frames(src_path, pattern, frames_csv)
    ambiguous = {}
    if classes == 'binary':
        ambiguous = dict(sorted(Counter(f.fine_class for f in frames if f.fine_class in AMBIGUOUS_CLASSES).items()))
        frames = [f for f in frames if f.fine_class not in AMBIGUOUS_CLASSES]
        if not frames:
            raise UserError(f"{src} has only frames of ambiguous classes ({', '.join(ambiguous)}), which have no "
                            f"smooth/rough label; use --classes fine")
    fine_classes = sorted({f.fine_class for f in frames})
    if classes == 'binary':
        unknown = [c for c in fine_classes if c not in FINE_TO_BINARY]
        if unknown:
            raise UserError(f"unknown class folder(s) {', '.join(unknown)} in {src}; binary mode expects "
                            f"{', '.join(FINE_TO_BINARY)} (use --classes fine for other folders)")
    temporal = [c for c in fine_classes if temporal_layer or c not in RANDOM_BY_DEFAULT]
    if fold is not None and not (fold[1] >= 3 and 0 <= fold[0] < fold[1]):
        raise UserError(f"--folds needs at least 3 folds (test, val and train each take one), got {fold[1]}")
    summary = plan_split(frames, ratios, gap, seed, by_sequence, temporal, fold)
    sim = nearest_train_similarity(frames) if similarity else None
    args = {'src': str(src), 'dst': str(dst), 'classes': classes, 'ratios': [round(r, 6) for r in ratios],
            'gap': gap, 'seed': seed, 'by_sequence': by_sequence, 'temporal_layer': temporal_layer,
            'pattern': pattern, 'frames_csv': frames_csv, 'fold': list(fold) if fold else None,
            'ambiguous_left_out': ambiguous}
    report = build_report(frames, summary, args, sim)
    text = format_report(report)
    write_split(frames, dst_path, classes, copy, report, text)
    if verbose:
        print(text, end='')
        print(f"wrote {sum(f.split is not None for f in frames)} files "
              f"({', '.join(f'{k}: {v}' for k, v in report['link_method'].items())}), "
              f"{dst_path / 'manifest.csv'}, {dst_path / 'split_report.json'}")
        if sim and sim['unreadable']:
            print(f"warning: {len(sim['unreadable'])} unreadable files were split; training stops on them unless "
                  f"--skip_corrupt", file=sys.stderr)
    return report
