"""What main_finetune.py writes after training: calibration, metrics JSON, prediction CSVs, console summary.

The caller evaluates the model (engine_finetune.evaluate) and hands the results to `report`; this module
calibrates, prints and writes them, so main_finetune.py keeps upstream's shape.

Files in the run folder (main process only):
- `predictions_<split>.csv`: path, label, pred, names and calibrated class probabilities per frame;
- `test_metrics<suffix>.json`: test metrics at the stored decision threshold, the argmax metrics, the
  validation metrics and the calibration;
- `calibration.json`: temperature, threshold, validation NLL/ECE before and after, reliability bins of
  the validation and test sets.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from rheed import calibration
from rheed.metrics import compute_metrics, positive_class_index
from rheed.naming import count_sequences
from rheed.atomic import write_json_atomic as write_json


def sample_paths(dataset, indices) -> list[str]:
    samples = getattr(dataset, 'samples', None)
    if samples is None:
        return [str(i) for i in indices]
    return [os.path.abspath(samples[i][0]) for i in indices]


def write_predictions(path: Path, dataset, stats: dict, class_names: Sequence[str]) -> None:
    """CSV with one row per image: path, label, pred, label_name, pred_name, prob_<class>..."""
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['path', 'label', 'pred', 'label_name', 'pred_name'] + [f'prob_{c}' for c in class_names])
        rows = zip(sample_paths(dataset, stats['indices']), stats['labels'], stats['preds'], stats['probs'])
        for p, y, yhat, prob in rows:
            writer.writerow([p, int(y), int(yhat), class_names[int(y)], class_names[int(yhat)]]
                            + [f'{v:.6f}' for v in prob])


def print_metrics(title: str, metrics: dict, loss: float) -> None:
    print(f"===== {title} =====")
    print(f"samples {metrics['num_samples']}  loss {loss:.4f}  accuracy {metrics['accuracy']:.4f}  "
          f"balanced accuracy {metrics['balanced_accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}"
          + (f"  ROC-AUC {metrics['roc_auc']:.4f}" if metrics.get('roc_auc') is not None else '')
          + (f"  (threshold {metrics['threshold']:.3f})" if metrics.get('threshold') is not None else ''))
    for name, m in metrics['per_class'].items():
        print(f"  {name:>16s}: precision {m['precision']:.4f}  recall {m['recall']:.4f}  f1 {m['f1']:.4f}  "
              f"support {m['support']}")
    print(f"  confusion matrix (rows = true, cols = predicted, order {metrics['class_names']}): "
          f"{metrics['confusion_matrix']}")


def fit_calibration(val_stats: dict | None, class_names: Sequence[str], tune_threshold: bool = False,
                    val_dataset=None) -> dict | None:
    """Temperature and (two classes, `tune_threshold`) decision threshold fitted on the validation predictions;
    the growth runs among the validation files (by their names) set how much evidence they carry."""
    if val_stats is None or len(val_stats['labels']) == 0:
        return None
    positive = positive_class_index(class_names) if len(class_names) == 2 else None
    groups = None
    if getattr(val_dataset, 'samples', None) is not None:
        groups = count_sequences(sample_paths(val_dataset, val_stats['indices']))
    fitted = calibration.calibrate(val_stats['probs'], val_stats['labels'], positive, tune_threshold, groups)
    fitted['positive_class'] = class_names[positive] if positive is not None else None
    return fitted


def apply_calibration(stats: dict, class_names: Sequence[str], fitted: dict | None) -> dict:
    """Adds calibrated `probs`, `preds`, `metrics` (at the threshold) and `argmax_metrics` to evaluate() stats."""
    stats = dict(stats)
    stats['raw_probs'] = stats['probs']
    threshold = None
    if fitted is not None:
        stats['probs'] = calibration.apply_temperature(stats['probs'], fitted['temperature'])
        threshold = fitted.get('threshold')
    stats['argmax_metrics'] = compute_metrics(stats['labels'], stats['probs'], class_names)
    stats['metrics'] = compute_metrics(stats['labels'], stats['probs'], class_names, threshold=threshold)
    positive = positive_class_index(class_names) if len(class_names) == 2 else None
    stats['preds'] = calibration.predict_with_threshold(stats['probs'], positive, threshold)
    return stats


def write_reports(output_dir: Path, results: dict, class_names: Sequence[str], fitted: dict | None,
                  info: dict, suffix: str = '') -> None:
    """results: split -> (calibrated stats, dataset). Writes predictions CSVs, test_metrics and calibration."""
    if not suffix:
        for split, (stats, dataset) in results.items():
            write_predictions(output_dir / f'predictions_{split}.csv', dataset, stats, class_names)
    if fitted is not None and not suffix:
        record = dict(fitted)
        for split, (stats, _) in results.items():
            record[f'{split}_reliability'] = calibration.reliability(stats['probs'], stats['labels'])
        write_json(output_dir / 'calibration.json', record)
    if 'test' in results:
        stats = results['test'][0]
        report = dict(stats['metrics'])
        report.update(loss=stats['loss'], split='test', argmax_metrics=stats['argmax_metrics'], **info)
        if fitted is not None:
            report['calibration'] = {k: v for k, v in fitted.items() if not k.endswith('_reliability')}
        if 'val' in results:
            val_stats = results['val'][0]
            report['val_metrics'] = dict(val_stats['metrics'], loss=val_stats['loss'])
        write_json(output_dir / f'test_metrics{suffix}.json', report)
        print(f"Test metrics written to {output_dir / f'test_metrics{suffix}.json'}")


def report(raw: dict, class_names: Sequence[str], fitted: dict | None, calibrate: bool, output_dir: Path | None,
           info: dict, suffix: str = '', tune_threshold: bool = False) -> dict | None:
    """raw: split -> (engine_finetune.evaluate stats, dataset). Fits the calibration on val when `fitted` is None
    and `calibrate`, prints each split's metrics and writes the files into output_dir (None: print only).
    Returns the calibration used."""
    if fitted is None and calibrate:
        val_stats, val_dataset = raw['val'] if 'val' in raw else (None, None)
        fitted = fit_calibration(val_stats, class_names, tune_threshold, val_dataset)
    results = {}
    for split, (stats, dataset) in raw.items():
        stats = apply_calibration(stats, class_names, fitted)
        results[split] = (stats, dataset)
        print_metrics(f"{split} set, {info['checkpoint']}{' (EMA)' if suffix else ''}", stats['metrics'],
                      stats['loss'])
        print(f"  {probs_summary(stats, class_names)}")
    if fitted is not None:
        print(f"Calibration on validation: temperature {fitted['temperature']:.3f}, threshold "
              f"{fitted['threshold']}, NLL {fitted['val_nll_before']:.4f} -> {fitted['val_nll_after']:.4f}")
    if output_dir is not None:
        write_reports(output_dir, results, class_names, fitted, info, suffix)
    return fitted


def probs_summary(stats: dict, class_names: Sequence[str]) -> str:
    """One line on how separated the positive-class probabilities are, per true class."""
    if len(class_names) != 2 or len(stats['labels']) == 0:
        return ''
    pos = positive_class_index(class_names)
    parts = []
    for c, name in enumerate(class_names):
        p = stats['probs'][np.asarray(stats['labels']) == c, pos]
        if len(p):
            parts.append(f"true {name}: median p({class_names[pos]}) {np.median(p):.3f}")
    return '; '.join(parts)
