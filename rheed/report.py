"""Figures and tables for one run directory (fine-tuning or pre-training).

Fine-tuning run (written by main_finetune.py): reads `log.txt`, `test_metrics.json`,
`predictions_test.csv` and, when present, `predictions_val.csv` and the split's `manifest.csv`.
Pre-training run (main_pretrain.py): reads `log.txt` only and plots loss and learning rate.
"""
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from rheed.errors import UserError
from rheed.imageio import read_frame
from rheed.metrics import positive_class_index
from rheed.plotting import (HATCHES, Labels, figure_style, integer_ticks, new_figure, save_figure, series_style,
                            wrap_name)

LOG_FILE = "log.txt"
METRICS_FILE = "test_metrics.json"
MANIFEST_FILE = "manifest.csv"
CALIBRATION_FILE = "calibration.json"
PREDICTION_FILES = {"test": "predictions_test.csv", "val": "predictions_val.csv"}


@dataclass
class Predictions:
    """One predictions_<split>.csv: image paths, true/predicted class indices and class probabilities."""
    paths: list[str]
    labels: np.ndarray
    preds: np.ndarray
    probs: np.ndarray
    class_names: list[str]


def read_log(path: Path) -> list[dict]:
    """Reads a log.txt with one JSON object per line (blank lines skipped)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path} line {number} is not valid JSON ({e.msg})") from None
    if not rows:
        raise UserError(f"{path} is empty: no finished epoch to report")
    return rows


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg})") from None


def read_predictions(path: Path, class_names: list[str]) -> Predictions:
    """Reads a predictions CSV and checks that its probability columns match class_names."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    prob_columns = [c for c in columns if c.startswith("prob_")]
    expected = [f"prob_{name}" for name in class_names]
    missing = [c for c in ["path", "label", "pred"] + expected if c not in columns]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)}")
    if prob_columns != expected:
        raise UserError(f"{path} has classes {[c[5:] for c in prob_columns]}, test_metrics.json has {class_names}")
    try:
        return Predictions(
            paths=[r["path"] for r in rows],
            labels=np.array([int(r["label"]) for r in rows], dtype=np.int64),
            preds=np.array([int(r["pred"]) for r in rows], dtype=np.int64),
            probs=np.array([[float(r[c]) for c in expected] for r in rows],
                           dtype=np.float64).reshape(-1, len(expected)),
            class_names=list(class_names),
        )
    except ValueError as e:
        raise UserError(f"{path} has a non-numeric label/pred/prob value ({e})") from None


def is_finetune_log(log: list[dict]) -> bool:
    return any(key.startswith("test_") for row in log for key in row)


def series(log: list[dict], key: str, scale: float = 1.0) -> tuple[list[float], list[float]]:
    """(epochs, values) of the rows that have `key` with a finite number."""
    xs, ys = [], []
    for i, row in enumerate(log):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            xs.append(row.get("epoch", i))
            ys.append(value * scale)
    return xs, ys


def selected_epoch(log: list[dict], test_metrics: dict) -> int | None:
    """The epoch of the checkpoint that was tested: `checkpoint_epoch`, else the epoch with the best
    validation value of `best_metric` (first one on ties, as a strict-improvement rule saves it)."""
    epoch = test_metrics.get("checkpoint_epoch")
    if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0:
        return epoch
    name = test_metrics.get("best_metric")
    if not name:
        return None
    for key in (name, f"test_{name}"):
        epochs, values = series(log, key)
        if values:
            return epochs[int(np.argmax(values))]
    return None


# ----------------------------------------------------------------------------------------------- tables

def metric_rows(test_metrics: dict) -> list[dict]:
    """Rows (metric, class, test, val) with the numbers exactly as stored in test_metrics.json."""
    val = test_metrics.get("val_metrics") or {}
    rows = []
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "num_samples"):
        if key in test_metrics:
            rows.append({"metric": key, "class": "", "test": test_metrics[key], "val": val.get(key)})
    for name in test_metrics["class_names"]:
        test_cls = test_metrics["per_class"][name]
        val_cls = (val.get("per_class") or {}).get(name, {})
        for key in ("precision", "recall", "f1", "support"):
            rows.append({"metric": key, "class": name, "test": test_cls[key], "val": val_cls.get(key)})
    return rows


def write_metrics_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["metric", "class", "test", "val"])
        for r in rows:
            writer.writerow([r["metric"], r["class"], _csv_value(r["test"]), _csv_value(r["val"])])
    return path


def _csv_value(value) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


