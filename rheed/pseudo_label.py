"""Pseudo-labels for the unlabeled frames of growth videos, and the self-training split built from them.

A pool frame gets the classifier's label only when
1. the class probability averaged over the frame and its neighbours (same sequence, within `window` frame
   numbers) reaches `threshold`, and
2. the frame and every one of those neighbours predict that same class
(a frame without a frame number is judged on its own). Growth changes slowly, so a confident call that
its neighbours contradict is more likely a mistake than a transition caught exactly.

The self-training split is the labelled split with the accepted frames added to train/ only; val/ and
test/ are linked unchanged, and pool frames that are val/test (or already train) frames of that split are
left out before scoring.
"""
import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from rheed.errors import UserError
from rheed.heldout import MANIFEST, file_id, held_out_ids
from rheed.imageio import list_images
from rheed.selection import PoolFrame
from rheed.split import place_file
from rheed.split_layout import HELD_OUT_SPLITS, SPLITS

PSEUDO_COLUMNS = ('path', 'sequence', 'frame', 'predicted', 'confidence', 'window_confidence', 'window_frames',
                  'accepted')
PSEUDO_PREFIX = 'pseudo__'


def split_file_ids(split: Path) -> tuple[set, set]:
    """(ids of val/test frames, ids of train frames) of a split: inodes of its files, plus the manifest's
    sources of held-out frames (copies keep their path)."""
    held_out, train = set(), set()
    for name in SPLITS:
        for path in list_images(split / name) if (split / name).is_dir() else []:
            (held_out if name in HELD_OUT_SPLITS else train).add(file_id(Path(path)))
    if (split / MANIFEST).is_file():
        held_out |= held_out_ids(split / MANIFEST)
    return held_out - {None}, train - {None}


def usable_pool(paths: Sequence[str], split: Path) -> list[str]:
    """Pool paths without the split's val/test frames (never trained on) and its train frames (labelled)."""
    held_out, train = split_file_ids(split)
    kept, n_held, n_train = [], 0, 0
    for p in paths:
        identity = file_id(Path(p))
        if identity in held_out or os.path.realpath(p) in held_out:
            n_held += 1
        elif identity in train:
            n_train += 1
        else:
            kept.append(p)
    if n_held:
        print(f"leaving out {n_held} pool frames that are val/test frames of {split}")
    if n_train:
        print(f"leaving out {n_train} pool frames that are already training frames")
    return kept


def temporal_accept(frames: Sequence[PoolFrame], probs: np.ndarray, threshold: float,
                    window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: (predicted class, window-mean probability of it, frames in the window, accepted)."""
    probs = np.asarray(probs, dtype=np.float64)
    predicted = probs.argmax(axis=1)
    window_conf = probs[np.arange(len(probs)), predicted].copy()
    window_frames = np.ones(len(probs), dtype=np.int64)
    agree = np.ones(len(probs), dtype=bool)
    by_sequence = defaultdict(list)
    for i, f in enumerate(frames):
        if f.frame is not None:
            by_sequence[f.sequence].append(i)
    for members in by_sequence.values():
        numbers = np.array([frames[i].frame for i in members])
        for i, number in zip(members, numbers):
            near = [members[k] for k in np.flatnonzero(np.abs(numbers - number) <= window)]
            window_conf[i] = probs[near, predicted[i]].mean()
            window_frames[i] = len(near)
            agree[i] = bool(np.all(predicted[near] == predicted[i]))
    accepted = agree & (window_conf >= threshold)
    return predicted, window_conf, window_frames, accepted


def write_pseudo_csv(path: Path, frames: Sequence[PoolFrame], probs: np.ndarray, class_names: Sequence[str],
                     result: tuple) -> None:
    predicted, window_conf, window_frames, accepted = result
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(PSEUDO_COLUMNS)
        for i, fr in enumerate(frames):
            writer.writerow([fr.path, fr.sequence, '' if fr.frame is None else fr.frame, class_names[predicted[i]],
                             f"{probs[i, predicted[i]]:.4f}", f"{window_conf[i]:.4f}", int(window_frames[i]),
                             int(accepted[i])])


def pseudo_name(path: str) -> str:
    p = Path(path)
    return f"{PSEUDO_PREFIX}{p.parent.name}__{p.name}"


def build_self_training_split(split: Path, out: Path, frames: Sequence[PoolFrame], predicted: np.ndarray,
                              accepted: np.ndarray, class_names: Sequence[str], copy: bool = False) -> dict:
    """out/{train,val,test}/ = split's folders (linked) + accepted frames in out/train/<class>/pseudo__*.
    Returns {class: pseudo-labelled frames added}. Name clashes are refused before anything is written."""
    chosen = [(frames[i].path, class_names[predicted[i]]) for i in np.flatnonzero(accepted)]
    targets = [out / 'train' / label / pseudo_name(path) for path, label in chosen]
    if len(set(targets)) != len(targets):
        raise UserError("two pool frames have the same folder and file name; give the pool folders distinct names")
    for name in SPLITS:
        if not (split / name).is_dir():
            continue
        for path in list_images(split / name):
            place_file(path, out / name / Path(path).relative_to(split / name), copy)
    counts: dict = {}
    for (path, label), target in zip(chosen, targets):
        place_file(path, target, copy)
        counts[label] = counts.get(label, 0) + 1
    return counts
