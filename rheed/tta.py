"""Test-time augmentation by flips (`main_finetune.py --tta_flip true`, also applied by predict.py).

A RHEED pattern is left-right symmetric about the specular spot and cameras are mounted either way up, so
the class of a frame does not change under horizontal or vertical flips. Averaging the logits of the four
flipped views removes any left/right or up/down bias the model picked up from a small training set. Logits
(not probabilities) are averaged, so the temperature fitted on validation applies to the same quantity.
"""
from __future__ import annotations

from typing import Callable

import torch

FLIP_DIMS = ((), (3,), (2,), (2, 3))   # identity, left-right, up-down, both (N, C, H, W)


def flip_averaged_logits(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.stack([forward(x.flip(dims) if dims else x).float() for dims in FLIP_DIMS]).mean(dim=0)
