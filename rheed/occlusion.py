"""Occlusion sensitivity: which parts of a frame move the classifier's decision, and which way.

A square patch set to the frame's background level (the per-channel median of the input, i.e. the dark
screen of a RHEED frame) is slid over the frame; at every position the change of a class's log-odds,
log p_k - log(1 - p_k) = logit_k - logsumexp(other logits), is added to the pixels the patch covered and
averaged. Positive values: hiding that region lowers the class's log-odds, so the region is evidence for
the class; negative: evidence against it. Temperature scaling divides all log-odds by the same number, so
the sign and the shape of the map do not depend on calibration.

Why next to Grad-CAM: at 128 px the last ConvNeXt-V2 stage is a 4x4 grid whose cells all see the whole
frame, so Grad-CAM cannot say where in the frame the evidence lies (docs/EXPERIMENTS.md section 50).
Occlusion asks the model itself, at the cost of one forward pass per patch position.
"""
from typing import Sequence

import numpy as np
import torch

from rheed.errors import UserError


def default_patch(input_size: int) -> tuple[int, int]:
    """(patch, stride) for an input size: a tenth of the frame, moved a third of a patch (12/4 px at 128)."""
    patch = max(4, input_size // 10)
    return patch, max(1, patch // 3)


def background_level(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 1, 1): each image's per-channel median, the dark screen of a RHEED frame."""
    return x.flatten(2).median(dim=2).values[:, :, None, None]


def patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """Top (or left) edges of the patches along one axis; the last patch ends on the border."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def class_log_odds(logits: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
    """logit_k - logsumexp(logits of the other classes), per row."""
    own = logits.gather(1, class_index[:, None])[:, 0]
    others = logits.scatter(1, class_index[:, None], float("-inf"))
    return own - torch.logsumexp(others, dim=1)


@torch.no_grad()
def occlusion_maps(model: torch.nn.Module, x: torch.Tensor, class_index: Sequence[int], patch: int,
                   stride: int, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Signed maps (N, H, W) for class_index[i] of image x[i], and the images' unoccluded log-odds (N,)."""
    n, _, height, width = x.shape
    if not 1 <= patch <= min(height, width) or stride < 1:
        raise UserError(f"occlusion patch must be 1..{min(height, width)} px (the input size) and stride at least "
                        f"1 px; got patch {patch}, stride {stride}")
    positions = [(top, left) for top in patch_starts(height, patch, stride)
                 for left in patch_starts(width, patch, stride)]
    fill = background_level(x)
    classes = torch.as_tensor(list(class_index), device=x.device)
    base = class_log_odds(model(x).float(), classes)
    maps = torch.zeros(n, height, width, device=x.device)
    counts = torch.zeros(height, width, device=x.device)
    for top, left in positions:
        counts[top:top + patch, left:left + patch] += 1
    for i in range(n):
        for start in range(0, len(positions), batch_size):
            chunk = positions[start:start + batch_size]
            hidden = x[i].repeat(len(chunk), 1, 1, 1)
            for j, (top, left) in enumerate(chunk):
                hidden[j, :, top:top + patch, left:left + patch] = fill[i]
            drop = base[i] - class_log_odds(model(hidden).float(), classes[i].repeat(len(chunk)))
            for j, (top, left) in enumerate(chunk):
                maps[i, top:top + patch, left:left + patch] += drop[j]
    # a stride longer than the patch leaves pixels no patch covered: no evidence measured there, 0
    return (maps / counts.clamp(min=1)).cpu().numpy(), base.cpu().numpy()
