"""Grad-CAM class-activation maps for the fine-tuned classifier.

A small implementation with a forward hook instead of the `grad-cam` package: that package pulls in
opencv-python and ttach, which the project does not otherwise need, for what is about thirty lines here.

Grad-CAM (Selvaraju et al., 2017) for class k and a layer with activations A (N, C, h, w):
weights w_c = spatial mean of d logit_k / d A_c, map = ReLU(sum_c w_c A_c), upsampled bilinearly to the
input size and scaled to [0, 1] per image (a map that is constant, e.g. all zero, stays all zero).
The default layer is the last stage of ConvNeXt-V2 (`stages.3`, stride 32).
"""
import csv
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms

from rheed.errors import UserError
from rheed.plotting import Labels, figure_style, new_figure, save_figure, wrap_name

DEFAULT_LAYER = "stages.3"


class GradCAM:
    """Hooks one layer of `model`; calling it returns (maps (N, H, W) in [0, 1], class probabilities)."""

    def __init__(self, model: torch.nn.Module, layer: str = DEFAULT_LAYER):
        try:
            module = model.get_submodule(layer)
        except AttributeError:
            names = ", ".join(n for n, _ in model.named_children())
            raise UserError(f"the model has no layer '{layer}' (top-level layers: {names}; e.g. stages.3)") from None
        self.model = model
        self.layer = layer
        self.activations: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._keep_activations)

    def _keep_activations(self, module, inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise UserError(f"layer '{self.layer}' does not output an (N, C, H, W) feature map")
        if output.requires_grad:
            output.retain_grad()
        self.activations = output

    def close(self) -> None:
        self.handle.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __call__(self, x: torch.Tensor, class_index: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Maps for class_index[i] of image x[i]."""
        self.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # a graph to the layer even if the weights are frozen
            logits = self.model(x)
            index = torch.as_tensor(list(class_index), device=logits.device)
            logits.gather(1, index[:, None]).sum().backward()
        activations, gradients = self.activations.detach(), self.activations.grad.detach()
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        low = cam.amin(dim=(1, 2), keepdim=True)
        span = cam.amax(dim=(1, 2), keepdim=True) - low
        cam = torch.where(span > 1e-12, (cam - low) / span.clamp(min=1e-12), torch.zeros_like(cam))
        probs = torch.softmax(logits.detach().float(), dim=1)
        self.activations = None
        return cam.cpu().numpy(), probs.cpu().numpy()


def class_maps(model: torch.nn.Module, x: torch.Tensor, layer: str = DEFAULT_LAYER,
               top: int = 2, probs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps for the `top` most probable classes of each image: (maps (N, top, H, W), classes (N, top), probs).
    `probs`: the class probabilities to rank by when the caller has them (else the model's softmax)."""
    with GradCAM(model, layer) as cam:
        if probs is None:
            with torch.no_grad():
                probs = torch.softmax(model(x).float(), dim=1).cpu().numpy()
        classes = np.argsort(-probs, axis=1, kind="stable")[:, :top]
        maps = np.stack([cam(x, classes[:, j])[0] for j in range(classes.shape[1])], axis=1)
    return maps, classes, probs


def displayable(x: torch.Tensor, transform) -> np.ndarray:
    """Undoes the transform's Normalize: (N, C, H, W) -> grayscale (N, H, W) in [0, 1]."""
    normalize = next((t for t in getattr(transform, "transforms", []) if isinstance(t, transforms.Normalize)), None)
    if normalize is not None:
        c = x.shape[1]
        mean = torch.as_tensor(normalize.mean, dtype=x.dtype)[:c].view(1, c, 1, 1)
        std = torch.as_tensor(normalize.std, dtype=x.dtype)[:c].view(1, c, 1, 1)
        x = x * std + mean
    return x.mean(dim=1).clamp(0, 1).cpu().numpy()


def plot_gradcam(frames: np.ndarray, maps: np.ndarray, classes: np.ndarray, probs: np.ndarray,
                 class_names: Sequence[str], names: Sequence[str], labels: Labels, signed: bool = False):
    """Rows = images; columns = the frame as the network sees it, then one overlay per class.
    Grad-CAM maps are in [0, 1]; `signed` maps (occlusion) are drawn red (+) / blue (-), each scaled by its
    largest absolute value, which the panel title gives."""
    n, top = classes.shape
    fig = new_figure(2.6 * (top + 1) + 0.6, 2.7 * n + 0.2 + 0.2 * signed)
    axes = np.asarray(fig.subplots(n, top + 1, squeeze=False))
    image = None
    for i in range(n):
        axes[i, 0].imshow(frames[i], cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_title(f"{labels('frame')}\n{wrap_name(names[i])}", fontsize=8)
        for j in range(top):
            k = classes[i, j]
            ax = axes[i, j + 1]
            ax.imshow(frames[i], cmap="gray", vmin=0, vmax=1)
            if signed:
                largest = float(np.abs(maps[i, j]).max())
                scaled = maps[i, j] / max(largest, 1e-12)
                image = ax.imshow(scaled, cmap="RdBu_r", vmin=-1, vmax=1, alpha=np.clip(np.abs(scaled), 0, 0.85))
                for level, style in ((0.5, "solid"), (-0.5, "dashed")):  # outlines that read without colour
                    if scaled.min() < level < scaled.max():
                        ax.contour(scaled, levels=[level], colors="black", linewidths=0.7, linestyles=style)
                ax.set_title(labels("occlusion_class", class_names[k], probs[i, k], largest), fontsize=8)
                continue
            image = ax.imshow(maps[i, j], cmap="inferno", vmin=0, vmax=1, alpha=0.55)
            if maps[i, j].min() < 0.5 < maps[i, j].max():  # the half-maximum outline reads without colour
                ax.contour(maps[i, j], levels=[0.5], colors="white", linewidths=0.8)
            ax.set_title(labels("gradcam_class", class_names[k], probs[i, k]), fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    fig.colorbar(image, ax=axes[:, -1].tolist(), fraction=0.046, pad=0.03,
                 label=labels("occlusion_value" if signed else "cam_value"))
    return fig


def run_gradcam(checkpoint: str | Path, images: Sequence[str | Path], out_dir: str | Path,
                layer: str | None = None, use_ema: bool = False, device: str = "cpu", lang: str = "en",
                dpi: int = 300, method: str = "gradcam", patch: int | None = None,
                stride: int | None = None) -> list[Path]:
    """Writes METHOD.{png,pdf}, METHOD.csv (predictions) and METHOD.npz (the maps); returns the files.
    method "gradcam": maps of the two most probable classes at `layer` (None: the model's last feature map,
    DEFAULT_LAYER or a baseline's `gradcam_layer`). method "occlusion": one signed map of the predicted
    class's log-odds per frame (rheed.occlusion), patches of `patch` px moved by `stride` px."""
    from rheed.inference import load_classifier
    from rheed.occlusion import default_patch, occlusion_maps

    if method not in ("gradcam", "occlusion"):
        raise UserError(f"unknown method '{method}' (gradcam or occlusion)")
    if not images:
        raise UserError("no images given (--images)")
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:
        raise UserError(f"image(s) not found: {', '.join(missing)}")
    classifier = load_classifier(checkpoint, device=device, use_ema=use_ema)
    layer = layer or getattr(classifier.model, "gradcam_layer", DEFAULT_LAYER)
    x = classifier.preprocess([classifier.loader(str(p)) for p in images]).to(classifier.device)
    # rank and report by the probabilities predict.py and the test predictions give: with the checkpoint's
    # temperature (and flip/scale averaging when it was evaluated that way)
    probs = classifier.predict_tensor(x)
    x = classifier.main_view(x)   # maps at the training input size, also when --tta_scales made a larger view
    if method == "gradcam":
        maps, classes, probs = class_maps(classifier.model, x, layer, top=min(2, len(classifier.class_names)),
                                          probs=probs)
        extra = {"layer": layer}
    else:
        default = default_patch(min(x.shape[-2:]))
        patch, stride = patch or default[0], stride or default[1]
        classes = probs.argmax(axis=1)[:, None]
        maps = occlusion_maps(classifier.model, x, classes[:, 0], patch, stride)[0][:, None]
        extra = {"patch": patch, "stride": stride}
    frames = displayable(x.cpu(), classifier.transform)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = classifier.class_names
    csv_path = out_dir / f"{method}.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "pred_name", "map_classes"] + [f"prob_{c}" for c in names])
        for path, cls, p in zip(images, classes, probs):
            writer.writerow([str(path), names[cls[0]], ";".join(names[k] for k in cls)] + [repr(float(v)) for v in p])
    npz_path = out_dir / f"{method}.npz"
    np.savez_compressed(npz_path, maps=maps.astype(np.float32), classes=classes, probs=probs,
                        class_names=np.array(names), images=np.array([str(p) for p in images]), **extra)
    with figure_style(lang) as labels:
        fig = plot_gradcam(frames, maps, classes, probs, names, [Path(p).name for p in images], labels,
                           signed=method == "occlusion")
        return [csv_path, npz_path] + save_figure(fig, out_dir, method, dpi)
