"""Loads a fine-tuned classifier from its checkpoint, with the preprocessing it was evaluated with.

The checkpoint's stored training arguments (model name, classes, input size, crop, mean/std, bit
scaling) define everything, so prediction, Grad-CAM and export never ask the user to repeat flags.
"""
import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from rheed.errors import UserError
from rheed.tta import resized, tta_logits, view_sizes

# Keys that only an FCMAE pre-training state_dict has.
PRETRAIN_KEY_PREFIXES = ("encoder.", "decoder.", "mask_token", "proj.", "pred.")
# main_finetune defaults for the arguments the evaluation preprocessing reads.
EVAL_DEFAULTS = {"crop_pct": None, "imagenet_default_mean_and_std": True, "bit_scaling": "percentile"}

# Arguments that decide how a frame becomes the model's input at evaluation.
EVAL_INPUT_KEYS = ("input_size", "aug_mode", "despeckle", "subtract_background", "background_mode", "pattern_gamma",
                   "bit_scaling", "bit_max", "frame_crop", "imagenet_default_mean_and_std")


def flag_value(value) -> str:
    """A stored argument as it is written on the command line (booleans as true/false, lists space-separated)."""
    if isinstance(value, (list, tuple)):
        return " ".join(flag_value(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def eval_input_mismatch(ckpt_args: dict, args: dict) -> list[str]:
    """The evaluation-input flags whose value differs from the checkpoint's run, as '--key value' of the run.
    An evaluation with other preprocessing than training measures another input, not the model."""
    return [f"--{key} {flag_value(ckpt_args[key])}"
            for key in EVAL_INPUT_KEYS
            if key in ckpt_args and key in args and ckpt_args[key] != args[key]]


@dataclass
class Classifier:
    """A classifier in eval mode plus the evaluation preprocessing of its checkpoint."""
    model: torch.nn.Module
    transform: Callable[[Image.Image], torch.Tensor]
    loader: Callable[[str], Image.Image]
    class_names: list[str]
    args: dict
    device: torch.device
    checkpoint_path: str = ""
    temperature: float = 1.0              # softmax temperature fitted on validation (rheed.calibration)
    threshold: float | None = None        # decision threshold for `threshold_class`, fitted on validation
    threshold_class: str | None = None
    pad_batch_to: int = 0                 # batches smaller than this are padded with zeros (see compile)

    @property
    def scaling(self) -> dict:
        """Bit-scaling keyword arguments of rheed.imageio (the loader's settings)."""
        return {"scaling": self.args.get("bit_scaling") or "percentile", "max_value": self.args.get("bit_max")}

    @property
    def crop(self) -> tuple[int, int, int, int] | None:
        """The --frame_crop box the classifier was trained with (None: whole frames)."""
        box = self.args.get("frame_crop")
        return tuple(box) if box else None

    def image_from_array(self, array: np.ndarray, bits: int | None = None, name: str | None = None) -> Image.Image:
        """A raw frame (TIFF page, video frame) -> the RGB image the loader would give for the same pixels."""
        from rheed import imageio
        array = imageio.crop_frame(np.asarray(array), self.crop, name)
        return imageio.frame_to_rgb(imageio.to_uint8(array, bits=bits, **self.scaling))

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([self.transform(img) for img in images])

    @property
    def view_sizes(self) -> list[int] | None:
        """Input sizes of the evaluation views when the checkpoint was evaluated on several (--tta_scales)."""
        scales = self.args.get("tta_scales")
        return view_sizes(self.args["input_size"], scales) if scales else None

    def main_view(self, x: torch.Tensor) -> torch.Tensor:
        """The view at the training input size (x itself unless the transform made a larger one for --tta_scales)."""
        return resized(x, self.args["input_size"]) if self.view_sizes else x

    def compile(self, batch_size: int) -> None:
        """torch.compile the network for batches of `batch_size`. Smaller batches are padded to that size, so
        one compiled graph serves every batch instead of a new compilation for each new batch size (the model
        treats every frame on its own, so the padding does not change the other frames' outputs)."""
        self.model = torch.compile(self.model, dynamic=False)
        self.pad_batch_to = batch_size

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits (float32), averaged over the views the checkpoint was evaluated on (--tta_flip,
        --tta_scales)."""
        n = len(x)
        if n < self.pad_batch_to:
            x = torch.cat([x, x.new_zeros((self.pad_batch_to - n,) + tuple(x.shape[1:]))])
        return tta_logits(self.model, x, self.view_sizes, bool(self.args.get("tta_flip")))[:n]

    @torch.inference_mode()
    def predict_tensor(self, x: torch.Tensor) -> np.ndarray:
        logits = self.logits(x.to(self.device))
        return torch.softmax(logits / self.temperature, dim=1).cpu().numpy()

    def predict_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Class probabilities, shape (len(images), num_classes)."""
        if len(images) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return self.predict_tensor(self.preprocess(images))

    @torch.inference_mode()
    def probs_and_features(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and the pooled, normalised features the head reads (forward_features)."""
        x = self.preprocess(images).to(self.device)
        features = self.model.forward_features(self.main_view(x))
        tta = self.args.get("tta_flip") or self.view_sizes
        logits = self.logits(x) if tta else self.model.head(features).float()
        probs = torch.softmax(logits / self.temperature, dim=1)
        return probs.cpu().numpy(), features.float().cpu().numpy()

    @torch.inference_mode()
    def mc_probs(self, images: Sequence[Image.Image], passes: int) -> np.ndarray:
        """Monte-Carlo drop-path: class probabilities of `passes` forward passes with stochastic depth switched on
        (everything else in eval mode), shape (passes, len(images), num_classes). The model must have been
        loaded with drop_path > 0."""
        import timm_compat  # noqa: F401
        from timm.models.layers import DropPath

        stochastic = [m for m in self.model.modules() if isinstance(m, DropPath)]
        if not stochastic:
            raise UserError("Monte-Carlo drop-path needs a model loaded with drop_path > 0")
        x = self.preprocess(images).to(self.device)
        try:
            for m in stochastic:
                m.train()
            runs = [torch.softmax(self.logits(x) / self.temperature, dim=1) for _ in range(passes)]
        finally:
            for m in stochastic:
                m.eval()
        return torch.stack(runs).cpu().numpy()

    def predict_paths(self, paths: Sequence[str]) -> np.ndarray:
        return self.predict_images([self.loader(str(p)) for p in paths])


def _read_checkpoint(path: Path) -> dict:
    import utils

    ckpt = utils.load_checkpoint(str(path))
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(f"{path} is not a model checkpoint (no 'model' entry)")
    return ckpt


def _stored_args(ckpt: dict, path: Path) -> dict:
    import utils

    if ckpt.get("args") is None:
        raise UserError(f"{path} has no stored training arguments ('args'); predict needs a checkpoint "
                        f"written by main_finetune.py")
    # Upstream checkpoints predate --bit_scaling; fill what the evaluation transform reads with the defaults.
    return {**EVAL_DEFAULTS, **utils.checkpoint_args(ckpt)}


def _class_names(ckpt: dict, num_classes: int, path: Path) -> list[str]:
    names = ckpt.get("class_names")
    if names is None:
        names = [f"class{i}" for i in range(num_classes)]
        print(f"warning: {path} stores no class_names; using {names}", file=sys.stderr)
    names = [str(n) for n in names]
    if len(names) != num_classes:
        raise UserError(f"{path} stores {len(names)} class_names but its head has {num_classes} outputs")
    return names


def load_classifier(checkpoint_path: str | Path, device: str = "cpu", use_ema: bool = False,
                    drop_path: float = 0.0) -> Classifier:
    """Builds the model named in the checkpoint, loads its weights and the evaluation transform. `drop_path` > 0
    builds a ConvNeXt-V2 with that stochastic-depth rate (same weights; only Classifier.mc_probs uses it)."""
    import timm_compat  # noqa: F401  (datasets imports timm)
    import datasets
    from models import baselines, convnextv2
    from rheed import imageio

    path = Path(checkpoint_path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    ckpt = _read_checkpoint(path)
    if any(k.startswith(PRETRAIN_KEY_PREFIXES) for k in ckpt["model"]):
        raise UserError(f"{path} is an FCMAE pre-training checkpoint (no classifier head); fine-tune it with "
                        f"main_finetune.py --finetune {path} and predict with the fine-tuned checkpoint")
    args = _stored_args(ckpt, path)
    if use_ema:
        if "model_ema" not in ckpt:
            raise UserError(f"{path} has no EMA weights ('model_ema'); drop --ema")
        state_dict = ckpt["model_ema"]
    else:
        state_dict = ckpt["model"]
    if "head.weight" not in state_dict:
        raise UserError(f"{path} has no classifier head ('head.weight'); is it a fine-tuned checkpoint?")

    name = args.get("model")
    known = convnextv2.MODEL_NAMES + baselines.BASELINE_NAMES
    if name not in known:
        raise UserError(f"{path} names model {name!r}, which is not one of {', '.join(known)}")
    num_classes = state_dict["head.weight"].shape[0]
    args["nb_classes"] = num_classes
    class_names = _class_names(ckpt, num_classes, path)

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was given but no CUDA device is available; use --device cpu")
    torch_device = torch.device(device)
    if name in baselines.BASELINE_NAMES:
        if drop_path > 0:
            raise UserError(f"Monte-Carlo drop-path needs a ConvNeXt-V2 checkpoint; {path} holds {name}")
        model = baselines.build_baseline(name, num_classes=num_classes)
    else:
        in_chans = state_dict["downsample_layers.0.0.weight"].shape[1]
        model = convnextv2.__dict__[name](num_classes=num_classes, in_chans=in_chans, drop_path_rate=drop_path)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0:2]
        raise UserError(f"{path}: weights do not fit {name}: {' '.join(first)}") from e
    model.to(torch_device).eval()

    # build_transform may fill args in place (upstream sets crop_pct); work on a copy.
    transform_args = argparse.Namespace(**args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transform = datasets.build_transform(False, transform_args)
    loader = imageio.make_loader(args.get("bit_scaling") or "percentile", max_value=args.get("bit_max"),
                                 crop=args.get("frame_crop"))
    calibration = ckpt.get("calibration") or {}
    return Classifier(model=model, transform=transform, loader=loader, class_names=class_names, args=args,
                      device=torch_device, checkpoint_path=str(path),
                      temperature=float(calibration.get("temperature") or 1.0),
                      threshold=calibration.get("threshold"), threshold_class=calibration.get("positive_class"))
