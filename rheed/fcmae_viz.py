"""What an FCMAE pre-trained model reconstructs: original, masked input, reconstruction, residual.

Input. Frames go through the checkpoint's own pre-training input pipeline without the random crop and flip:
hot pixels and background removed when it was trained so (--despeckle, --subtract_background), the whole
frame resized to a square, ToTensor, then the mean/std it was normalised with (ImageNet's, or the background
normalisation). The figure shows that input, the frame as the model saw it. The model
predicts every patch in that normalised space, or, when it was trained with `norm_pix_loss` (upstream's
default), in per-patch normalised units: each target patch was standardised with its own mean and unbiased
variance, (t - mean) / sqrt(var + 1e-6). The prediction is mapped back with the *input's* patch statistics,
pred * sqrt(var + 1e-6) + mean (the exact inverse of the loss's target), then the mean/std are undone,
giving intensities in [0, 1] (fraction of the 8-bit full scale of the model's input frame). With norm_pix_loss
the brightness and contrast of each masked patch therefore come from the hidden patch itself; only its
structure (the normalised shape) is the model's prediction.

Numbers per frame (all on [0, 1] intensities, the prediction clipped to [0, 1], averaged over channels):
`mae_masked`, `rmse_masked` over the pixels of the masked patches (the pixels the model had to infer);
`mae_frame`, `rmse_frame` over the whole displayed reconstruction, where visible patches are the input
pasted back (zero error), so mae_frame = masked fraction x mae_masked; `loss` is the pre-training loss of
the frame (mean squared error over its masked patches, in the model's training units).
"""
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib.patches import Rectangle
from torchvision import transforms

import timm_compat  # noqa: F401
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from rheed import augment
from rheed.errors import UserError
from rheed.plotting import Labels, figure_style, new_figure, save_figure, wrap_name

MASK_FILL = 0.5  # value shown for removed patches in the masked-input panel


@dataclass
class Panels:
    """Per-frame arrays, intensities in [0, 1]; images (N, H, W, C), maps (N, H, W)."""
    original: np.ndarray
    masked: np.ndarray
    reconstruction: np.ndarray  # prediction on masked patches, input pasted on visible ones
    residual: np.ndarray  # |reconstruction - original|, mean over channels
    mask: np.ndarray  # 1 = pixel of a masked (removed) patch
    loss: np.ndarray  # (N,) pre-training loss per frame
    patch_size: int


