"""scripts/export_model.py: TorchScript and ONNX exports match the eager model; preprocessing is described."""
import json
import warnings

import numpy as np
import pytest
import torch

from conftest import run_cli
from rheed.errors import UserError

INPUT_SIZE = 48  # > 32, so the evaluation transform resizes (54) and center-crops (48)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained atto in the fine-tune checkpoint format (weights do not matter for export checks)."""
    import timm_compat  # noqa: F401
    from models import convnextv2

    torch.manual_seed(0)
    model = convnextv2.convnextv2_atto(num_classes=2)
    args = {"model": "convnextv2_atto", "nb_classes": 2, "input_size": INPUT_SIZE, "crop_pct": None,
            "imagenet_default_mean_and_std": True, "bit_scaling": "percentile", "data_set": "RHEED"}
    path = tmp_path_factory.mktemp("export_ckpt") / "checkpoint-best.pth"
    torch.save({"model": model.state_dict(), "args": args, "epoch": 0, "class_names": ["rough", "smooth"]}, path)
    return path


def test_export_cli_matches_eager(checkpoint, tmp_path):
    import onnxruntime
    from rheed.inference import load_classifier

    out = tmp_path / "export"
    proc = run_cli(["scripts/export_model.py", "--checkpoint", checkpoint, "--out", out], check=True)
    assert "torchscript:" in proc.stdout and "onnx:" in proc.stdout

    info = json.loads((out / "preprocessing.json").read_text())
    assert info["class_names"] == ["rough", "smooth"]
    assert info["input"]["shape"] == ["batch", 3, INPUT_SIZE, INPUT_SIZE]
    assert info["image_loading"]["bit_scaling"] == "percentile"
    ops = [step["op"] for step in info["transform"]]
    assert ops == ["resize", "center_crop", "to_tensor", "normalize"]
    assert info["transform"][0]["size"] == int(INPUT_SIZE / (224 / 256))
    assert info["transform"][0]["interpolation"] == "bicubic"
    assert info["transform"][1]["size"] == [INPUT_SIZE, INPUT_SIZE]
    assert info["transform"][3]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert info["verification"]["torchscript_max_abs_diff"] <= 1e-4
    assert info["verification"]["onnx_max_abs_diff"] <= 1e-4

    # Independent check on fresh inputs, batch sizes 1 and 5 (the batch axis is dynamic).
    model = load_classifier(checkpoint).model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch marks torch.jit as deprecated
        scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            eager = model(x).numpy()
            ts = scripted(x).numpy()
        onnx_out = session.run(["logits"], {"input": x.numpy()})[0]
        assert eager.shape == (batch, 2)
        np.testing.assert_allclose(ts, eager, atol=1e-4, rtol=0)
        np.testing.assert_allclose(onnx_out, eager, atol=1e-4, rtol=0)

    # A second export into the same folder is refused, and the files stay as they were.
    before = (out / "model.onnx").stat().st_mtime_ns
    again = run_cli(["scripts/export_model.py", "--checkpoint", checkpoint, "--out", out, "--formats", "onnx"])
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "--overwrite" in again.stderr
    assert (out / "model.onnx").stat().st_mtime_ns == before


def test_export_torchscript_only_in_process(checkpoint, tmp_path):
    from rheed.export import export_model
    from rheed.inference import load_classifier

    info = export_model(load_classifier(checkpoint), tmp_path / "ts", formats=["torchscript"], input_size=32)
    assert (tmp_path / "ts" / "model.torchscript.pt").is_file()
    assert not (tmp_path / "ts" / "model.onnx").exists()
    assert info["input"]["shape"] == ["batch", 3, 32, 32]
    assert [s["op"] for s in info["transform"]] == ["to_tensor", "normalize"]  # <= 32 px: no resize/crop
    assert info["views"]["checkpoint_tta_scales"] is None and info["views"]["checkpoint_tta_flip"] is False

    # A checkpoint evaluated on two sizes (the launchers' default) exports its one main view and says so.
    ckpt = torch.load(checkpoint, weights_only=False)
    ckpt["args"] = dict(ckpt["args"], aug_mode="rheed", subtract_background=True, background_mode="adaptive",
                        tta_scales=[1.0, 1.125])
    torch.save(ckpt, tmp_path / "tta.pth")
    info = export_model(load_classifier(tmp_path / "tta.pth"), tmp_path / "tta", formats=["torchscript"])
    assert info["views"]["checkpoint_tta_scales"] == [1.0, 1.125] and "one view" in info["views"]["exported"]
    assert info["input"]["shape"] == ["batch", 3, INPUT_SIZE, INPUT_SIZE]
    with pytest.raises(UserError, match="unknown export format"):
        export_model(load_classifier(checkpoint), tmp_path / "x", formats=["tflite"])


def test_export_rejects_pretraining_checkpoint(tmp_path):
    from rheed.inference import load_classifier

    path = tmp_path / "checkpoint-1.pth"
    torch.save({"model": {"encoder.downsample_layers.0.0.weight": torch.zeros(40, 3, 4, 4),
                          "mask_token": torch.zeros(1, 512, 1, 1)},
                "args": {"model": "convnextv2_atto", "input_size": 64}, "epoch": 1}, path)
    with pytest.raises(UserError, match="pre-training checkpoint"):
        load_classifier(path)


def test_rheed_whole_frame_steps_are_explained_for_other_languages():
    from rheed.augment import rheed_eval_transform
    from rheed.export import describe_transform

    transform = rheed_eval_transform(64, (0.0,) * 3, (0.25,) * 3, background=True, background_mode="adaptive",
                                     despeckle=True, pad_aspect=4 / 3)
    steps = {step["op"]: step for step in describe_transform(transform)}
    assert list(steps)[:3] == ["Despeckle", "SubtractBackground", "PadToAspect"]
    assert steps["SubtractBackground"]["repr"] == "SubtractBackground(mode='adaptive')"
    assert "1.3333" in steps["PadToAspect"]["repr"]
    assert all("meaning" in steps[op] for op in ("Despeckle", "SubtractBackground", "PadToAspect"))
