"""How close each val/test frame is to its nearest training frame (32x32 thumbnails, cosine similarity
after removing the mean frame): a leakage check for the split report."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from rheed.imageio import read_frame
from rheed.split_layout import SPLITS, SplitFrame


def thumbnail(path: str, size: int = 32) -> np.ndarray | None:
    """Grayscale size x size thumbnail of a frame as a float vector (None when unreadable)."""
    try:
        frame = read_frame(path)
    except Exception:
        return None
    if frame.ndim == 3:
        frame = frame.mean(axis=2).astype(np.uint8)
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR), dtype=np.float64).ravel()


def _unit_rows(mat: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    return mat / np.where(norms > 0, norms, 1.0)


def nearest_train_similarity(frames: list[SplitFrame], size: int = 32, top: int = 10, workers: int = 4) -> dict:
    """Similarity of each val/test frame to its most similar train frame: cosine similarity of
    size x size grayscale thumbnails after removing the mean thumbnail of all frames (RHEED frames
    share most of their structure, so plain correlations are all close to 1). 1 = identical up to
    brightness scale; unrelated frames score near 0."""
    kept = [f for f in frames if f.split is not None]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        thumbs = list(pool.map(lambda f: thumbnail(f.source, size), kept))
    unreadable = [f.source for f, t in zip(kept, thumbs) if t is None]
    items = [(f, t) for f, t in zip(kept, thumbs) if t is not None]
    result = {'thumbnail_size': size, 'measure': 'cosine similarity of mean-removed grayscale thumbnails',
              'unreadable': unreadable}
    if not items:
        return result
    mat = _unit_rows(np.stack([t - t.mean() for _, t in items]))  # each frame: zero mean, unit norm
    mat = _unit_rows(mat - mat.mean(axis=0))                       # remove what all frames share
    rows = {s: [i for i, (f, _) in enumerate(items) if f.split == s] for s in SPLITS}
    if not rows['train']:
        return result
    train = rows['train']
    for split in ('val', 'test'):
        if not rows[split]:
            continue
        sims = mat[rows[split]] @ mat[train].T
        best = sims.argmax(axis=1)
        best_sim = sims[np.arange(len(best)), best]
        query = [items[i][0] for i in rows[split]]
        match = [items[train[j]][0] for j in best]
        same = np.array([f.sequence is not None and f.sequence == g.sequence for f, g in zip(query, match)])
        # reference: the most similar train frame from another growth run
        train_seq = np.array([str(items[j][0].sequence) for j in train])
        other = np.array([[f.sequence is None or ts != f.sequence for ts in train_seq] for f in query])
        other_best = np.where(other, sims, -np.inf).max(axis=1)
        other_best = other_best[np.isfinite(other_best)]

        def stats(values):
            return {'mean': round(float(values.mean()), 4), 'median': round(float(np.median(values)), 4),
                    'p95': round(float(np.percentile(values, 95)), 4), 'max': round(float(values.max()), 4)}

        per_class = {}
        for c in sorted({f.fine_class for f in query}):
            mask = np.array([f.fine_class == c for f in query])
            per_class[c] = {'n': int(mask.sum()), **stats(best_sim[mask])}
        pairs = []
        for i in np.argsort(-best_sim, kind='stable')[:top]:
            f, g = query[i], match[i]
            pairs.append({'frame': f'{f.fine_class}/{f.rel}', 'train_frame': f'{g.fine_class}/{g.rel}',
                          'similarity': round(float(best_sim[i]), 4), 'same_sequence': bool(same[i]),
                          'frame_distance': (abs(f.frame - g.frame) if same[i] and f.frame is not None
                                             and g.frame is not None else None)})
        result[split] = {'n': len(query), **stats(best_sim), 'n_above_0.95': int((best_sim > 0.95).sum()),
                         'nearest_in_same_sequence': int(same.sum()),
                         'other_sequence_mean': round(float(other_best.mean()), 4) if other_best.size else None,
                         'per_class': per_class, 'top_pairs': pairs}
    return result
