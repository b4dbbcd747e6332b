"""Classical streak/spot baseline (rheed/classical.py, scripts/classical_baseline.py)."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from test_learning import rheed_like_frame, write_split


def test_features_are_flip_symmetric_and_separate_streaks_from_spots():
    from rheed.classical import FEATURE_NAMES, frame_features
    rng = np.random.default_rng(3)
    smooth = Image.fromarray(rheed_like_frame(rng, rough=False, h=180, w=240))
    rough = Image.fromarray(rheed_like_frame(rng, rough=True, h=180, w=240))
    f_smooth, f_rough = frame_features(smooth), frame_features(rough)
    assert f_smooth.shape == (len(FEATURE_NAMES),) and np.all(np.isfinite(f_smooth))
    flipped = smooth.transpose(Image.FLIP_TOP_BOTTOM).transpose(Image.FLIP_LEFT_RIGHT)
    np.testing.assert_allclose(frame_features(flipped), f_smooth, rtol=0.05, atol=0.05)
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    assert f_smooth[index["streak_ratio"]] > f_rough[index["streak_ratio"]] + 1.0
    assert f_smooth[index["vertical_coherence"]] > f_rough[index["vertical_coherence"]]
    assert f_smooth[index["elongation"]] > f_rough[index["elongation"]]


def test_cli_fits_reports_like_a_run_and_refuses_another_runs_folder(tmp_path):
    data = write_split(tmp_path / "data")
    out = tmp_path / "classical"
    proc = run_cli(["scripts/classical_baseline.py", "--data_path", str(data), "--output_dir", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["class_names"] == ["rough", "smooth"] and metrics["num_samples"] == 32
    assert metrics["macro_f1"] >= 0.95 and metrics["roc_auc"] >= 0.99, metrics
    with open(out / "predictions_test.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 32 and {"prob_rough", "prob_smooth"} <= set(rows[0])
    assert sum(r["label"] == r["pred"] for r in rows) / len(rows) == pytest.approx(metrics["accuracy"])
    assert "test macro-F1" in proc.stdout

    before = (out / "test_metrics.json").read_bytes()
    other = write_split(tmp_path / "other", seed=1)
    proc = run_cli(["scripts/classical_baseline.py", "--data_path", str(other), "--output_dir", str(out)], timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error:") and "belongs to another run" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and (out / "test_metrics.json").read_bytes() == before


def test_single_class_training_set_is_refused(tmp_path):
    data = write_split(tmp_path / "data")
    for f in (data / "train" / "rough").iterdir():
        f.unlink()
    (data / "train" / "rough").rmdir()
    proc = run_cli(["scripts/classical_baseline.py", "--data_path", str(data), "--output_dir", str(tmp_path / "o")],
                   timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error:"), proc.stderr[-2000:]
