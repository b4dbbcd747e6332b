"""Reading what a training run wrote: log.txt, test_metrics.json, predictions_<split>.csv."""
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rheed.errors import UserError

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
    validation value of `best_metric` (first one on ties, as a strict-improvement rule saves it), or the
    final epoch for best_metric 'last'."""
    epoch = test_metrics.get("checkpoint_epoch")
    if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0:
        return epoch
    name = test_metrics.get("best_metric")
    if not name:
        return None
    if name == "last":
        epochs, _ = series(log, "epoch")
        return int(max(epochs)) if epochs else None
    for key in (name, f"test_{name}"):
        epochs, values = series(log, key)
        if values:
            return epochs[int(np.argmax(values))]
    return None
