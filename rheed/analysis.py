"""Dataset analysis: counts, sizes, bit depths, intensities, corrupt files, imbalance, class weights.

Works on a class-folder dataset (`data_rheed/<class>/`) and on a split (`<root>/{train,val,test}/<class>/`).
Fine classes in a binary split are recovered from the `<fine_class>__` prefix that the split writes.
Suggested class weights are w_c = N / (K * n_c) (N images, K classes, n_c images of class c; their
mean over images is 1), computed on the train split when there is one, else on all images.
"""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rheed.errors import UserError
from rheed.imageio import _drop_extra_channels, decode_checked, list_images, to_uint8
from rheed.split_layout import FINE_TO_BINARY, SPLITS

HIST_BINS = 64


def class_weights(counts: dict) -> dict:
    """w_c = N / (K * n_c) for the classes with at least one image."""
    present = {c: n for c, n in counts.items() if n > 0}
    total, k = sum(present.values()), len(present)
    return {c: round(total / (k * n), 4) for c, n in sorted(present.items())}


def imbalance_ratio(counts: dict) -> float | None:
    values = [n for n in counts.values() if n > 0]
    return round(max(values) / min(values), 3) if len(values) > 1 else None


def _records(data_dir: Path) -> tuple[str, list[dict]]:
    """(layout, one record per image file with split, folder class, fine and binary class)."""
    if not data_dir.is_dir():
        raise UserError(f"data folder not found: {data_dir}")
    subdirs = sorted(d.name for d in data_dir.iterdir() if d.is_dir() and not d.name.startswith('.'))
    layout = 'split' if set(subdirs) & set(SPLITS) else 'classes'
    roots = [(s, data_dir / s) for s in SPLITS if s in subdirs] if layout == 'split' else [(None, data_dir)]
    records = []
    for split, root in roots:
        for class_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith('.')):
            for path in list_images(class_dir):
                name = Path(path).name
                prefix = name.split('__', 1)[0] if '__' in name else None
                if class_dir.name in FINE_TO_BINARY:
                    fine = class_dir.name
                elif prefix in FINE_TO_BINARY:
                    fine = prefix
                else:
                    fine = None
                binary = FINE_TO_BINARY.get(fine) if fine else (
                    class_dir.name if class_dir.name in ('smooth', 'rough') else None)
                records.append({'path': path, 'split': split, 'class': class_dir.name, 'fine': fine,
                                'binary': binary})
    if not records:
        raise UserError(f"no images in class folders under {data_dir}")
    return layout, records


def inspect_image(path: str) -> dict:
    """Decodes one file: size, dtype, bits, channels, native intensity stats and an 8-bit histogram
    of what the default loader produces; or the reason it is unusable."""
    arr, bits, reason = decode_checked(path)
    if reason:
        return {'reason': reason}
    arr = _drop_extra_channels(arr)
    data = arr.astype(np.float64)
    shown = to_uint8(arr, bits=bits)
    gray = shown.mean(axis=2) if shown.ndim == 3 else shown
    return {
        'size': f'{arr.shape[1]}x{arr.shape[0]}',
        'depth': f'{arr.dtype}' + (f' ({bits}-bit)' if bits and bits != arr.dtype.itemsize * 8 else ''),
        'channels': 1 if arr.ndim == 2 else arr.shape[2],
        'mean': float(data.mean()), 'std': float(data.std()), 'min': float(data.min()), 'max': float(data.max()),
        'p99': float(np.percentile(data, 99)),
        'hist': np.histogram(gray, bins=HIST_BINS, range=(0, 256))[0],
        'thumb_source': gray,
    }


def _summary(infos: list[dict]) -> dict:
    ok = [i for i in infos if 'reason' not in i]
    out = {'count': len(infos), 'readable': len(ok), 'corrupt': len(infos) - len(ok)}
    if not ok:
        return out
    means = np.array([i['mean'] for i in ok])
    out.update({
        'sizes': dict(Counter(i['size'] for i in ok).most_common()),
        'bit_depths': dict(Counter(i['depth'] for i in ok).most_common()),
        'channels': dict(Counter(str(i['channels']) for i in ok).most_common()),
        'intensity': {'mean_of_means': round(float(means.mean()), 3),
                      'std_of_means': round(float(means.std()), 3),
                      'mean_of_stds': round(float(np.mean([i['std'] for i in ok])), 3),
                      'min': round(min(i['min'] for i in ok), 3), 'max': round(max(i['max'] for i in ok), 3),
                      'median_p99': round(float(np.median([i['p99'] for i in ok])), 3)},
    })
    return out


