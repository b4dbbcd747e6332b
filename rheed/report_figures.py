"""The figures of a run report: training curves, confusion matrices, ROC/PR, reliability, wrong frames."""
import math
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from rheed.errors import UserError
from rheed.imageio import read_frame
from rheed.plotting import Labels, integer_ticks, new_figure, series_style, wrap_name
from rheed.run_files import Predictions, series


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
