"""Which unlabeled frames to label next: uncertain ones, no near-duplicates, spread over the feature space.

A growth video holds thousands of near-identical frames; labelling the next 50 of them teaches the model
little. The selector scores every pool frame with the current classifier (margin between the two most
likely classes), then picks
1. the most uncertain frames, and
2. a diverse rest: k-center greedy on the model's pooled features (each pick is the frame farthest from
   everything chosen so far),
never taking a near-duplicate of a frame already chosen: same sequence within `min_gap` frames, or feature
cosine similarity >= `max_similarity`.
"""
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rheed.errors import UserError
from rheed.naming import parse_sequence_frame
from rheed.split import place_file

SELECTION_COLUMNS = ('path', 'sequence', 'frame', 'predicted', 'confidence', 'margin', 'entropy', 'mc_disagreement',
                     'reason', 'label')


@dataclass
class PoolFrame:
    path: str
    sequence: str   # parent folder plus the sequence parsed from the file name
    frame: int | None


def pool_frame(path: str, pattern: str | None = None) -> PoolFrame:
    sequence, frame = parse_sequence_frame(path, pattern)
    return PoolFrame(str(path), f"{Path(path).parent}/{sequence or ''}", frame)


def mutual_information(runs: np.ndarray) -> np.ndarray:
    """Disagreement between Monte-Carlo passes (passes, n, classes): entropy of the mean prediction minus the
    mean entropy of the passes (0 when every pass agrees)."""
    runs = np.asarray(runs, dtype=np.float64)
    return entropies(runs.mean(axis=0)) - np.mean([entropies(r) for r in runs], axis=0)


def score_pool(classifier, pool: Sequence[str], pattern: str | None = None, batch_size: int = 32,
               mc_passes: int = 0) -> tuple[list[PoolFrame], np.ndarray, np.ndarray, np.ndarray | None]:
    """(frames, probabilities, pooled features, Monte-Carlo disagreement or None) of every pool frame.
    With `mc_passes` > 0 the probabilities are the mean of that many drop-path passes (the classifier must be
    loaded with drop_path > 0). A pool item is a folder (searched recursively), an image, a video or a
    multi-page TIFF; a frame of a video or stack is PoolFrame('<file>[<i>]', '<file>', i). Unreadable
    image files are left out with a warning."""
    from rheed.frames import TIFF_EXTENSIONS, open_input
    from rheed.imageio import is_image_file, list_images, verify_files

    files, streams = set(), []
    for item in map(Path, pool):
        if item.is_dir():
            files.update(list_images(item))
        elif item.is_file() and is_image_file(item) and item.suffix.lower() not in TIFF_EXTENSIONS:
            files.add(str(item))
        else:
            streams.append(item)  # video or TIFF (one page or a stack); open_input names what is wrong
    paths, _ = verify_files(sorted(files), skip_corrupt=True)
    frames, probs, features, disagreement, batch = [], [], [], [], []

    def flush():
        if batch:
            images = [image for _, image in batch]
            p, f = classifier.probs_and_features(images)
            if mc_passes > 0:
                runs = classifier.mc_probs(images, mc_passes)
                p = runs.mean(axis=0)
                disagreement.append(mutual_information(runs))
            frames.extend(frame for frame, _ in batch)
            probs.append(p)
            features.append(f)
            batch.clear()

    def add(frame: PoolFrame, image) -> None:
        batch.append((frame, image))
        if len(batch) >= batch_size:
            flush()

    for path in paths:
        add(pool_frame(path, pattern), classifier.loader(path))
    for stream in streams:
        source = open_input(stream, classifier, pattern)
        for decoded in source:
            if source.kind == "image":
                add(pool_frame(str(stream), pattern), decoded.image)
            else:
                add(PoolFrame(decoded.source, str(stream), decoded.frame), decoded.image)
    flush()
    if not frames:
        raise UserError(f"no readable frames in {', '.join(map(str, pool))}")
    return (frames, np.concatenate(probs), np.concatenate(features),
            np.concatenate(disagreement) if disagreement else None)


def export_stream_frames(classifier, frames: Sequence[PoolFrame], indices: Sequence[int], out_dir: Path) -> dict:
    """Writes the chosen frames of videos and TIFF stacks as 8-bit PNGs <out_dir>/<file stem>_<frame>.png (what
    the classifier saw), so that they can be labelled and trained on like any frame; returns {index: png path}.
    Frames that are image files already are not copied."""
    from rheed.frames import open_input

    wanted: dict = {}
    for i in indices:
        f = frames[i]
        if f.path != f.sequence and f.path.startswith(f.sequence + "["):
            wanted.setdefault(f.sequence, {})[f.frame] = i
    exported = {}
    for stream, by_frame in wanted.items():
        out_dir.mkdir(parents=True, exist_ok=True)
        for decoded in open_input(stream, classifier):
            if decoded.frame in by_frame:
                target = out_dir / f"{Path(stream).stem}_{decoded.frame:06d}.png"
                decoded.image.convert("L").save(target)
                exported[by_frame.pop(decoded.frame)] = str(target)
                if not by_frame:  # the stream is not decoded past the last chosen frame
                    break
    return exported


