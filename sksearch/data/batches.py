"""What every loader of sksearch does the same way: uint8 image batches become normalised float32 on the
training device in one fused multiply-add, and an epoch's random draws are keyed by (seed, epoch) only, so a
resumed or re-run epoch sees the same batches on any device."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch`'s draws (shuffle, crops, flips) in a run seeded with `seed`."""
    return seed * 1_000_003 + epoch


def uint8_normaliser(mean: Sequence[float], std: Sequence[float], device: torch.device,
                     memory_format: torch.memory_format = torch.contiguous_format) -> Callable[[Tensor], Tensor]:
    """uint8 (N, C, H, W) batches -> (x / 255 - mean) / std as float32 on `device`, in `memory_format`."""
    c = len(mean)
    m = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)
    # (x / 255 - mean) / std  ==  x * scale + shift: one fused multiply-add per element.
    scale, shift = (1 / (255 * s)).to(device), (-m / s).to(device)

    def normalise(x: Tensor) -> Tensor:
        out = torch.empty(x.shape, dtype=torch.float32, device=device, memory_format=memory_format)
        out.copy_(x)  # uint8 -> float32 (and the layout change) in one pass
        return torch.addcmul(shift, out, scale, out=out)

    return normalise
