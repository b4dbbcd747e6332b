"""Figures and tables for one run directory (fine-tuning or pre-training): the driver behind make_report.py.

Fine-tuning run (written by main_finetune.py): reads `log.txt`, `test_metrics.json`,
`predictions_test.csv` and, when present, `predictions_val.csv` and the split's `manifest.csv`.
Pre-training run (main_pretrain.py): reads `log.txt` only and plots loss and learning rate.
"""
from pathlib import Path

import numpy as np

from rheed.errors import UserError
from rheed.metrics import positive_class_index
from rheed.plotting import figure_style, save_figure
from rheed.report_figures import (plot_confusion, plot_pretrain_curves, plot_reliability, plot_roc_pr,
                                  plot_training_curves, plot_wrong_frames)
from rheed.report_fine_classes import fine_class_rows, find_manifest, plot_fine_classes, read_manifest
from rheed.report_tables import metric_rows, write_metrics_csv, write_metrics_tex, write_rows_csv
from rheed.run_files import (CALIBRATION_FILE, LOG_FILE, METRICS_FILE, PREDICTION_FILES, Predictions,
                             is_finetune_log, read_json, read_log, read_predictions, selected_epoch)


def make_report(run_dir: Path, out_dir: Path | None = None, lang: str = "en", manifest: Path | None = None,
                dpi: int = 300, n_wrong: int = 16) -> list[Path]:
    """Writes the report of a run directory into out_dir (default RUN_DIR/report); returns the files."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    if not (run_dir / LOG_FILE).is_file():
        raise UserError(f"{run_dir} has no {LOG_FILE} (not a run directory of main_finetune.py/main_pretrain.py?)")
    if manifest is not None and not Path(manifest).is_file():
        raise UserError(f"manifest not found: {manifest}")
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"
    log = read_log(run_dir / LOG_FILE)
    if not is_finetune_log(log) and not (run_dir / METRICS_FILE).exists():
        with figure_style(lang) as labels:
            return save_figure(plot_pretrain_curves(log, labels), out_dir, "training_curves", dpi)

    missing = [name for name in (METRICS_FILE, PREDICTION_FILES["test"]) if not (run_dir / name).is_file()]
    if missing:
        raise UserError(f"{run_dir} lacks {', '.join(missing)} (written by main_finetune.py when training ends)")
    test_metrics = read_json(run_dir / METRICS_FILE)
    for key in ("class_names", "per_class", "confusion_matrix"):
        if key not in test_metrics:
            raise UserError(f"{run_dir / METRICS_FILE} has no '{key}'")
    class_names = list(test_metrics["class_names"])
    preds = {"test": read_predictions(run_dir / PREDICTION_FILES["test"], class_names)}
    if (run_dir / PREDICTION_FILES["val"]).is_file():
        preds["val"] = read_predictions(run_dir / PREDICTION_FILES["val"], class_names)

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = metric_rows(test_metrics)
    written = [write_metrics_csv(rows, out_dir / "metrics.csv"),
               write_metrics_tex(rows, out_dir / "metrics.tex", test_metrics, "zh" if lang == "zh" else "en")]
    with figure_style(lang) as labels:
        written += save_figure(plot_training_curves(log, labels, selected_epoch(log, test_metrics)),
                               out_dir, "training_curves", dpi)
        val_metrics = test_metrics.get("val_metrics") or {}
        matrices = {"test": test_metrics["confusion_matrix"], "val": val_metrics.get("confusion_matrix")}
        for split, matrix in matrices.items():
            if matrix is None and split in preds:
                matrix = _confusion(preds[split])
            if matrix is not None:
                written += save_figure(plot_confusion(matrix, class_names, labels, f"split_{split}"),
                                       out_dir, f"confusion_{split}", dpi)
        if len(class_names) == 2:
            positive = test_metrics.get("positive_class") or class_names[positive_class_index(class_names)]
            pos = class_names.index(positive)
            sets = [(f"set_{split}", p.labels == pos, p.probs[:, pos]) for split, p in preds.items()
                    if len(np.unique(p.labels)) == 2]
            if sets:
                written += save_figure(plot_roc_pr(sets, positive, labels), out_dir, "roc_pr", dpi)
        if (run_dir / CALIBRATION_FILE).is_file():
            written += save_figure(plot_reliability(read_json(run_dir / CALIBRATION_FILE), labels), out_dir,
                                   "reliability", dpi)
        manifest_path = find_manifest(preds["test"], test_metrics, manifest)
        if manifest_path is not None:
            entries = read_manifest(manifest_path)
            fine_rows = {split: fine_class_rows(p, entries, split) for split, p in preds.items()}
            if fine_rows["test"]:
                written.append(write_rows_csv(fine_rows["test"] + fine_rows.get("val", []),
                                              out_dir / "fine_class_breakdown.csv"))
                written += save_figure(plot_fine_classes(fine_rows["test"], class_names, labels),
                                       out_dir, "fine_class_breakdown", dpi)
        written += save_figure(plot_wrong_frames(preds["test"], labels, n_wrong), out_dir, "wrong_test_frames", dpi)
    return written


def _confusion(preds: Predictions) -> list[list[int]]:
    k = len(preds.class_names)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (preds.labels, preds.preds), 1)
    return matrix.tolist()
