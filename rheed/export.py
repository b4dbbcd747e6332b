"""Exports a fine-tuned classifier to TorchScript and ONNX and checks the exports against the eager model.

Next to the models, preprocessing.json describes what the input must look like (bit scaling, grayscale to
three channels, resize/crop, mean/std), the class order and the output (logits; softmax gives probabilities).
"""
import argparse
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from rheed.errors import UserError
from rheed.runs import check_output_dir
from rheed.inference import Classifier

FORMATS = ("torchscript", "onnx")
FILE_NAMES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
INPUT_NAME, OUTPUT_NAME = "input", "logits"


# What the RHEED launchers' whole-frame steps do, for code outside Python that must reproduce them.
RHEED_STEP_MEANINGS = {
    "Despeckle": "grayscale (PIL 'L'); every pixel clipped to the brightest of its 8 neighbours (hot pixels); "
                 "back to 3 identical channels",
    "SubtractBackground": "grayscale; background estimated and removed with the mode in repr, the rest scaled so "
                          "the 99.9th percentile is 1 and clipped, raised to the power gamma in repr (1 if absent), "
                          "times 255 (rheed.augment.SubtractBackground: reuse the Python code)",
    "PadToAspect": "frame centred on the smallest zero canvas whose width/height is aspect (unchanged at that "
                   "aspect), before the resize",
}


def describe_transform(transform) -> list[dict]:
    """The evaluation transform as a list of plain steps (read from the transform objects themselves)."""
    from torchvision import transforms as T

    steps = []
    for t in getattr(transform, "transforms", [transform]):
        if isinstance(t, T.Resize):
            size = t.size if isinstance(t.size, int) or len(t.size) != 1 else t.size[0]
            steps.append({"op": "resize", "size": size, "interpolation": t.interpolation.value,
                          "meaning": "shorter side to size, aspect kept" if isinstance(size, int)
                          else "warp to (height, width)"})
        elif isinstance(t, T.CenterCrop):
            steps.append({"op": "center_crop", "size": list(t.size)})
        elif isinstance(t, T.ToTensor):
            steps.append({"op": "to_tensor", "meaning": "RGB uint8 HWC -> float32 CHW, divided by 255"})
        elif isinstance(t, T.Normalize):
            steps.append({"op": "normalize", "mean": [float(v) for v in t.mean], "std": [float(v) for v in t.std],
                          "meaning": "(x - mean) / std per channel"})
        else:
            step = {"op": type(t).__name__, "repr": repr(t)}
            if step["op"] in RHEED_STEP_MEANINGS:
                step["meaning"] = RHEED_STEP_MEANINGS[step["op"]]
            steps.append(step)
    return steps


def preprocessing_info(classifier: Classifier, transform, input_size: int) -> dict:
    scaling = classifier.scaling
    return {
        "model": classifier.args.get("model"),
        "checkpoint": classifier.checkpoint_path,
        "class_names": classifier.class_names,
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, input_size, input_size], "dtype": "float32",
                  "layout": "NCHW"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(classifier.class_names)],
                   "meaning": "logits in class_names order; softmax over dim 1 gives probabilities"},
        "image_loading": {
            "bit_scaling": scaling["scaling"],
            "bit_max": scaling["max_value"],
            "frame_crop": list(classifier.crop) if classifier.crop else None,
            "meaning": "frame_crop (left, top, right, bottom; right and bottom exclusive) is cut out of the file "
                       "first, when set; 8-bit frames pass unchanged; deeper frames are mapped to 0..255 by "
                       "rheed.imageio.to_uint8 with this mode; grayscale is repeated into 3 identical RGB channels",
        },
        "transform": describe_transform(transform),
        "views": {
            "exported": "one view: the transform above, at input_size",
            "checkpoint_tta_scales": classifier.args.get("tta_scales"),
            "checkpoint_tta_flip": bool(classifier.args.get("tta_flip")),
            "meaning": "predict.py and main_finetune.py average the logits over the checkpoint's views (input_size x "
                       "each scale, flips); the exported model sees one view, so its probabilities can differ slightly",
        },
    }


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch marks torch.jit as deprecated
        traced = torch.jit.trace(model, example)
        traced.save(str(path))


def run_torchscript(path: Path, x: torch.Tensor) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.inference_mode():
            return loaded(x).numpy()


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int | None = None) -> None:
    kwargs = {} if opset is None else {"opset_version": opset}
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_shapes=({0: batch},), dynamo=True, external_data=False, verbose=False, **kwargs)


def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]


def export_model(classifier: Classifier, out_dir: str | Path, formats: Sequence[str] = FORMATS,
                 input_size: int | None = None, atol: float = 1e-4, overwrite: bool = False,
                 seed: int = 0) -> dict:
    """Writes the requested formats and preprocessing.json into out_dir; returns the written description.

    Each export is run on a random batch of a different size than the tracing example (checks the
    dynamic batch axis) and must match the eager model's logits within `atol`.
    """
    import datasets

    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UserError(f"unknown export format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    check_output_dir(out_dir, '--out', min_free_mb=10)
    targets = [out_dir / FILE_NAMES[f] for f in formats] + [out_dir / "preprocessing.json"]
    existing = [p.name for p in targets if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{out_dir} already holds {', '.join(existing)}; choose another --out or pass --overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)

    input_size = int(input_size or classifier.args["input_size"])
    # the exported graph is the plain model: one view at input_size (no --tta_flip/--tta_scales averaging)
    transform_args = argparse.Namespace(**{**classifier.args, "input_size": input_size, "tta_scales": None})
    if input_size != classifier.args["input_size"]:
        transform_args.crop_pct = classifier.args.get("crop_pct")
    transform = datasets.build_transform(False, transform_args)

    model = classifier.model.to("cpu").eval()
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(2, 3, input_size, input_size, generator=generator)
    check = torch.randn(3, 3, input_size, input_size, generator=generator)
    with torch.inference_mode():
        eager = model(check).numpy()

    info = preprocessing_info(classifier, transform, input_size)
    info["files"], info["verification"] = {}, {"batch_size": int(check.shape[0]), "atol": atol}
    for fmt in formats:
        path = out_dir / FILE_NAMES[fmt]
        if fmt == "torchscript":
            export_torchscript(model, example, path)
            exported = run_torchscript(path, check)
        else:
            export_onnx(model, example, path)
            exported = run_onnx(path, check)
        diff = _max_diff(exported, eager)
        if not diff <= atol:
            raise UserError(f"exported {fmt} model differs from the eager model by {diff:.2e} (> {atol:g})")
        info["files"][fmt] = path.name
        info["verification"][f"{fmt}_max_abs_diff"] = diff
    (out_dir / "preprocessing.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
