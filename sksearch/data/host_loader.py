"""Large images decoded on the host by DataLoader workers, normalised on the training device."""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from sksearch.data.batches import epoch_seed, uint8_normaliser


class HostBatches:
    """A DataLoader of uint8 batches moved to `device` (pinned, non-blocking) and normalised there.

    Each pass is an epoch; a training loader reshuffles with a generator keyed by (seed, epoch), set
    through set_epoch (as with DistributedSampler) or advanced by one per pass."""

    def __init__(self, dataset: Dataset, *, batch_size: int, device: torch.device | str, train: bool,
                 workers: int, mean: Sequence[float], std: Sequence[float], seed: int = 0,
                 channels_last: bool | None = None):
        self.device = torch.device(device)
        self.seed = seed
        self.epoch = 0
        self.train = train
        self.generator = torch.Generator()
        self.loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=train, drop_last=train, num_workers=workers,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            generator=self.generator,
        )
        self.channels_last = self.device.type == "cuda" if channels_last is None else channels_last
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.normalise = uint8_normaliser(mean, std, self.device, fmt)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch))
        if self.train:
            self.epoch += 1
        for images, labels in self.loader:
            yield (self.normalise(images.to(self.device, non_blocking=True)),
                   labels.to(self.device, non_blocking=True))