def margins(probs: np.ndarray) -> np.ndarray:
    """1 - (top probability - second probability): 1 on the decision boundary, 0 when certain."""
    top2 = np.sort(np.asarray(probs, dtype=np.float64), axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropies(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def _unit(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def is_near_duplicate(i: int, chosen: Sequence[int], frames: Sequence[PoolFrame], unit: np.ndarray,
                      min_gap: int, max_similarity: float) -> bool:
    if not chosen:
        return False
    for j in chosen:
        a, b = frames[i], frames[j]
        if a.sequence == b.sequence and a.frame is not None and b.frame is not None \
                and abs(a.frame - b.frame) <= min_gap:
            return True
    return bool((unit[list(chosen)] @ unit[i]).max() >= max_similarity)


def select(frames: Sequence[PoolFrame], probs: np.ndarray, features: np.ndarray, budget: int,
           uncertain_fraction: float = 0.5, min_gap: int = 5, max_similarity: float = 0.98,
           seed: int = 0, uncertainty: np.ndarray | None = None) -> list[tuple[int, str]]:
    """[(pool index, 'uncertain' | 'diverse')], at most `budget` frames, no two near-duplicates.
    The uncertain frames are those of largest `uncertainty` (default: the margin score).

    Deterministic for a given seed (the seed only breaks exact ties and picks the first diverse frame
    when nothing uncertain was chosen).
    """
    if budget < 1:
        raise UserError(f"--budget must be >= 1, got {budget}")
    if not 0 <= uncertain_fraction <= 1:
        raise UserError(f"--uncertain_fraction must be in [0, 1], got {uncertain_fraction}")
    n = len(frames)
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    unit = _unit(features)
    tie_break = rng.random(n)
    chosen: list[int] = []
    picks: list[tuple[int, str]] = []

    score = margins(probs) if uncertainty is None else np.asarray(uncertainty, dtype=np.float64)
    by_uncertainty = np.lexsort((tie_break, -score))
    n_uncertain = int(round(budget * uncertain_fraction))
    for i in by_uncertainty:
        if len(picks) >= n_uncertain:
            break
        if not is_near_duplicate(int(i), chosen, frames, unit, min_gap, max_similarity):
            chosen.append(int(i))
            picks.append((int(i), 'uncertain'))

    # k-center greedy: repeatedly take the frame farthest (cosine distance) from everything chosen
    distance = np.full(n, np.inf) if not chosen else (1.0 - unit @ unit[chosen].T).min(axis=1)
    blocked = np.zeros(n, dtype=bool)
    blocked[chosen] = True
    while len(picks) < budget:
        order = np.lexsort((tie_break, -distance))
        candidate = next((int(i) for i in order if not blocked[i]), None)
        if candidate is None:
            break
        blocked[candidate] = True
        if is_near_duplicate(candidate, chosen, frames, unit, min_gap, max_similarity):
            continue
        chosen.append(candidate)
        picks.append((candidate, 'diverse'))
        distance = np.minimum(distance, 1.0 - unit @ unit[candidate])
    return picks


def write_selection(path: Path, frames: Sequence[PoolFrame], probs: np.ndarray, class_names: Sequence[str],
                    picks: Sequence[tuple[int, str]], disagreement: np.ndarray | None = None) -> None:
    """CSV with one row per chosen frame and an empty `label` column for the labeller to fill in."""
    margin, entropy = margins(probs), entropies(probs)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(SELECTION_COLUMNS)
        for i, reason in picks:
            k = int(np.argmax(probs[i]))
            writer.writerow([frames[i].path, frames[i].sequence, '' if frames[i].frame is None else frames[i].frame,
                             class_names[k], f'{probs[i][k]:.4f}', f'{margin[i]:.4f}', f'{entropy[i]:.4f}',
                             '' if disagreement is None else f'{disagreement[i]:.4f}', reason, ''])


def place_labelled(csv_path: Path, dst: Path, allowed: Sequence[str], copy: bool = False) -> dict:
    """Hard-links (or copies) each labelled frame of a filled-in selection CSV into dst/<label>/.

    Everything is checked before anything is placed: unknown labels, missing files and names that already
    exist in dst are refused; rows with an empty label are skipped. The source frames are never touched.
    Returns {label: count}.
    """
    with open(csv_path, newline='', encoding='utf-8') as f:
        rows = [r for r in csv.DictReader(f) if (r.get('label') or '').strip()]
    if not rows:
        raise UserError(f"{csv_path} has no filled-in labels (column 'label')")
    unknown = sorted({r['label'].strip() for r in rows} - set(allowed))
    if unknown:
        raise UserError(f"unknown label(s) {', '.join(unknown)} in {csv_path}; allowed: {', '.join(allowed)}")
    plan = []
    for r in rows:
        source = Path(r['path'])
        if not source.is_file():
            raise UserError(f"frame not found: {source} ({csv_path})")
        target = dst / r['label'].strip() / source.name
        if target.exists():
            raise UserError(f"{target} already exists; labelled frames are never overwritten")
        plan.append((source, target))
    if len({t for _, t in plan}) != len(plan):
        raise UserError(f"{csv_path} labels two frames with the same file name into one folder")
    counts: dict = {}
    for source, target in plan:
        place_file(str(source), target, copy)
        counts[target.parent.name] = counts.get(target.parent.name, 0) + 1
    return counts


def save_contact_sheet(out_png: Path, paths: Sequence[str], titles: Sequence[str], columns: int = 6) -> Path:
    """A grid of the chosen frames with their reason and file name, for a first look before labelling."""
    from rheed.imageio import read_frame
    from rheed.plotting import new_figure

    rows = max(1, -(-len(paths) // columns))
    fig = new_figure(2.2 * columns, 2.0 * rows)
    for k, (path, title) in enumerate(zip(paths, titles)):
        ax = fig.add_subplot(rows, columns, k + 1)
        frame = read_frame(path)
        ax.imshow(frame if frame.ndim == 2 else frame[..., 0], cmap='gray')
        ax.set_title(title, fontsize=6)
        ax.axis('off')
    fig.savefig(out_png, dpi=80)
    return out_png
