"""Post-hoc calibration of a classifier on the validation set: temperature scaling and a decision threshold.

- Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): one scalar T
  divides the logits. It changes the probabilities, never their ranking, so ROC-AUC is unchanged. T is the
  maximum a posteriori estimate: the validation negative log-likelihood plus a normal prior on log T
  (centred on T = 1, sd `PRIOR_LOG_SD`). The likelihood counts as many independent observations as the
  validation set has growth runs (`groups`): neighbouring frames of one run are nearly copies of each other.
  The plain likelihood fit overfits such a set: when the validation frames are all classified correctly it
  drives T to its lower bound (probabilities of exactly 0 or 1 on new frames, right or wrong), after a few
  confident errors to a large T (every probability pulled towards 0.5); docs/EXPERIMENTS.md section 25.
- Decision threshold (binary tasks): predict the positive class when its calibrated probability is
  >= threshold; the threshold maximises validation macro-F1 (ties: the one closest to 0.5), which suits
  the imbalanced smooth/rough task better than argmax.

Probabilities stand in for logits: log(p) differs from the logits by a per-row constant, which softmax
ignores, so `apply_temperature(probs, T)` equals softmax(logits / T).
"""
from __future__ import annotations

import numpy as np

EPS = 1e-12
PRIOR_LOG_SD = 0.5      # log T ~ N(0, 0.5^2): T within a factor of 1.65 of 1 at one sd


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / T), row-wise."""
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    p = np.clip(np.asarray(probs)[np.arange(len(labels)), np.asarray(labels)], EPS, 1.0)
    return float(-np.log(p).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray, groups: int | None = None,
                    bounds: tuple = (0.05, 20.0)) -> float:
    """The T in `bounds` that minimises mean NLL of apply_temperature(probs, T) + (log T)^2 / (2 sd^2 groups):
    the posterior mode with `groups` independent observations (None: one per frame); 1.0 for an empty set."""
    from scipy.optimize import minimize_scalar  # imported here, as sklearn in rheed.metrics: slow to import
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 1.0
    n = max(int(groups if groups is not None else len(labels)), 1)
    weight = 1.0 / (2.0 * PRIOR_LOG_SD ** 2 * n)
    result = minimize_scalar(lambda log_t: nll(apply_temperature(probs, float(np.exp(log_t))), labels)
                             + weight * log_t ** 2,
                             bounds=tuple(np.log(bounds)), method='bounded', options={'xatol': 1e-4})
    return float(np.exp(result.x))


def predict_with_threshold(probs: np.ndarray, positive: int, threshold: float | None) -> np.ndarray:
    """Class indices: argmax, or for two classes with a threshold: positive where p_positive >= threshold."""
    probs = np.asarray(probs)
    if threshold is None or probs.shape[1] != 2:
        return probs.argmax(axis=1)
    return np.where(probs[:, positive] >= threshold, positive, 1 - positive)


def best_threshold(probs: np.ndarray, labels: np.ndarray, positive: int) -> float:
    """Threshold on p_positive that maximises macro-F1 over `labels` (ties: closest to 0.5).

    Candidates are the midpoints between consecutive distinct probabilities (plus 0.5), so the chosen
    threshold sits between the validation scores rather than on one of them.
    """
    from sklearn.metrics import f1_score  # imported here, as in rheed.metrics: slow to import
    probs, labels = np.asarray(probs), np.asarray(labels)
    if probs.shape[1] != 2 or len(np.unique(labels)) < 2:
        return 0.5
    scores = np.unique(probs[:, positive])
    candidates = np.unique(np.concatenate([[0.5], (scores[1:] + scores[:-1]) / 2]))
    best, best_f1 = 0.5, -1.0
    for t in candidates:
        f1 = f1_score(labels, predict_with_threshold(probs, positive, t), average='macro', zero_division=0)
        if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_f1 = float(t), f1
    return best


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict:
    """Confidence (max probability) histogram: per bin mean confidence, accuracy and count, plus the ECE."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence = probs.max(axis=1) if len(labels) else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels) if len(labels) else np.zeros(0, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        conf = float(confidence[sel].mean()) if n else None
        acc = float(correct[sel].mean()) if n else None
        if n:
            ece += n / len(labels) * abs(acc - conf)
        rows.append({'low': float(edges[b]), 'high': float(edges[b + 1]), 'count': n,
                     'confidence': conf, 'accuracy': acc})
    return {'bins': rows, 'ece': float(ece)}


def calibrate(probs: np.ndarray, labels: np.ndarray, positive: int | None, tune_threshold: bool = False,
              groups: int | None = None) -> dict:
    """Fits T on validation predictions (`groups`: the number of growth runs among them, see fit_temperature);
    returns it with before/after NLL and ECE. For two classes the threshold that maximises validation macro-F1
    is recorded as `val_best_threshold`; it becomes the decision `threshold` only with `tune_threshold`
    (otherwise None: argmax)."""
    temperature = fit_temperature(probs, labels, groups)
    scaled = apply_temperature(probs, temperature)
    val_best = best_threshold(scaled, labels, positive) if positive is not None else None
    return {'temperature': temperature, 'threshold': val_best if tune_threshold else None,
            'val_best_threshold': val_best, 'positive_index': positive,
            'val_nll_before': nll(probs, labels), 'val_nll_after': nll(scaled, labels),
            'val_ece_before': reliability(probs, labels)['ece'], 'val_ece_after': reliability(scaled, labels)['ece'],
            'num_val_samples': int(len(labels)), 'num_val_groups': groups}