TEX_NAMES = {
    "en": {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "macro_f1": "Macro-F1",
           "roc_auc": "ROC-AUC", "num_samples": "Frames", "precision": "Precision", "recall": "Recall",
           "f1": "F1", "support": "Frames", "head": ("Metric", "Class", "Validation", "Test")},
    "zh": {"accuracy": "准确率", "balanced_accuracy": "平衡准确率", "macro_f1": "宏平均F1",
           "roc_auc": "ROC-AUC", "num_samples": "帧数", "precision": "精确率", "recall": "召回率",
           "f1": "F1", "support": "帧数", "head": ("指标", "类别", "验证集", "测试集")},
}


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def _tex_value(metric: str, value) -> str:
    if value is None:
        return "--"
    if metric in ("support", "num_samples"):
        return str(int(value))
    return f"{100.0 * float(value):.2f}"


def write_metrics_tex(rows: list[dict], path: Path, test_metrics: dict, lang: str = "en") -> Path:
    """A booktabs table (needs \\usepackage{booktabs}); rates in percent, counts as integers."""
    names = TEX_NAMES[lang]
    has_val = any(r["val"] is not None for r in rows)
    head = names["head"] if has_val else names["head"][:2] + names["head"][3:]
    model = test_metrics.get("model", "model")
    epoch = test_metrics.get("checkpoint_epoch")
    caption = (f"Test metrics of {latex_escape(str(model))}"
               + (f" (checkpoint of epoch {epoch})" if epoch is not None else "")
               + r". Rates in \%.")
    lines = [r"% Written by scripts/make_report.py; needs \usepackage{booktabs}",
             r"\begin{table}[htbp]", r"\centering", f"\\caption{{{caption}}}", r"\label{tab:metrics}",
             r"\begin{tabular}{ll" + "r" * (len(head) - 2) + "}", r"\toprule",
             " & ".join(head) + r" \\", r"\midrule"]
    previous_class = ""
    for r in rows:
        if r["class"] != previous_class:
            lines.append(r"\midrule")
            previous_class = r["class"]
        cells = [names[r["metric"]], latex_escape(r["class"]) if r["class"] else "--"]
        if has_val:
            cells.append(_tex_value(r["metric"], r["val"]))
        cells.append(_tex_value(r["metric"], r["test"]))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- figures

def plot_training_curves(log: list[dict], labels: Labels, best_epoch: int | None):
    """Fine-tuning: loss (train, val), validation accuracy/macro-F1, learning rate; EMA series when logged."""
    fig = new_figure(10.5, 3.2)
    ax_loss, ax_metric, ax_lr = fig.subplots(1, 3)
    every = max(1, len(log) // 15)
    curves = [
        (ax_loss, "train_loss", 1.0, "train_loss"),
        (ax_loss, "test_loss", 1.0, "val_loss"),
        (ax_loss, "test_loss_ema", 1.0, "val_loss_ema"),
        (ax_metric, "test_accuracy", 1.0, "val_accuracy"),
        (ax_metric, "test_macro_f1", 1.0, "val_macro_f1"),
        (ax_metric, "test_accuracy_ema", 1.0, "val_accuracy_ema"),
        (ax_metric, "test_macro_f1_ema", 1.0, "val_macro_f1_ema"),
    ]
    if not series(log, "test_accuracy")[1]:  # older logs: top-1 in percent only
        curves[3] = (ax_metric, "test_acc1", 0.01, "val_accuracy")
    styles = {ax_loss: 0, ax_metric: 0}
    for ax, key, scale, label in curves:
        xs, ys = series(log, key, scale)
        if ys:
            ax.plot(xs, ys, label=labels(label), **series_style(styles[ax], markevery=every))
            styles[ax] += 1
    xs, ys = series(log, "train_lr")
    ax_lr.plot(xs, ys, label=labels("lr"), **series_style(0, markevery=every))
    ax_loss.set(title=labels("loss_curves"), xlabel=labels("epoch"), ylabel=labels("loss"))
    ax_metric.set(title=labels("val_metrics"), xlabel=labels("epoch"), ylabel=labels("score"))
    ax_lr.set(title=labels("lr_curve"), xlabel=labels("epoch"), ylabel=labels("lr"))
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in (ax_loss, ax_metric, ax_lr):
        integer_ticks(ax)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.3", linestyle=(0, (1, 1)), linewidth=1.2,
                       label=labels("best_epoch", best_epoch))
        ax.legend(loc="best")
    return fig


