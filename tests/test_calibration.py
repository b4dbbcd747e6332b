"""Temperature scaling, the validation decision threshold and the reliability statistics."""
import numpy as np
import pytest

from rheed import calibration
from rheed.errors import UserError
from rheed.metrics import compute_metrics, positive_class_index


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_one_is_identity_and_larger_flattens():
    probs = softmax(np.array([[2.0, -1.0], [0.1, 0.3], [-3.0, 4.0]]))
    np.testing.assert_allclose(calibration.apply_temperature(probs, 1.0), probs, atol=1e-9)
    flat = calibration.apply_temperature(probs, 3.0)
    assert np.all(flat.max(axis=1) < probs.max(axis=1))
    np.testing.assert_array_equal(flat.argmax(axis=1), probs.argmax(axis=1))


def test_fit_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(4000, 2))
    labels = np.array([rng.choice(2, p=p) for p in softmax(logits / 2.5)])  # the truth is 2.5x less sure
    temperature = calibration.fit_temperature(softmax(logits), labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    scaled = calibration.apply_temperature(softmax(logits), temperature)
    assert calibration.nll(scaled, labels) < calibration.nll(softmax(logits), labels)
    assert calibration.reliability(scaled, labels)['ece'] < calibration.reliability(softmax(logits), labels)['ece']


def test_separable_validation_runs_do_not_drive_the_temperature_to_its_bound():
    # 8 runs of 10 near-identical frames each, all classified correctly: the plain likelihood keeps falling as
    # T -> 0; counted as 8 observations with the prior on log T, T stays near 1
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8) % 2, 10)
    margin = np.repeat(rng.uniform(1.0, 3.0, 8), 10) + rng.normal(0, 0.05, 80)
    logits = np.stack([np.where(labels == 0, margin, -margin), np.zeros(80)], axis=1)
    probs = softmax(logits)
    assert calibration.fit_temperature(probs, labels, groups=10**12) == pytest.approx(0.05, rel=0.01)
    per_run = calibration.fit_temperature(probs, labels, groups=8)
    per_frame = calibration.fit_temperature(probs, labels)
    assert 0.6 < per_run < 1.0 and per_frame < per_run      # more evidence -> closer to the likelihood fit
    fitted = calibration.calibrate(probs, labels, positive=0, groups=8)
    assert fitted['temperature'] == pytest.approx(per_run) and fitted['num_val_groups'] == 8


def test_a_few_confident_errors_do_not_flatten_every_probability():
    # one of 6 validation runs is confidently wrong: the likelihood alone pushes T up towards 0.5 everywhere
    labels = np.repeat([0, 1, 0, 1, 0, 1], 10)
    sign = np.where(labels == 0, 1.0, -1.0)
    sign[50:] *= -1.0                                     # the last run: wrong, as sure as the others are right
    probs = softmax(np.stack([4.0 * sign, np.zeros(60)], axis=1))
    plain = calibration.fit_temperature(probs, labels, groups=10**12)
    shrunk = calibration.fit_temperature(probs, labels, groups=6)
    assert plain > 2.0 and 1.0 < shrunk < plain / 1.5


def test_best_threshold_fixes_an_imbalanced_argmax():
    # positive class 0 ('rough'): rough frames get p_rough 0.30-0.40, smooth frames 0.05-0.15
    labels = np.array([0] * 10 + [1] * 40)
    p_rough = np.concatenate([np.linspace(0.30, 0.40, 10), np.linspace(0.05, 0.15, 40)])
    probs = np.stack([p_rough, 1 - p_rough], axis=1)
    assert compute_metrics(labels, probs, ['rough', 'smooth'])['macro_f1'] < 0.5  # argmax: all smooth
    threshold = calibration.best_threshold(probs, labels, positive=0)
    assert 0.15 < threshold < 0.30
    metrics = compute_metrics(labels, probs, ['rough', 'smooth'], threshold=threshold)
    assert metrics['macro_f1'] == pytest.approx(1.0)
    assert metrics['threshold'] == pytest.approx(threshold)


def test_best_threshold_prefers_one_half_on_ties_and_one_class():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    assert calibration.best_threshold(probs, labels, positive=0) == pytest.approx(0.5)
    assert calibration.best_threshold(probs[:2], labels[:2], positive=0) == 0.5


def test_reliability_bins_and_perfect_confidence():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = np.array([0, 1, 0])
    rel = calibration.reliability(probs, labels, bins=5)
    assert rel['ece'] == pytest.approx(0.0)
    assert sum(b['count'] for b in rel['bins']) == 3 and rel['bins'][-1]['count'] == 3


def test_positive_class_rule_is_shared_with_predict():
    from rheed.predict import resolve_positive_class
    for names in (['rough', 'smooth'], ['smooth', 'rough'], ['rough_3d', 'smooth_2d'], ['smooth_2d', 'rough_3d'],
                  ['flat', 'islands']):
        assert positive_class_index(names) == resolve_positive_class(names, None)
    assert positive_class_index(['rough_3d', 'smooth_2d']) == 0
    with pytest.raises(UserError, match='--positive_class'):
        resolve_positive_class(['a', 'b', 'c'], None)


def test_predict_uses_the_stored_threshold_only_for_its_class():
    from types import SimpleNamespace

    from conftest import load_script
    stored_threshold = load_script("predict").stored_threshold
    clf = SimpleNamespace(class_names=["rough", "smooth"], threshold=0.23, threshold_class="rough")
    assert stored_threshold(clf, None) == pytest.approx(0.23)
    assert stored_threshold(clf, "smooth") == 0.5  # the threshold was fitted for p(rough)
    assert stored_threshold(SimpleNamespace(class_names=["rough", "smooth"], threshold=None,
                                            threshold_class=None), None) == 0.5


def test_threshold_is_only_used_when_tuning_is_asked_for():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 10 + [1] * 30)
    p_rough = np.clip(np.where(labels == 0, 0.35, 0.1) + rng.normal(0, 0.05, 40), 0.01, 0.99)
    probs = np.stack([p_rough, 1 - p_rough], axis=1)
    default = calibration.calibrate(probs, labels, positive=0)
    assert default['threshold'] is None and 0 < default['val_best_threshold'] < 0.5
    tuned = calibration.calibrate(probs, labels, positive=0, tune_threshold=True)
    assert tuned['threshold'] == pytest.approx(default['val_best_threshold'])

