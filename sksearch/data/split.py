"""Seeded, stratified hold-out of a validation split from a training set."""
from __future__ import annotations

import torch
from torch import Tensor


def stratified_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train indices, validation indices), both sorted and disjoint, covering every index once.

    Each class gives round(fraction * its count) images to validation (at least one image overall), chosen
    by a generator seeded with `seed`: the same labels and seed always give the same split."""
    labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
    n = labels.numel()
    g = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(n, generator=g)
    # Group the shuffled indices by class (stable sort keeps the random order inside each class) ...
    order = shuffled[torch.sort(labels[shuffled], stable=True).indices]
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts[labels[order]]                 # position inside its class
    quota = torch.round(counts.double() * fraction).long()
    if int(quota.sum()) == 0 and n > 1:
        quota[labels[order[0]]] = 1
    # ... and take the first `quota` of each class.
    is_val = rank < quota[labels[order]]
    return order[~is_val].sort().values, order[is_val].sort().values


def seeded_subset(n: int, size: int | None, seed: int) -> Tensor | None:
    """Indices of a seeded random subset of `size` out of n (None: keep everything)."""
    if size is None or size >= n:
        return None
    g = torch.Generator().manual_seed(seed + 7919)
    return torch.randperm(n, generator=g)[:size].sort().values