def analyze_dataset(data_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                    samples_per_class: int = 6, workers: int = 4) -> dict:
    """Analyses data_dir, writes dataset_analysis.json and dataset_analysis.png into out_dir."""
    data_dir = Path(data_dir)
    layout, records = _records(data_dir)
    out_dir = Path(out_dir) if out_dir else Path('outputs') / 'dataset_analysis' / data_dir.resolve().name
    with ThreadPoolExecutor(max_workers=workers) as pool:
        infos = list(pool.map(lambda r: inspect_image(r['path']), records))
    groups = {'class': defaultdict(list), 'fine_class': defaultdict(list), 'binary_class': defaultdict(list)}
    for r, info in zip(records, infos):
        groups['class'][r['class']].append(info)
        if r['fine']:
            groups['fine_class'][r['fine']].append(info)
        if r['binary']:
            groups['binary_class'][r['binary']].append(info)
    result = {'data_dir': str(data_dir), 'layout': layout, 'n_images': len(records),
              'n_corrupt': sum('reason' in i for i in infos),
              'corrupt': [{'path': r['path'], 'reason': i['reason']} for r, i in zip(records, infos) if 'reason' in i]}
    for key, group in groups.items():
        if group:
            result[f'per_{key}'] = {c: _summary(v) for c, v in sorted(group.items())}
    if layout == 'split':
        result['per_split'] = {s: dict(sorted(Counter(r['class'] for r in records if r['split'] == s).items()))
                               for s in SPLITS if any(r['split'] == s for r in records)}
    basis = [r for r in records if r['split'] in (None, 'train')]
    result['weights_basis'] = 'train split' if layout == 'split' else 'all images'
    result['imbalance_ratio'], result['class_weights'] = {}, {}
    for key, field in (('class', 'class'), ('fine_class', 'fine'), ('binary_class', 'binary')):
        counts = Counter(r[field] for r in basis if r[field])
        if counts:
            result['imbalance_ratio'][key] = imbalance_ratio(counts)
            result['class_weights'][key] = class_weights(counts)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'dataset_analysis.json').write_text(json.dumps(result, indent=2) + '\n')
    plot_overview(records, infos, out_dir / 'dataset_analysis.png', samples_per_class)
    result['outputs'] = [str(out_dir / 'dataset_analysis.json'), str(out_dir / 'dataset_analysis.png')]
    return result


def plot_overview(records: list[dict], infos: list[dict], path: Path, samples_per_class: int = 6) -> None:
    """Sample grid (one row per class, frames evenly spaced in name order) above the per-class
    histograms of the 8-bit intensities the loader produces."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    by_class = defaultdict(list)
    for r, info in zip(records, infos):
        if 'reason' not in info:
            by_class[r['fine'] or r['class']].append((r['path'], info))
    classes = sorted(by_class)
    cols = max(1, samples_per_class)
    fig = plt.figure(figsize=(1.8 * cols, 1.5 * max(1, len(classes)) + 3.0))
    grid = fig.add_gridspec(len(classes) + 1, cols, height_ratios=[1.0] * len(classes) + [1.6])
    for row, c in enumerate(classes):
        items = sorted(by_class[c], key=lambda x: x[0])
        picks = sorted(set(np.linspace(0, len(items) - 1, min(cols, len(items))).round().astype(int)))
        for col in range(cols):
            ax = fig.add_subplot(grid[row, col])
            ax.axis('off')
            if col < len(picks):
                path_i, info = items[picks[col]]
                ax.imshow(info['thumb_source'], cmap='gray', vmin=0, vmax=255)
                ax.set_title(Path(path_i).name.split('__', 1)[-1][-24:], fontsize=6)
            if col == 0:
                ax.text(-0.05, 0.5, f'{c}\n(n={len(items)})', transform=ax.transAxes, ha='right', va='center',
                        fontsize=8)
    ax = fig.add_subplot(grid[len(classes), :])
    centers = (np.arange(HIST_BINS) + 0.5) * 256 / HIST_BINS
    for c in classes:
        hist = np.sum([info['hist'] for _, info in by_class[c]], axis=0).astype(np.float64)
        ax.plot(centers, hist / max(hist.sum(), 1), label=c)
    ax.set_xlabel('8-bit intensity seen by the network (default loader)')
    ax.set_ylabel('fraction of pixels')
    ax.set_yscale('log')
    if classes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_analysis(result: dict) -> str:
    lines = [f"{result['data_dir']}: {result['n_images']} images ({result['layout']} layout), "
             f"{result['n_corrupt']} corrupt"]
    same = [k for k in ('binary_class', 'fine_class') if set(result.get(f'per_{k}', {})) == set(result['per_class'])]
    for key in ('per_binary_class', 'per_fine_class', 'per_class'):
        if key == 'per_class' and same:  # the folders are the fine or binary classes: already listed
            continue
        for c, s in result.get(key, {}).items():
            extra = ''
            if s.get('readable'):
                extra = (f", sizes {', '.join(list(s['sizes'])[:3])}, depth {', '.join(s['bit_depths'])}, "
                         f"mean intensity {s['intensity']['mean_of_means']}")
            lines.append(f"  {key[4:]:13} {c:14} {s['count']:6d} images{extra}")
    if 'per_split' in result:
        for split, counts in result['per_split'].items():
            lines.append(f"  {split:6} " + ', '.join(f'{c}: {n}' for c, n in counts.items()))
    for key, ratio in result['imbalance_ratio'].items():
        if key == 'class' and same:
            continue
        lines.append(f"  imbalance ({key.replace('_', ' ')}, {result['weights_basis']}): {ratio}; suggested weights "
                     + ', '.join(f'{c}={w}' for c, w in result['class_weights'][key].items()))
    for item in result['corrupt'][:20]:
        lines.append(f"  corrupt: {item['path']}: {item['reason']}")
    if len(result['corrupt']) > 20:
        lines.append(f"  ... and {len(result['corrupt']) - 20} more (see the JSON)")
    return '\n'.join(lines) + '\n'
