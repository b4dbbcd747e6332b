"""Classification metrics for validation/test sets, and cross-process gathering of predictions."""
import warnings
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from sklearn.metrics import (balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support,
                             roc_auc_score)


def positive_class_index(class_names: Sequence[str], positive_class: str | None = None) -> int:
    """Index of the class treated as positive for ROC-AUC: the given name, else 'rough', else class 1."""
    names = list(class_names)
    if positive_class is not None:
        return names.index(positive_class)
    return names.index("rough") if "rough" in names else 1


def compute_metrics(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str],
                    positive_class: str | None = None) -> dict:
    """Accuracy, balanced accuracy, macro-F1, per-class P/R/F1, confusion matrix and (2 classes) ROC-AUC.

    Predictions are argmax(probs). Classes missing from y_true still get entries (zero support, and 0 where
    a ratio is undefined); macro-F1 averages over all classes. ROC-AUC is None when y_true holds one class.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    names = [str(n) for n in class_names]
    labels = list(range(len(names)))
    y_pred = probs.argmax(axis=1) if len(y_true) else np.zeros(0, dtype=np.int64)

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
    if len(names) == 2:
        pos = positive_class_index(names, positive_class)
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