def plot_pretrain_curves(log: list[dict], labels: Labels):
    fig = new_figure(7.5, 3.0)
    ax_loss, ax_lr = fig.subplots(1, 2)
    every = max(1, len(log) // 15)
    ax_loss.plot(*series(log, "train_loss"), label=labels("train_loss"), **series_style(0, markevery=every))
    ax_lr.plot(*series(log, "train_lr"), label=labels("lr"), **series_style(1, markevery=every))
    ax_loss.set(title=labels("pretrain_loss"), xlabel=labels("epoch"), ylabel=labels("loss"))
    ax_lr.set(title=labels("lr_curve"), xlabel=labels("epoch"), ylabel=labels("lr"))
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    integer_ticks(ax_loss)
    integer_ticks(ax_lr)
    return fig


def plot_confusion(matrix: list[list[int]], class_names: list[str], labels: Labels, split_key: str):
    """Counts and row-normalised (per-true-class recall) matrices side by side, gray colour map."""
    counts = np.asarray(matrix, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    k = len(class_names)
    size = 2.2 + 0.7 * k
    fig = new_figure(2 * size + 0.4, size)
    fig.suptitle(labels("confusion", labels(split_key)))
    for ax, values, is_count in zip(fig.subplots(1, 2), (counts, normalised), (True, False)):
        shown = values / max(values.max(), 1) if is_count else np.nan_to_num(values)
        ax.imshow(shown, cmap="Greys", vmin=0.0, vmax=1.0)
        for i in range(k):
            for j in range(k):
                value = values[i, j]
                text = str(int(value)) if is_count else ("--" if np.isnan(value) else f"{value:.2f}")
                if not is_count and not np.isnan(value):
                    text += f"\n({counts[i, j]})"
                ax.text(j, i, text, ha="center", va="center", fontsize=9,
                        color="white" if shown[i, j] > 0.55 else "black")
        ax.set_xticks(range(k), class_names, rotation=30 if k > 2 else 0, ha="right" if k > 2 else "center")
        ax.set_yticks(range(k), class_names)
        ax.set(xlabel=labels("pred_label"), ylabel=labels("true_label"),
               title=labels("counts") if is_count else labels("row_norm"))
        ax.grid(False)
    return fig


def plot_roc_pr(sets: list[tuple[str, np.ndarray, np.ndarray]], positive: str, labels: Labels):
    """ROC and precision-recall curves; sets = [(label key, y_true (bool), score)]."""
    fig = new_figure(8.0, 3.6)
    ax_roc, ax_pr = fig.subplots(1, 2)
    for i, (key, y_true, score) in enumerate(sets):
        fpr, tpr, _ = roc_curve(y_true, score)
        precision, recall, _ = precision_recall_curve(y_true, score)
        auc = roc_auc_score(y_true, score)
        ap = average_precision_score(y_true, score)
        style = series_style(i, with_marker=False)
        ax_roc.plot(fpr, tpr, label=f"{labels(key)} (AUC = {auc:.3f})", **style)
        ax_pr.step(recall, precision, where="post", label=f"{labels(key)} (AP = {ap:.3f})", **style)
    ax_roc.plot([0, 1], [0, 1], color="0.5", linestyle=(0, (1, 2)), linewidth=1, label=labels("chance"))
    prevalence = float(np.mean(sets[0][1]))
    ax_pr.axhline(prevalence, color="0.5", linestyle=(0, (1, 2)), linewidth=1,
                  label=labels("prevalence", prevalence))
    ax_roc.set(title=labels("roc", positive), xlabel=labels("fpr"), ylabel=labels("tpr"),
               xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
    ax_pr.set(title=labels("pr", positive), xlabel=labels("recall"), ylabel=labels("precision"),
              xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
    ax_roc.legend(loc="lower right")
    ax_pr.legend(loc="best")
    return fig


def plot_reliability(record: dict, labels: Labels):
    """Accuracy vs confidence per bin for the splits in calibration.json (after temperature scaling)."""
    fig = new_figure(4.2, 4.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.5", linestyle=(0, (1, 2)), linewidth=1, label=labels("ideal"))
    for i, split in enumerate(("val", "test")):
        rel = record.get(f"{split}_reliability")
        if not rel:
            continue
        bins = [b for b in rel["bins"] if b["count"]]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins],
                label=f"{labels('set_' + split)} (ECE = {rel['ece']:.3f})", **series_style(i))
    ax.set(title=labels("reliability", record.get("temperature", 1.0)), xlabel=labels("confidence"),
           ylabel=labels("bin_accuracy"), xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
    ax.legend(loc="upper left")
    return fig


def plot_wrong_frames(preds: Predictions, labels: Labels, count: int = 16, columns: int = 4):
    """Grid of the misclassified test frames with the highest probability for the wrong class."""
    wrong = np.flatnonzero(preds.preds != preds.labels)
    confidence = preds.probs[wrong, preds.preds[wrong]] if len(wrong) else np.zeros(0)
    order = wrong[np.argsort(-confidence, kind="stable")][:count]
    if len(order) == 0:
        fig = new_figure(4.0, 1.2)
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, labels("wrong_none"), ha="center", va="center", fontsize=11)
        ax.set_axis_off()
        return fig
    columns = min(columns, len(order))
    rows = math.ceil(len(order) / columns)
    fig = new_figure(2.3 * columns, 2.45 * rows + 0.3)
    fig.suptitle(labels("wrong_title"))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, index in zip(axes, order):
        true_name = preds.class_names[preds.labels[index]]
        pred_name = preds.class_names[preds.preds[index]]
        title = labels("wrong_panel", true_name, pred_name, preds.probs[index, preds.preds[index]])
        try:
            image = read_frame(preds.paths[index])
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
        except (OSError, ValueError, UserError):
            ax.text(0.5, 0.5, labels("missing_image"), ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{title}\n{wrap_name(Path(preds.paths[index]).name)}", fontsize=7)
    return fig


# -------------------------------------------------------------------------------------- fine classes

def find_manifest(preds: Predictions, test_metrics: dict, explicit: Path | None = None) -> Path | None:
    """--manifest if given (must exist); else manifest.csv in the run's data_path or in any folder above
    the predicted images."""
    if explicit is not None:
        if not explicit.is_file():
            raise UserError(f"manifest not found: {explicit}")
        return explicit
    candidates = []
    if test_metrics.get("data_path"):
        candidates.append(Path(test_metrics["data_path"]) / MANIFEST_FILE)
    if preds.paths:
        candidates += [parent / MANIFEST_FILE for parent in Path(preds.paths[0]).parents]
    return next((c for c in candidates if c.is_file()), None)


def read_manifest(path: Path) -> dict[str, dict]:
    """Manifest rows keyed by the resolved absolute image path (manifest paths are relative to its folder)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "fine_class"} - set(reader.fieldnames or [])
        if missing:
            raise UserError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
        return {str((path.parent / row["path"]).resolve()): row for row in reader}


def fine_class_rows(preds: Predictions, manifest: dict[str, dict], split: str) -> list[dict]:
    """Per fine class: how many frames, and how many were predicted as each class."""
    by_name: dict[str, list[dict]] = {}
    for row in manifest.values():
        by_name.setdefault(Path(row["path"]).name, []).append(row)
    counts: dict[str, np.ndarray] = {}
    true_label: dict[str, str] = {}
    for path, label, pred in zip(preds.paths, preds.labels, preds.preds):
        row = manifest.get(str(Path(path).resolve()))
        if row is None and len(by_name.get(Path(path).name, [])) == 1:  # split folder moved or copied
            row = by_name[Path(path).name][0]
        if row is None:
            continue
        fine = row["fine_class"]
        counts.setdefault(fine, np.zeros(len(preds.class_names), dtype=np.int64))[pred] += 1
        true_label[fine] = preds.class_names[label]
    rows = []
    for fine in sorted(counts):
        n = int(counts[fine].sum())
        row = {"split": split, "fine_class": fine, "label": true_label[fine], "n": n}
        for i, name in enumerate(preds.class_names):
            row[f"pred_{name}"] = int(counts[fine][i])
        for i, name in enumerate(preds.class_names):
            row[f"frac_{name}"] = counts[fine][i] / n
        row["correct"] = row[f"frac_{true_label[fine]}"]
        rows.append(row)
    return rows


def write_rows_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_fine_classes(rows: list[dict], class_names: list[str], labels: Labels):
    """Horizontal stacked bars: fraction of each fine class's test frames predicted as each class."""
    fig = new_figure(6.5, 0.7 * len(rows) + 1.6)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    gray_levels = np.linspace(0.92, 0.35, len(class_names))
    for i, name in enumerate(class_names):
        frac = np.array([r[f"frac_{name}"] for r in rows])
        ax.barh(y, frac, left=left, color=str(gray_levels[i]), edgecolor="black", hatch=HATCHES[i % len(HATCHES)],
                label=labels("predicted_as", name))
        for j, r in enumerate(rows):
            if r[f"pred_{name}"]:
                ax.text(left[j] + frac[j] / 2, j, str(r[f"pred_{name}"]), ha="center", va="center", fontsize=8,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1, "alpha": 0.8})
        left += frac
    ax.set_yticks(y, [f"{r['fine_class']}\n(n={r['n']}, {r['label']})" for r in rows])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel=labels("fraction"), title=labels("fine_breakdown"))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(rows) < 3 else -0.18), ncol=len(class_names),
              frameon=False)
    ax.grid(axis="y", visible=False)
    return fig


# ---------------------------------------------------------------------------------------------- driver

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
