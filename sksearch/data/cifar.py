"""CIFAR-10 / CIFAR-100 from torchvision's on-disk layout (the "python version" pickles), as uint8 tensors.

    <root>/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch
    <root>/cifar-100-python/train, test
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sksearch.errors import UserError

LAYOUT = {
    # name: (folder, training files, test file, label key, download page)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}


def _read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    # The official files are Python pickles (torchvision reads them the same way); encoding='bytes'
    # because they were written by Python 2.
    with path.open("rb") as fh:
        entry = pickle.load(fh, encoding="bytes")
    data = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data, np.asarray(entry[label_key], dtype=np.int64)


def _download(name: str, root: Path) -> None:
    from torchvision import datasets  # imported here: only needed for downloading

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        cls(str(root), train=True, download=True)
    except Exception as exc:  # network errors, checksum mismatch
        raise UserError(f"downloading {name} into {root} failed: {exc}", key="dataset.download") from None


def ensure_cifar(name: str, root: Path, *, download: bool = False) -> list[Path]:
    """The data set's files (train batches, then the test batch), downloading them first if asked;
    a UserError naming the first missing file and how to get it otherwise."""
    folder, train_files, test_file, _label_key, url = LAYOUT[name]
    base = root / folder
    wanted = [base / f for f in [*train_files, test_file]]
    missing = [p for p in wanted if not p.is_file()]
    if missing and download:
        _download(name, root)
        missing = [p for p in wanted if not p.is_file()]
    if missing:
        raise UserError(
            f"{name} not found: expected {missing[0]}"
            + (f" (and {len(missing) - 1} more files of {base})" if len(missing) > 1 else "")
            + f". Set `dataset.download: true` to fetch it with torchvision, or download {url} and extract it"
            f" into {root}", key="dataset.root")
    return wanted


def load_cifar(name: str, root: Path, *, download: bool = False) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """((train images, labels), (test images, labels)): uint8 (N, 3, 32, 32) and int64 (N,)."""
    files = ensure_cifar(name, root, download=download)
    label_key = LAYOUT[name][3]

    def read(files: list[Path]) -> tuple[Tensor, Tensor]:
        try:
            parts = [_read_batch(p, label_key) for p in files]
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
            raise UserError(f"{name}: cannot read {files[0].parent} as torchvision's CIFAR format: {exc!r}",
                            key="dataset.root") from None
        images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        return images, labels

    return read(files[:-1]), read(files[-1:])