def load_fcmae(checkpoint_path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Builds the FCMAE named in a pre-training checkpoint and loads its weights (eval mode, CPU)."""
    import utils
    from models import fcmae

    ckpt = utils.load_checkpoint(str(checkpoint_path))
    state_dict = ckpt.get("model") if isinstance(ckpt, dict) else None
    if state_dict is None:
        raise UserError(f"{checkpoint_path} is not a model checkpoint (no 'model' entry)")
    if "pred.weight" not in state_dict or "encoder.downsample_layers.0.0.weight" not in state_dict:
        raise UserError(f"{checkpoint_path} is not an FCMAE pre-training checkpoint (no decoder 'pred' / "
                        f"'encoder' weights); use a checkpoint written by main_pretrain.py")
    args = utils.checkpoint_args(ckpt)
    name = args.get("model")
    if name not in fcmae.MODEL_NAMES:
        raise UserError(f"{checkpoint_path} names model {name!r}, not one of {', '.join(fcmae.MODEL_NAMES)}")
    model = fcmae.__dict__[name](
        in_chans=state_dict["encoder.downsample_layers.0.0.weight"].shape[1],
        decoder_depth=int(args.get("decoder_depth", 1)),
        decoder_embed_dim=state_dict["proj.weight"].shape[0],
        norm_pix_loss=bool(args.get("norm_pix_loss", True)),  # upstream's CLI always sets it
    )
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise UserError(f"{checkpoint_path}: weights do not fit {name}: {str(e).splitlines()[0]}") from e
    return model.eval(), args


def input_normalisation(args: dict) -> tuple:
    """The mean and std the checkpoint was pre-trained with (main_pretrain.build_pretrain_transform's choice)."""
    return augment.input_mean_std(bool(args.get("subtract_background")), IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)


def build_input_transform(input_size: int, args: dict | None = None) -> transforms.Compose:
    """Deterministic version of the pre-training transform of a checkpoint with training arguments `args`: the
    evaluation view of rheed.augment (whole-frame steps, padding to --pad_aspect if it had one, the whole frame
    resized to a square) with the checkpoint's normalisation."""
    args = args or {}
    mean, std = input_normalisation(args)
    return augment.rheed_eval_transform(input_size, mean, std, bool(args.get("subtract_background")),
                                        args.get("background_mode") or "global", bool(args.get("despeckle")),
                                        float(args.get("pad_aspect") or 0.0), float(args.get("pattern_gamma", 1.0)))


def random_mask(model: torch.nn.Module, input_size: int, mask_ratio: float, seed: int) -> torch.Tensor:
    """One (1, L) patch mask (1 = removed) drawn with the model's own rule from `seed`, global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.gen_random_mask(torch.zeros(1, 1, input_size, input_size), mask_ratio)


def unnormalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    c = x.shape[1]
    mean = torch.tensor(mean[:c], dtype=x.dtype).view(1, c, 1, 1)
    std = torch.tensor(std[:c], dtype=x.dtype).view(1, c, 1, 1)
    return x * std + mean


@torch.no_grad()
def reconstruct(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor,
                input_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
                input_std: Sequence[float] = IMAGENET_DEFAULT_STD) -> Panels:
    """Runs the FCMAE on frames x (N, C, H, W) normalised with input_mean/input_std, with the patch mask (N or 1,
    L); builds the panels."""
    n, c, H, W = x.shape
    p = model.patch_size
    h, w = H // p, W // p
    mask = mask.expand(n, -1).to(x.dtype)
    _, pred, mask = model(x, mask=mask)
    pred = pred.reshape(n, pred.shape[1], h * w).transpose(1, 2)  # (N, L, p*p*C), the loss's layout
    target = model.patchify(x)
    if model.norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True) + 1.e-6) ** .5  # unbiased var, as the loss
        loss_target = (target - mean) / std
        pred_pixels = pred * std + mean
    else:
        loss_target = target
        pred_pixels = pred
    loss = ((pred - loss_target) ** 2).mean(dim=-1)
    loss = (loss * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)

    original = unnormalise(x, input_mean, input_std)
    predicted = unnormalise(model.unpatchify(pred_pixels, h, w), input_mean, input_std).clamp(0, 1)
    removed = mask.reshape(n, 1, h, w).repeat_interleave(p, dim=2).repeat_interleave(p, dim=3).bool()
    removed = removed.expand(-1, c, -1, -1)
    reconstruction = torch.where(removed, predicted, original)  # visible pixels are the input, exactly
    masked = torch.where(removed, torch.full_like(original, MASK_FILL), original)
    residual = (reconstruction - original).abs().mean(dim=1)

    def hwc(t: torch.Tensor) -> np.ndarray:
        return t.permute(0, 2, 3, 1).cpu().numpy()

    return Panels(original=hwc(original), masked=hwc(masked), reconstruction=hwc(reconstruction),
                  residual=residual.cpu().numpy(), mask=removed[:, 0].float().cpu().numpy(),
                  loss=loss.cpu().numpy(), patch_size=p)


def frame_metrics(panels: Panels) -> list[dict]:
    """MAE/RMSE on the masked patches and over the whole reconstructed frame (see the module docstring)."""
    rows = []
    for i in range(len(panels.original)):
        error = panels.reconstruction[i] - panels.original[i]  # (H, W, C), zero on visible pixels
        removed = panels.mask[i].astype(bool)
        masked_error = error[removed]
        rows.append({
            "masked_fraction": float(removed.mean()),
            "mae_masked": float(np.abs(masked_error).mean()) if masked_error.size else 0.0,
            "rmse_masked": float(np.sqrt((masked_error ** 2).mean())) if masked_error.size else 0.0,
            "mae_frame": float(np.abs(error).mean()),
            "rmse_frame": float(np.sqrt((error ** 2).mean())),
            "loss": float(panels.loss[i]),
        })
    return rows


def _gray(image: np.ndarray) -> np.ndarray:
    return image.mean(axis=-1) if image.ndim == 3 else image


def plot_reconstructions(panels: Panels, names: Sequence[str], metrics: list[dict], labels: Labels):
    n = len(names)
    fig = new_figure(10.0, 2.55 * n + 0.2)
    axes = np.asarray(fig.subplots(n, 4, squeeze=False))
    vmax = max(float(panels.residual.max()), 1e-6)
    p = panels.patch_size
    for i, name in enumerate(names):
        ax_orig, ax_masked, ax_rec, ax_res = axes[i]
        ax_orig.imshow(_gray(panels.original[i]), cmap="gray", vmin=0, vmax=1)
        ax_masked.imshow(_gray(panels.masked[i]), cmap="gray", vmin=0, vmax=1)
        # hatch the removed patches so they read as "removed" in grayscale print, not as a gray area
        removed = panels.mask[i][::p, ::p]
        for r, c in zip(*np.nonzero(removed)):
            ax_masked.add_patch(Rectangle((c * p - 0.5, r * p - 0.5), p, p, facecolor="none", edgecolor="0.25",
                                          hatch="///", linewidth=0.5))
        ax_rec.imshow(_gray(panels.reconstruction[i]), cmap="gray", vmin=0, vmax=1)
        image = ax_res.imshow(panels.residual[i], cmap="viridis", vmin=0, vmax=vmax)
        ax_orig.set_title(f"{labels('original')}\n{wrap_name(name)}", fontsize=8)
        ax_masked.set_title(labels("masked_input", metrics[i]["masked_fraction"]), fontsize=8)
        ax_rec.set_title(labels("reconstruction"), fontsize=8)
        ax_res.set_title(labels("residual", metrics[i]["mae_masked"]), fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        fig.colorbar(image, ax=ax_res, fraction=0.046, pad=0.03)
    return fig


def visualize_fcmae(checkpoint: str | Path, images: Sequence[str | Path], out_dir: str | Path,
                    mask_ratio: float = 0.6, seed: int = 0, input_size: int | None = None, lang: str = "en",
                    dpi: int = 300) -> list[Path]:
    """Writes fcmae_reconstruction.{png,pdf} and fcmae_reconstruction.csv; returns the files."""
    from rheed.imageio import make_loader

    if not images:
        raise UserError("no images given (--images)")
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:
        raise UserError(f"image(s) not found: {', '.join(missing)}")
    if not 0.0 <= mask_ratio < 1.0:
        raise UserError(f"--mask_ratio must be in [0, 1), got {mask_ratio}")
    model, args = load_fcmae(checkpoint)
    input_size = int(input_size or args.get("input_size", 224))
    if input_size % model.patch_size:
        raise UserError(f"--input_size {input_size} is not a multiple of the patch size {model.patch_size}")
    loader = make_loader(args.get("bit_scaling") or "percentile", max_value=args.get("bit_max"),
                         crop=args.get("frame_crop"))
    transform = build_input_transform(input_size, args)
    frames = [loader(str(p)) for p in images]
    if model.in_chans == 1:
        frames = [f.convert("L") for f in frames]
    x = torch.stack([transform(f) for f in frames])
    mask = random_mask(model, input_size, mask_ratio, seed)
    panels = reconstruct(model, x, mask, *input_normalisation(args))
    metrics = frame_metrics(panels)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "fcmae_reconstruction.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        fields = ["image", "input_size", "mask_ratio", "seed", "norm_pix_loss", "masked_fraction", "mae_masked",
                  "rmse_masked", "mae_frame", "rmse_frame", "loss"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for path, row in zip(images, metrics):
            writer.writerow({"image": str(path), "input_size": input_size, "mask_ratio": mask_ratio, "seed": seed,
                             "norm_pix_loss": model.norm_pix_loss, **row})
    with figure_style(lang) as labels:
        fig = plot_reconstructions(panels, [Path(p).name for p in images], metrics, labels)
        return [csv_path] + save_figure(fig, out_dir, "fcmae_reconstruction", dpi)

