"""torchvision baselines through the same fine-tuning, prediction and Grad-CAM path as ConvNeXt-V2."""
import csv
import json

import numpy as np
import pytest
import torch
import torchvision

from conftest import run_cli
from models import baselines


@pytest.mark.parametrize("name", baselines.BASELINE_NAMES)
def test_each_baseline_has_a_head_and_classifies(name):
    model = baselines.build_baseline(name, num_classes=3, drop_path_rate=0.1, head_init_scale=0.5).eval()
    assert isinstance(model.head, torch.nn.Linear) and model.head.out_features == 3
    assert model.get_submodule(model.gradcam_layer) is not None
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)
    # torchvision's 1000-class classifier is gone from the body
    assert all(m.out_features != 1000 for m in model.body.modules() if isinstance(m, torch.nn.Linear))


def test_torchvision_state_dict_names_map_onto_the_wrapper():
    reference = torchvision.models.resnet18(weights=None, num_classes=1000)
    mapped = baselines.from_torchvision_keys({"model": reference.state_dict()})
    assert "body.conv1.weight" in mapped and "body.fc.weight" in mapped
    assert baselines.from_torchvision_keys(mapped) is mapped


def test_resnet18_finetunes_from_torchvision_weights_predicts_and_explains(tiny_split, tmp_path):
    reference = torchvision.models.resnet18(weights=None, num_classes=1000)
    weights = tmp_path / "resnet18_imagenet.pth"
    torch.save(reference.state_dict(), weights)       # the layout torchvision's download gives
    out = tmp_path / "ft"
    proc = run_cli(["main_finetune.py", "--device", "cpu", "--model", "resnet18", "--data_set", "RHEED",
                    "--data_path", tiny_split, "--input_size", "64", "--epochs", "1", "--batch_size", "4",
                    "--lr", "1e-3", "--warmup_epochs", "0", "--num_workers", "0", "--pin_mem", "false",
                    "--aug_mode", "rheed", "--subtract_background", "true", "--train_stem_bias", "false",
                    "--head_init_scale", "1.0", "--finetune", weights, "--output_dir", out,
                    "--focal_gamma", "2", "--tta_flip", "true"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Weights not loaded from the checkpoint: ['head.weight', 'head.bias']" in proc.stdout
    trained = torch.load(out / "checkpoint-best.pth", weights_only=True)
    assert trained["args"]["model"] == "resnet18" and "body.layer4.1.conv2.weight" in trained["model"]
    assert trained["args"]["tta_flip"] is True and "FocalLoss" in proc.stdout  # criterion = FocalLoss(...)
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["model"] == "resnet18" and metrics["class_names"] == ["rough", "smooth"]

    frames = sorted((tiny_split / "test").rglob("*.png"))[:2]
    pred = run_cli(["scripts/predict.py", "--checkpoint", out / "checkpoint-best.pth", "--input", frames[0].parent,
                    "--out", tmp_path / "pred", "--no_progress"], timeout=300)
    assert pred.returncode == 0, pred.stderr[-2000:]
    with open(tmp_path / "pred" / "predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == len(list(frames[0].parent.glob("*.png")))
    cam = run_cli(["scripts/gradcam.py", "--checkpoint", out / "checkpoint-best.pth", "--images", *frames,
                   "--out", tmp_path / "cam", "--dpi", "40"], timeout=300)
    assert cam.returncode == 0, cam.stderr[-2000:]
    saved = np.load(tmp_path / "cam" / "gradcam.npz")
    assert saved["maps"].shape[:2] == (2, 2) and str(saved["layer"]) == "body.layer4"


def test_layer_decay_is_refused_for_baselines(tiny_split, tmp_path):
    proc = run_cli(["main_finetune.py", "--device", "cpu", "--model", "resnet18", "--data_path", tiny_split,
                    "--layer_decay", "0.9", "--output_dir", tmp_path / "x"], timeout=120)
    assert proc.returncode == 1 and "--layer_decay" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
