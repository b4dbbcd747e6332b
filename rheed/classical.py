"""A classical smooth/rough baseline: a handful of streak/spot features per frame and a logistic regression.

A thesis table needs a reference that is not a neural network. The features describe what a RHEED expert
looks at, after a whole-frame background subtraction with the global level (SubtractBackground('global')):
- streak_ratio: log of horizontal over vertical gradient energy of the band-passed frame (streaks are long
  along the vertical, so horizontal gradients dominate; spots give about as much of both);
- vertical_coherence: how much more the frame correlates with itself one feature-width down than one
  feature-width across;
- peak_count: log(1 + number of bright local maxima) (a spot grid has many, streaks few);
- elongation: median vertical/horizontal extent (log) of the bright blobs;
- bright_fraction: the fraction of the frame above a fifth of its full scale (diffuse 3D backgrounds).
Every feature is symmetric under left-right and up-down flips (cameras are mounted either way).
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from rheed.augment import SubtractBackground

FEATURE_NAMES = ('streak_ratio', 'vertical_coherence', 'peak_count', 'elongation', 'bright_fraction')
WORK_WIDTH = 256


def _normalised(image: Image.Image) -> np.ndarray:
    """Background-subtracted grayscale in [0, 1], resized to WORK_WIDTH columns (aspect kept)."""
    flat = SubtractBackground('global')(image.convert('RGB')).convert('L')
    height = max(8, round(flat.height * WORK_WIDTH / flat.width))
    return np.asarray(flat.resize((WORK_WIDTH, height), Image.BILINEAR), dtype=np.float32) / 255.0


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denom if denom > 0 else 0.0


def frame_features(image: Image.Image) -> np.ndarray:
    g = _normalised(image)
    band = ndimage.gaussian_filter(g, 1.0) - ndimage.gaussian_filter(g, 6.0)
    gx, gy = np.diff(band, axis=1)[:-1, :], np.diff(band, axis=0)[:, :-1]
    streak_ratio = np.log(((gx ** 2).mean() + 1e-9) / ((gy ** 2).mean() + 1e-9))
    shift = 4
    coherence = _correlation(band[shift:], band[:-shift]) - _correlation(band[:, shift:], band[:, :-shift])
    smooth = ndimage.gaussian_filter(g, 1.0)
    level = 0.3 * float(smooth.max()) if smooth.max() > 0 else 1.0
    peaks = (smooth == ndimage.maximum_filter(smooth, size=5)) & (smooth > level)
    blobs, n_blobs = ndimage.label(smooth > level)
    ratios = []
    for index in range(1, min(n_blobs, 200) + 1):
        rows, cols = np.nonzero(blobs == index)
        if len(rows) >= 3:
            ratios.append(np.log((rows.std() + 0.5) / (cols.std() + 0.5)))
    elongation = float(np.median(ratios)) if ratios else 0.0
    bright = float((g > 0.2).mean())
    return np.array([streak_ratio, coherence, np.log1p(peaks.sum()), elongation, bright], dtype=np.float64)


def make_classifier(seed: int = 0):
    """Standardised features -> logistic regression with class weights inversely proportional to counts."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(class_weight='balanced', max_iter=1000,
                                                              random_state=seed))


def split_features(root, split: str, loader):
    """(features, the ImageFolder of root/<split>/<class>/ frames: samples, targets, classes)."""
    from torchvision.datasets import ImageFolder
    from rheed.errors import UserError
    folder = f"{root}/{split}"
    try:
        dataset = ImageFolder(folder, loader=loader)
    except (FileNotFoundError, OSError) as e:
        raise UserError(f"no {split} frames in {root}: {e}") from e
    features = np.stack([frame_features(dataset.loader(path)) for path, _ in dataset.samples])
    return features, dataset


def run_classical_baseline(data_path: str, output_dir: str, bit_scaling: str = 'percentile', seed: int = 0,
                           overwrite: bool = False) -> dict:
    """Fits on train/, evaluates on test/ (val/ is not needed: nothing is tuned); writes test_metrics.json,
    predictions_test.csv and features.csv like a fine-tuning run, so compare_runs.py tabulates it too."""
    import csv
    import os

    from rheed import runs
    from rheed.atomic import write_json_atomic
    from rheed.errors import UserError
    from rheed.finetune_report import write_predictions
    from rheed.imageio import make_loader
    from rheed.metrics import compute_metrics

    runs.check_output_dir(output_dir)
    identity = runs.run_identity('classical_baseline', 'logistic_regression', data_path)
    runs.check_ownership(output_dir, identity, overwrite)
    loader = make_loader(bit_scaling)
    x_train, train_set = split_features(data_path, 'train', loader)
    x_test, test_set = split_features(data_path, 'test', loader)
    classes, y_train, y_test = list(train_set.classes), np.asarray(train_set.targets), np.asarray(test_set.targets)
    if list(test_set.classes) != classes:
        raise UserError(f"train classes {classes} and test classes {list(test_set.classes)} differ")
    if len(set(y_train.tolist())) < 2:
        raise UserError(f"the training frames in {data_path}/train hold a single class")
    model = make_classifier(seed).fit(x_train, y_train)
    probs = model.predict_proba(x_test)
    metrics = compute_metrics(y_test, probs, classes)
    coefficients = model[-1].coef_
    metrics.update(model='classical: streak/spot features + logistic regression',
                   feature_names=list(FEATURE_NAMES), coefficients=coefficients.tolist(),
                   train_samples=int(len(y_train)))
    if overwrite:
        runs.clear_previous_run(output_dir)
    runs.record_owner(output_dir, identity)
    write_json_atomic(os.path.join(output_dir, 'test_metrics.json'), metrics)

    stats = {'indices': range(len(test_set)), 'labels': y_test, 'preds': probs.argmax(axis=1), 'probs': probs}
    write_predictions(os.path.join(output_dir, 'predictions_test.csv'), test_set, stats, classes)
    with open(os.path.join(output_dir, 'features_test.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['path', 'label'] + list(FEATURE_NAMES))
        for (path, label), row in zip(test_set.samples, x_test):
            writer.writerow([path, classes[int(label)]] + [f'{v:.6f}' for v in row])
    return metrics
