"""Data sets for trials: synthetic, CIFAR-10/100, ImageNet subsets, each as train / val / test batches.

`val` is held out from the TRAINING set (the search selects on it); `test` is the data set's own test
split, for final models only. Small-image sets live on the training device as uint8 tensors
(device_loader); ImageNet-style folders go through DataLoader workers (host_loader).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor
from torch.utils.data import Subset

from sksearch.config import DatasetConfig
from sksearch.data.cifar import load_cifar
from sksearch.data.device_loader import DeviceBatches
from sksearch.data.host_loader import HostBatches
from sksearch.data.split import seeded_subset, stratified_split
from sksearch.data.synthetic import synthetic_split
from sksearch.errors import UserError

SYNTHETIC_TRAIN = 10_000
SYNTHETIC_TEST = 2_000


@dataclass
class DataBundle:
    train: Iterable[tuple[Tensor, Tensor]]   # re-iterable; each pass is one epoch, reshuffled, augmented
    val: Iterable[tuple[Tensor, Tensor]]     # held out from the training set (search selects on it)
    test: Iterable[tuple[Tensor, Tensor]] | None  # the data set's test split: final models only
    num_classes: int
    input_size: list[int]                    # [3, H, W]
    n_train: int
    n_val: int


def _channel_stats(images: Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean/std on the 0-1 scale, in chunks (a float copy of CIFAR would be 600 MB)."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].to(torch.float64)
        s += x.sum((0, 2, 3))
        sq += (x * x).sum((0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = s / count
    std = (sq / count - mean * mean).clamp(min=1e-12).sqrt()
    return (mean / 255).tolist(), (std / 255).tolist()


def _small_images(cfg: DatasetConfig, root: Path) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], int]:
    if cfg.name == "synthetic":
        return (synthetic_split(cfg.train_size or SYNTHETIC_TRAIN, cfg.seed, "train"),
                synthetic_split(cfg.test_size or SYNTHETIC_TEST, cfg.seed, "test"), 10)
    (xtr, ytr), (xte, yte) = load_cifar(cfg.name, root, download=cfg.download)
    for size, which in ((cfg.train_size, "train"), (cfg.test_size, "test")):
        keep = seeded_subset(len(ytr) if which == "train" else len(yte), size, cfg.seed)
        if keep is not None and which == "train":
            xtr, ytr = xtr[keep], ytr[keep]
        elif keep is not None:
            xte, yte = xte[keep], yte[keep]
    return (xtr, ytr), (xte, yte), 10 if cfg.name == "cifar10" else 100


def make_data(cfg: DatasetConfig, *, batch_size: int, device: torch.device, seed: int = 0,
              object_scale: float = 1.0) -> DataBundle:
    """The data set `cfg` names, as batches on `device`.

    cfg.seed fixes the data itself (synthetic generation, size caps, the validation split); `seed` fixes
    the order and augmentation of training batches. cfg's paths are absolute (DatasetConfig resolves them).
    object_scale (synthetic only): the same images with k-times-larger objects, normalised with the
    statistics of the unscaled training set that the models saw."""
    device = torch.device(device)
    root = Path(cfg.root)
    if object_scale != 1.0 and cfg.name != "synthetic":
        raise UserError(f"object_scale {object_scale}: only the synthetic data set can be generated at another "
                        f"object size", key="dataset.name")
    if cfg.name == "imagenet_subset":
        return _imagenet_subset(cfg, root, batch_size=batch_size, device=device, seed=seed)

    (xtr, ytr), (xte, yte), num_classes = _small_images(cfg, root)
    train_idx, val_idx = stratified_split(ytr, cfg.val_fraction, cfg.seed)
    mean, std = _channel_stats(xtr[train_idx])
    if object_scale != 1.0:
        xtr = synthetic_split(len(ytr), cfg.seed, "train", object_scale)[0]
        xte = synthetic_split(len(yte), cfg.seed, "test", object_scale)[0]

    def batches(x: Tensor, y: Tensor, train: bool) -> DeviceBatches:
        return DeviceBatches(x, y, batch_size=batch_size, device=device, mean=mean, std=std, train=train, seed=seed)

    return DataBundle(
        train=batches(xtr[train_idx], ytr[train_idx], True),
        val=batches(xtr[val_idx], ytr[val_idx], False),
        test=batches(xte, yte, False),
        num_classes=num_classes,
        input_size=[3, 32, 32],
        n_train=len(train_idx),
        n_val=len(val_idx),
    )


def _imagenet_subset(cfg: DatasetConfig, root: Path, *, batch_size: int, device: torch.device, seed: int) -> DataBundle:
    # torchvision only here: importing it costs every trial process about a second of CPU, for small-image sets too
    from sksearch.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, image_folder

    classes = cfg.class_names()
    res = cfg.resolution
    # Two views of train/: augmented for training, eval transforms for the held-out validation split.
    train_view = image_folder(root, "train", classes, res, train=True, normalize=False)
    eval_view = image_folder(root, "train", classes, res, train=False, normalize=False)
    targets = torch.tensor(train_view.targets)
    pool = seeded_subset(len(targets), cfg.train_size, cfg.seed)
    pool = torch.arange(len(targets)) if pool is None else pool
    tr, va = stratified_split(targets[pool], cfg.val_fraction, cfg.seed)
    train_idx, val_idx = pool[tr].tolist(), pool[va].tolist()

    def batches(ds, train: bool) -> HostBatches:
        return HostBatches(ds, batch_size=batch_size, device=device, train=train, workers=cfg.workers,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD, seed=seed)

    test = None
    if (root / "val").is_dir():
        test_set = image_folder(root, "val", classes, res, train=False, normalize=False)
        keep = seeded_subset(len(test_set), cfg.test_size, cfg.seed)
        test = batches(test_set if keep is None else Subset(test_set, keep.tolist()), False)
    return DataBundle(
        train=batches(Subset(train_view, train_idx), True),
        val=batches(Subset(eval_view, val_idx), False),
        test=test,
        num_classes=len(train_view.classes),
        input_size=[3, res, res],
        n_train=len(train_idx),
        n_val=len(val_idx),
    )


__all__ = ["DataBundle", "make_data", "DeviceBatches", "HostBatches", "stratified_split"]
