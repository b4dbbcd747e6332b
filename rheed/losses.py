"""Fine-tuning criteria: upstream's choice of loss plus optional per-class weights and focal loss.

Weighted loss (any target kind: hard labels, label smoothing, Mixup/CutMix soft targets):

    loss_i = - sum_c w_c * y_ic * log p_ic
    loss   = sum_i loss_i / sum_i sum_c w_c * y_ic

For hard labels (y one-hot) the denominator is sum_i w_{t_i}, i.e. exactly torch's
CrossEntropyLoss(weight=w, reduction='mean'). For soft targets each sample contributes its target-weighted
class weight to the denominator, so the loss stays a weighted average of per-sample cross-entropies and its
scale does not depend on the overall scale of w. With w = 1 the denominator is the batch size (every target
row sums to 1) and the loss is the plain mean, as in timm's criteria.
"""
import argparse
import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import timm_compat  # noqa: F401
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

from rheed.errors import UserError

CLASS_WEIGHT_MODES = ("none", "auto", "effective")


class WeightedSoftTargetCrossEntropy(nn.Module):
    """Class-weighted cross-entropy for hard (class index) or soft (N, K) targets.

    Hard targets are turned into smoothed one-hot rows: (1 - smoothing) + smoothing / K on the true class and
    smoothing / K elsewhere, the target timm's LabelSmoothingCrossEntropy and Mixup use.
    """

    def __init__(self, weight: torch.Tensor | None = None, smoothing: float = 0.0):
        super().__init__()
        self.smoothing = smoothing
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def soft_targets(self, target: torch.Tensor, num_classes: int) -> torch.Tensor:
        if target.ndim == 2:
            return target
        off_value = self.smoothing / num_classes
        on_value = 1.0 - self.smoothing + off_value
        soft = torch.full((target.shape[0], num_classes), off_value, device=target.device)
        return soft.scatter_(1, target.long().view(-1, 1), on_value)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=-1)
        soft = self.soft_targets(target, logits.shape[-1]).to(log_probs.dtype)
        if self.weight is not None:
            soft = soft * self.weight.to(log_probs.dtype)
        return -(soft * log_probs).sum() / soft.sum()


class FocalLoss(WeightedSoftTargetCrossEntropy):
    """Focal loss with the same targets, class weights and normalisation as WeightedSoftTargetCrossEntropy:

        loss_i = - sum_c w_c * y_ic * (1 - p_ic) ** gamma * log p_ic,  loss = sum_i loss_i / sum_i sum_c w_c y_ic

    gamma = 0 is exactly the weighted cross-entropy. Well-classified frames (p near 1) contribute little, so
    training concentrates on the hard ones (Lin et al. 2017).
    """

    def __init__(self, gamma: float, weight: torch.Tensor | None = None, smoothing: float = 0.0):
        super().__init__(weight, smoothing)
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=-1)
        focus = (1.0 - log_probs.exp()).clamp(min=0.0) ** self.gamma
        soft = self.soft_targets(target, logits.shape[-1]).to(log_probs.dtype)
        if self.weight is not None:
            soft = soft * self.weight.to(log_probs.dtype)
        return -(soft * focus * log_probs).sum() / soft.sum()


def compute_class_weights(mode: str, class_counts: Sequence[int], beta: float = 0.999) -> torch.Tensor | None:
    """Per-class loss weights from `--class_weights`.

    none -> None; auto -> inverse frequency 1 / n_c; effective -> (1 - beta) / (1 - beta ** n_c)
    (effective number of samples, Cui et al. 2019); both normalised to mean 1 over classes. Otherwise a
    comma-separated list with one positive number per class, used as given.
    """
    counts = [int(n) for n in class_counts]
    num_classes = len(counts)
    mode = mode.strip()
    if mode.lower() == "none":
        return None
    if mode.lower() in ("auto", "effective"):
        empty = [i for i, n in enumerate(counts) if n <= 0]
        if empty:
            raise UserError(f"--class_weights {mode}: class index {empty[0]} has no training images")
        if mode.lower() == "auto":
            raw = [1.0 / n for n in counts]
        else:
            if not 0.0 <= beta < 1.0:
                raise UserError(f"--class_weights_beta must be in [0, 1), got {beta}")
            raw = [(1.0 - beta) / (1.0 - beta ** n) for n in counts]
        mean = sum(raw) / num_classes
        return torch.tensor([w / mean for w in raw], dtype=torch.float32)
    try:
        values = [float(v) for v in mode.split(",")]
    except ValueError:
        raise UserError(f"--class_weights must be none, auto, effective or a comma-separated list of numbers, "
                        f"got '{mode}'") from None
    if len(values) != num_classes:
        raise UserError(f"--class_weights has {len(values)} values but the dataset has {num_classes} classes")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise UserError(f"--class_weights values must be positive numbers, got '{mode}'")
    return torch.tensor(values, dtype=torch.float32)


def mixup_active(args: argparse.Namespace) -> bool:
    return args.mixup > 0 or args.cutmix > 0.0 or args.cutmix_minmax is not None


def build_criterion(args: argparse.Namespace, class_counts: Sequence[int]) -> nn.Module:
    """Upstream's criterion choice (Mixup -> soft targets, else smoothing, else plain CE), optionally weighted.

    Without class weights the upstream (timm/torch) classes are returned unchanged.
    """
    weight = compute_class_weights(getattr(args, "class_weights", "none"), class_counts,
                                   getattr(args, "class_weights_beta", 0.999))
    gamma = getattr(args, "focal_gamma", 0.0)
    if gamma < 0:
        raise UserError(f"--focal_gamma must be >= 0, got {gamma}")
    if gamma > 0:  # soft (Mixup) or smoothed targets are handled like the weighted cross-entropy's
        return FocalLoss(gamma, weight, smoothing=0.0 if mixup_active(args) else args.smoothing)
    if mixup_active(args):
        # Mixup already builds smoothed soft targets, so the criterion itself must not smooth again.
        return SoftTargetCrossEntropy() if weight is None else WeightedSoftTargetCrossEntropy(weight)
    if args.smoothing > 0.0:
        if weight is None:
            return LabelSmoothingCrossEntropy(smoothing=args.smoothing)
        return WeightedSoftTargetCrossEntropy(weight, smoothing=args.smoothing)
    return nn.CrossEntropyLoss(weight=weight)
