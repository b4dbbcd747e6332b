"""The launchers' own defaults must learn an easy RHEED-like task from scratch (issue #10)."""
import json
import sys

import numpy as np
import torch
from PIL import Image

from conftest import run_cli, run_launcher


def rheed_like_frame(rng: np.random.Generator, rough: bool, h: int = 90, w: int = 120) -> np.ndarray:
    """Dark screen with diffuse background and a shadow edge; vertical streaks (smooth) or spot columns (rough)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = rng.normal(rng.uniform(10, 30), 3, (h, w))
    spacing = rng.uniform(16, 24)
    centre = w / 2 + rng.uniform(-5, 5)
    top, bottom = h * rng.uniform(0.1, 0.2), h * rng.uniform(0.8, 0.9)
    for k in range(-4, 5):
        x0 = centre + k * spacing
        if rough:
            for y0 in np.arange(top + 4, bottom - 2, spacing * rng.uniform(0.7, 0.9)):
                img += 110 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 2.4 ** 2))
        else:
            img += 100 * np.exp(-((xx - x0) ** 2) / (2 * 1.8 ** 2)) * (yy > top) * (yy < bottom)
    img[int(bottom) + 3:] *= 0.25  # below the shadow edge
    img = img * rng.uniform(0.6, 1.4) + rng.normal(0, 5, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_split(root, seed=0):
    rng = np.random.default_rng(seed)
    for split, n_smooth, n_rough in (("train", 36, 12), ("val", 12, 4), ("test", 24, 8)):
        for cls in ("rough", "smooth"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n_rough if cls == "rough" else n_smooth):
                frame = rheed_like_frame(rng, cls == "rough")
                Image.fromarray(frame).save(root / split / cls / f"{cls}_{i:03d}.png")
    return root


def test_cpu_launcher_defaults_learn_streaks_vs_spots_from_scratch(tmp_path):
    """Issue #10: only DATA, EPOCHS (<= 10) and INPUT_SIZE set; a few dozen training frames."""
    data, out = write_split(tmp_path / "data"), tmp_path / "run"
    env = dict(PYTHON=sys.executable, DATA=str(data), OUTPUT=str(out), EPOCHS="10", INPUT_SIZE="64",
               OMP_NUM_THREADS="2")
    proc = run_launcher("run_finetune_cpu.sh", env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    print(f"launcher defaults, 10 epochs x 9 steps (48 frames, 3 passes per epoch): test macro-F1 "
          f"{metrics['macro_f1']:.3f}, "
          f"ROC-AUC {metrics['roc_auc']:.3f}")
    assert metrics["roc_auc"] >= 0.99
    assert metrics["macro_f1"] >= 0.95
    assert metrics["best_metric"] == "last" and metrics["checkpoint_epoch"] == 9  # the final epoch is tested


def test_frozen_stem_bias_stays_at_its_initial_value(tmp_path):
    data, out = write_split(tmp_path / "data", seed=1), tmp_path / "run"
    run_cli(["main_finetune.py", "--device", "cpu", "--model", "convnextv2_atto", "--data_set", "RHEED",
             "--data_path", data, "--input_size", "64", "--epochs", "1", "--batch_size", "8", "--lr", "1e-3",
             "--warmup_epochs", "0", "--num_workers", "0", "--pin_mem", "false", "--aug_mode", "rheed",
             "--subtract_background", "true", "--train_stem_bias", "false", "--disable_eval", "true",
             "--output_dir", out], check=True)
    state = torch.load(out / "checkpoint-0.pth", weights_only=True)["model"]
    assert torch.all(state["downsample_layers.0.0.bias"] == 0)  # initialised to zero, never updated
    assert state["downsample_layers.0.1.bias"].abs().max() > 0  # the LayerNorm after it did train
    assert state["stages.0.0.dwconv.bias"].abs().max() > 0
