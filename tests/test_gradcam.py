"""Grad-CAM on a tiny ConvNeXt-V2 atto classifier (64 px) with random, non-trivial weights."""
import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import write_pattern_image, run_script_main
from models import convnextv2
from rheed.errors import UserError
from rheed.gradcam import GradCAM, class_maps

SIZE = 64


def gradcam_cli(argv):
    run_script_main("gradcam", argv)


def tiny_classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    model = convnextv2.convnextv2_atto(num_classes=2)
    with torch.no_grad():  # GRN starts as identity (zeros); give it and the head some weight
        for name, param in model.named_parameters():
            if name.endswith(("grn.gamma", "grn.beta")):
                param.normal_(0, 0.1)
        model.head.weight.normal_(0, 0.5)
    return model.eval()


def reference_cam(model, x, k):
    """Grad-CAM written out without hooks: run the stages by hand and differentiate the class logit."""
    a = x
    for i in range(4):
        a = model.stages[i](model.downsample_layers[i](a))
    logits = model.head(model.norm(a.mean(dim=(2, 3))))
    grad, = torch.autograd.grad(logits[:, k].sum(), a)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return ((cam - cam.amin(dim=(1, 2), keepdim=True)) / (cam.amax(dim=(1, 2), keepdim=True)
                                                           - cam.amin(dim=(1, 2), keepdim=True))).detach().numpy()


def test_maps_have_input_size_unit_range_and_match_the_definition():
    model = tiny_classifier()
    x = torch.randn(2, 3, SIZE, SIZE)
    maps, classes, probs = class_maps(model, x)
    assert maps.shape == (2, 2, SIZE, SIZE) and classes.shape == (2, 2)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    for m in maps[:, 0]:  # the predicted class: not constant for a model with non-trivial weights, spans [0, 1]
        assert m.min() == 0.0 and m.max() == pytest.approx(1.0)
    assert np.array_equal(classes[:, 0], probs.argmax(axis=1)) and np.all(classes[:, 0] != classes[:, 1])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    for j in range(2):
        for i in range(2):
            if np.ptp(maps[i, j]) > 0:
                np.testing.assert_allclose(maps[i, j], reference_cam(model, x[i:i + 1], classes[i, j])[0], atol=1e-4)


def test_hook_is_removed_and_unknown_layer_is_refused():
    model = tiny_classifier()
    with GradCAM(model, "stages.2") as cam:
        maps, _ = cam(torch.randn(1, 3, SIZE, SIZE), [0])
        assert maps.shape == (1, SIZE, SIZE)
    assert not model.stages[2]._forward_hooks
    with pytest.raises(UserError, match="no layer 'stages.9'"):
        GradCAM(model, "stages.9")


def test_cli_on_a_finetune_checkpoint(tmp_path):
    model = tiny_classifier()
    ckpt = tmp_path / "checkpoint-best.pth"
    args = {"model": "convnextv2_atto", "input_size": SIZE, "nb_classes": 2, "data_set": "RHEED"}
    torch.save({"model": model.state_dict(), "args": args, "epoch": 3, "class_names": ["rough", "smooth"],
                "calibration": {"temperature": 2.5}}, ckpt)
    rng = np.random.default_rng(0)
    images = []
    for i, kind in enumerate(("rough", "smooth")):
        images.append(tmp_path / f"{kind}_{i}.png")
        write_pattern_image(images[-1], kind, 80, rng)
    out = tmp_path / "cam"
    gradcam_cli(["--checkpoint", ckpt, "--images", *images, "--out", out, "--dpi", 60])
    for name in ("gradcam.png", "gradcam.pdf", "gradcam.csv", "gradcam.npz"):
        assert (out / name).stat().st_size > 0
    saved = np.load(out / "gradcam.npz")
    assert saved["maps"].shape == (2, 2, SIZE, SIZE)
    assert saved["maps"].min() >= 0 and saved["maps"].max() <= 1
    assert list(saved["class_names"]) == ["rough", "smooth"]
    # the probabilities are the calibrated ones that predict.py reports for the same frames
    from rheed.inference import load_classifier
    expected = load_classifier(ckpt).predict_paths([str(p) for p in images])
    with open(out / "gradcam.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["prob_rough"]) for r in rows] == pytest.approx(expected[:, 0].tolist(), abs=1e-6)
    assert np.allclose(saved["probs"], expected, atol=1e-6)

    with pytest.raises(SystemExit) as exit_info:
        gradcam_cli(["--checkpoint", ckpt, "--images", images[0], "--layer", "stages.7", "--out", out])
    assert str(exit_info.value.code).startswith("error: the model has no layer 'stages.7'")


def test_cli_corrupt_image_is_one_line_error(tmp_path):
    model = tiny_classifier()
    ckpt = tmp_path / "checkpoint-best.pth"
    args = {"model": "convnextv2_atto", "input_size": SIZE, "nb_classes": 2, "data_set": "RHEED"}
    torch.save({"model": model.state_dict(), "args": args, "epoch": 3, "class_names": ["rough", "smooth"]}, ckpt)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(SystemExit) as exit_info:
        gradcam_cli(["--checkpoint", ckpt, "--images", broken, "--out", tmp_path / "cam"])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "broken.png" in message and "\n" not in message
