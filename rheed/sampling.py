"""Class-balanced training batches (`main_finetune.py --balanced_sampler true`).

Each epoch draws as many frames as the training set holds, with replacement, every frame with probability
proportional to 1 / (frames of its class): on average each class fills the same share of every batch.
Minority frames are seen several times per epoch, majority frames not all. The draw depends on the seed and
the epoch only, and is split across DDP processes like torch's DistributedSampler.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch


class BalancedSampler(torch.utils.data.Sampler):
    def __init__(self, targets: Sequence[int], num_replicas: int = 1, rank: int = 0, seed: int = 0):
        targets = np.asarray(targets, dtype=np.int64)
        counts = np.bincount(targets)
        self.weights = torch.as_tensor(1.0 / counts[targets], dtype=torch.double)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(len(targets) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draw(self) -> torch.Tensor:
        """This epoch's indices for all processes together (every process computes the same draw)."""
        generator = torch.Generator()
        # (seed, epoch) hashed together: seed 3 at epoch 1 and seed 4 at epoch 0 draw differently
        generator.manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        return torch.multinomial(self.weights, self.num_samples * self.num_replicas, replacement=True,
                                 generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw()[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
