"""ImageNet-style folders (ImageNet itself or a subset of its classes), decoded by DataLoader workers.

    <root>/train/<wnid>/*.JPEG     training images; the search's validation split is held out from here
    <root>/val/<wnid>/*.JPEG       the test set (only for final models)

The full DDP training command reuses imagenet_transforms and image_folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from sksearch.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_transforms(resolution: int, train: bool, *, normalize: bool = True) -> v2.Compose:
    """Training: RandomResizedCrop + horizontal flip. Evaluation: resize to resolution*256/224, centre crop.

    normalize=False stops at uint8 tensors, so that the (4x smaller) bytes cross to the GPU and the
    normalisation runs there; sksearch's own loader does that."""
    if train:
        steps: list[Any] = [v2.RandomResizedCrop(resolution, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(round(resolution * 256 / 224), antialias=True), v2.CenterCrop(resolution)]
    steps += [v2.PILToTensor()]
    if normalize:
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


class _ClassSubsetFolder(datasets.ImageFolder):
    """ImageFolder restricted to (and labelled in the order of) a given class list."""

    def __init__(self, root: str, classes: list[str] | None, transform: Callable | None):
        self._wanted = classes
        super().__init__(root, transform=transform)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        if self._wanted is None:
            return super().find_classes(directory)
        missing = [c for c in self._wanted if not (Path(directory) / c).is_dir()]
        if missing:
            raise UserError(f"class folder {Path(directory) / missing[0]} not found"
                            + (f" (and {len(missing) - 1} more from the class list)" if len(missing) > 1 else ""),
                            key="dataset.classes_file")
        return list(self._wanted), {c: i for i, c in enumerate(self._wanted)}


def image_folder(root: Path, split: str, classes: list[str] | None, resolution: int, train: bool,
                 *, normalize: bool = True) -> Dataset:
    """<root>/<split>/<class>/*.JPEG as a Dataset of (image tensor, label), with the train or eval transforms."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise UserError(f"no ImageNet-style folder at {folder} (expected {split}/<wnid>/*.JPEG under dataset.root)",
                        key="dataset.root")
    try:
        return _ClassSubsetFolder(str(folder), classes, imagenet_transforms(resolution, train, normalize=normalize))
    except FileNotFoundError as exc:  # a class folder without images
        raise UserError(str(exc), key="dataset.root") from None
