"""Classification metrics for validation/test sets, and cross-process gathering of predictions."""
import warnings
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from rheed.calibration import predict_with_threshold


def positive_class_index(class_names: Sequence[str], positive_class: str | None = None) -> int:
    """Index of the positive class: the given name, else 'rough', else the one class named *rough*, else class 1.

    scripts/predict.py uses the same rule (rheed.predict.resolve_positive_class), so ROC-AUC, the stored
    decision threshold and the monitored probability all refer to one class.
    """
    names = [str(n) for n in class_names]
    if positive_class is not None:
        return names.index(positive_class)
    if "rough" in names:
        return names.index("rough")
    rough = [i for i, name in enumerate(names) if "rough" in name.lower()]
    return rough[0] if len(rough) == 1 else 1


def compute_metrics(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str],
                    positive_class: str | None = None, threshold: float | None = None) -> dict:
    """Accuracy, balanced accuracy, macro-F1, per-class P/R/F1, confusion matrix and (2 classes) ROC-AUC.

    Predictions are argmax(probs), or with two classes and a `threshold`: the positive class where its
    probability is >= threshold (rheed.calibration). Classes missing from y_true still get entries (zero support, and 0 where
    a ratio is undefined); macro-F1 averages over all classes. ROC-AUC is None when y_true holds one class.
    """
    # imported here: sklearn (with scipy) adds ~1 s to the start of every command that imports this module
    from sklearn.metrics import (balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support,
                                 roc_auc_score)
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    names = [str(n) for n in class_names]
    labels = list(range(len(names)))
    pos = positive_class_index(names, positive_class) if len(names) == 2 else None
    if len(y_true):
        y_pred = predict_with_threshold(probs, pos, threshold if pos is not None else None)
    else:
        y_pred = np.zeros(0, dtype=np.int64)

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    present = np.unique(y_true)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" on small sets
        # mean recall over the classes that occur in y_true
        balanced = float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else 0.0
    metrics = {
        "num_samples": int(len(y_true)),
        "class_names": names,
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else 0.0,
        "balanced_accuracy": balanced,
        "macro_f1": float(np.mean(f1)),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])} for i, name in enumerate(names)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if threshold is not None and pos is not None:
        metrics["threshold"] = float(threshold)
    if len(names) == 2:
        metrics["positive_class"] = names[pos]
        if len(present) == 2:
            metrics["roc_auc"] = float(roc_auc_score(y_true == pos, probs[:, pos]))
        else:
            metrics["roc_auc"] = None
    return metrics


def gather_predictions(indices: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor,
                       losses: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Collects per-sample results from every process and keeps each dataset index once.

    A DistributedSampler pads the index list with repeats so that every rank gets the same number of
    samples; dropping repeated indices makes every sample count exactly once. Results are sorted by index.
    """
    local = (indices.cpu().numpy(), probs.float().cpu().numpy(), labels.cpu().numpy(), losses.float().cpu().numpy())
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, local)
        merged = [np.concatenate([p[k] for p in parts]) for k in range(4)]
    else:
        merged = list(local)
    idx, first = np.unique(merged[0], return_index=True)
    return idx, merged[1][first], merged[2][first], merged[3][first]
