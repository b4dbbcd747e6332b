"""The split's leakage report: counts per split and fine class, achieved ratios, frames left out for the
gap, the gap check, nearest-neighbour similarity and missing classes (JSON and text)."""
from __future__ import annotations

from collections import Counter, defaultdict

from rheed.split_layout import SPLITS, SplitFrame, label_of


def _ranges(frames: list[SplitFrame]) -> dict:
    out = defaultdict(lambda: defaultdict(dict))
    groups = defaultdict(list)
    for f in frames:
        if f.split is not None and f.frame is not None:
            groups[(f.split, f.fine_class, f.sequence)].append(f.frame)
    for (split, fine_class, seq), nums in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        out[split][fine_class][seq] = [min(nums), max(nums), len(nums)]
    return {s: dict(v) for s, v in out.items()}


def build_report(frames, summary, args: dict, similarity: dict | None) -> dict:
    counts = {s: dict(sorted(Counter(f.fine_class for f in frames if f.split == s).items())) for s in SPLITS}
    labels = {s: dict(sorted(Counter(label_of(f.fine_class, args['classes']) for f in frames
                                     if f.split == s).items())) for s in SPLITS}
    ratio_check = {}
    for fine_class in sorted({f.fine_class for f in frames}):
        actual = {s: counts[s].get(fine_class, 0) for s in SPLITS}
        kept = sum(actual.values())
        wanted = {s: round(r * kept, 2) for s, r in zip(SPLITS, args['ratios'])}
        ratio_check[fine_class] = {'kept': kept, 'left_out': sum(f.fine_class == fine_class and f.split is None
                                                                for f in frames),
                                   'requested': wanted, 'actual': actual,
                                   'max_deviation': round(max(abs(actual[s] - wanted[s]) for s in SPLITS), 2)}
    all_labels = set().union(*(labels[s] for s in SPLITS))
    # a split asked for with ratio 0 (e.g. --ratios 9 1 0 for a pre-training corpus) is not written at all
    unused = [s for s, r in zip(SPLITS, args['ratios']) if r == 0 and not labels[s] and args.get('fold') is None]
    missing_labels = {s: sorted(all_labels - set(labels[s])) for s in SPLITS
                      if s not in unused and all_labels - set(labels[s])}
    return {
        **args,
        'mode': 'by-sequence' if args['by_sequence'] else 'temporal blocks',
        'missing_labels': missing_labels,
        'unused_splits': unused,
        **summary,
        'counts': counts,
        'label_counts': labels,
        'ratio_check': ratio_check,
        'frame_ranges': _ranges(frames),
        'left_out': sorted(f'{f.fine_class}/{f.rel}' for f in frames if f.split is None),
        'similarity': similarity,
    }


def format_report(r: dict) -> str:
    lines = [f"split of {r['src']} -> {r['dst']}  ({r['classes']}, {r['mode']}, ratios "
             f"{'/'.join(str(x) for x in r['ratios'])}, gap {r['gap']}, seed {r['seed']})",
             f"temporal classes: {', '.join(r['temporal_classes']) or '-'}; random: "
             f"{', '.join(sorted(set(r['ratio_check']) - set(r['temporal_classes']))) or '-'}", '',
             f"{'split':6} {'class':16} {'count':>6}  frame ranges (sequence:first-last)"]
    for split in SPLITS:
        for fine_class, n in r['counts'][split].items():
            ranges = r['frame_ranges'].get(split, {}).get(fine_class, {})
            text = ', '.join(f'{seq}:{a}-{b}' for seq, (a, b, _) in ranges.items())
            lines.append(f"{split:6} {fine_class:16} {n:6d}  {text[:200] + ('...' if len(text) > 200 else '')}")
    lines.append('')
    for fine_class, c in r['ratio_check'].items():
        lines.append(f"{fine_class}: kept {c['kept']}, left out {c['left_out']}, actual "
                     f"{'/'.join(str(c['actual'][s]) for s in SPLITS)} vs requested "
                     f"{'/'.join(str(c['requested'][s]) for s in SPLITS)} (max deviation {c['max_deviation']})")
    for fine_class, n in r.get('ambiguous_left_out', {}).items():
        lines.append(f"note: {n} frames of {fine_class} left out: the class has no smooth/rough label "
                     f"(--classes fine keeps it)")
    for split, missing in r['missing_labels'].items():
        lines.append(f"warning: {split} has no frames of class {', '.join(missing)}; fine-tuning refuses splits whose "
                     f"class folders differ (add frames or sequences, or change --ratios / --gap)")
    g = r['gap_check']
    extra = f" ({g['left_out_for_conflicts']} frames left out to ensure it)" if g['left_out_for_conflicts'] else ''
    lines += ['', f"gap check: PASSED - none of {g['checked_frames']} val/test frames of temporal classes lies "
                  f"within {r['gap']} frames of a frame of another split in the same sequence{extra}"]
    for fine_class, n in r['random_class_neighbours'].items():
        if n:
            lines.append(f"note: {fine_class} is split randomly: {n} val/test frames have a train frame within "
                         f"{r['gap']} frames of the same sequence (use --temporal_layer if they come from videos)")
    sim = r.get('similarity')
    if sim:
        lines.append('')
        size = sim['thumbnail_size']
        lines.append(f"nearest train frame similarity ({sim['measure']}, {size}x{size}):")
        for split in ('val', 'test'):
            if split in sim:
                s = sim[split]
                lines.append(f"  {split}: n={s['n']} mean={s['mean']} median={s['median']} p95={s['p95']} "
                             f"max={s['max']} above 0.95: {s['n_above_0.95']}; nearest train frame in the same sequence: "
                             f"{s['nearest_in_same_sequence']}; mean best match in other sequences: "
                             f"{s['other_sequence_mean']}")
                for c, cs in s['per_class'].items():
                    lines.append(f"    {c:16} n={cs['n']} mean={cs['mean']} max={cs['max']}")
        if 'test' in sim:
            lines.append('  most similar test/train pairs:')
            for p in sim['test']['top_pairs']:
                where = (f"same sequence, frame distance {p['frame_distance']}" if p['same_sequence']
                         else 'other sequence')
                lines.append(f"    {p['similarity']:.4f}  {p['frame']}  ~  {p['train_frame']}  ({where})")
        if sim['unreadable']:
            lines.append(f"  warning: {len(sim['unreadable'])} files could not be read: "
                         + ', '.join(sim['unreadable'][:5]))
    return '\n'.join(lines) + '\n'
