"""Test-time augmentation: flips (`main_finetune.py --tta_flip true`) and input sizes (`--tta_scales`), both
stored in the checkpoint's arguments and applied the same way by predict.py.

A RHEED pattern is left-right symmetric about the specular spot and cameras are mounted either way up, so
the class of a frame does not change under horizontal or vertical flips. Averaging the logits of the four
flipped views removes any left/right or up/down bias the model picked up from a small training set.

Scales: the frame is also seen a little larger than the training input size, so small spots and thin streaks
cover a few more pixels. It helped on frames of other cameras and of an independent simulator and was mixed on
test frames from the training source (docs/EXPERIMENTS.md sections 24, 35); the launchers use 1 and 1.125
(with their zoom-in-and-out training crops the gain is smaller, section 36). The evaluation transform resizes to the
largest size and the other views are shrunk from it here (bilinear, antialiased: no ringing, so a zero
background stays zero).

Logits (not probabilities) are averaged, so the temperature fitted on validation applies to the same quantity.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

FLIP_DIMS = ((), (3,), (2,), (2, 3))   # identity, left-right, up-down, both (N, C, H, W)


def flip_averaged_logits(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.stack([forward(x.flip(dims) if dims else x).float() for dims in FLIP_DIMS]).mean(dim=0)


def view_sizes(input_size: int, scales: Sequence[float] | None) -> list[int]:
    """Square input sizes of the evaluation views: input_size times each scale (one view without scales)."""
    return sorted({round(input_size * s) for s in scales}) if scales else [input_size]


def eval_input_size(input_size: int, scales: Sequence[float] | None) -> int:
    """The size the evaluation transform resizes a frame to: the largest view."""
    return view_sizes(input_size, scales)[-1]


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False, antialias=True)


def tta_logits(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, sizes: Sequence[int] | None = None,
               flip: bool = False) -> torch.Tensor:
    """Logits of `forward` averaged over the views: each size in `sizes` (x itself when None), each with the
    four flips when `flip`."""
    views = [resized(x, s) for s in sizes] if sizes else [x]
    one = (lambda v: flip_averaged_logits(forward, v)) if flip else (lambda v: forward(v).float())
    return torch.stack([one(v) for v in views]).mean(dim=0)
