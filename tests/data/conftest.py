"""Tiny data sets in their real on-disk formats, written by the tests themselves."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_cifar(root: Path, name: str = "cifar10", per_batch: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """torchvision's layout: pickled dicts with b'data' (N, 3072 uint8) and b'labels' / b'fine_labels'."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, files, key, classes = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10
    else:
        folder, files, key, classes = root / "cifar-100-python", ["train", "test"], b"fine_labels", 100
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for f in files:
        n = per_batch * (5 if name == "cifar100" and f == "train" else 1)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = (np.arange(n) % classes).tolist()
        with (folder / f).open("wb") as fh:
            pickle.dump({b"batch_label": f.encode(), b"data": data, key: labels}, fh)
        written[f] = data
    return written


def write_image_folder(root: Path, classes: list[str], per_class: int = 6, size: tuple[int, int] = (40, 48)) -> None:
    """root/{train,val}/<wnid>/*.JPEG, each class a distinct flat colour."""
    for split, n in (("train", per_class), ("val", 2)):
        for c, wnid in enumerate(classes):
            d = root / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                colour = (40 * c % 256, 255 - 30 * c % 256, (60 * i) % 256)
                Image.new("RGB", size, colour).save(d / f"{wnid}_{i}.JPEG", quality=90)


@pytest.fixture
def cifar10_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path, write_cifar(tmp_path, "cifar10")


@pytest.fixture
def imagenet_root(tmp_path: Path) -> Path:
    write_image_folder(tmp_path / "inet", ["n01", "n02", "n03"])
    return tmp_path / "inet"


@pytest.fixture
def cifar_writer():
    """write_cifar itself, for tests that need another layout (importlib mode cannot import conftest)."""
    return write_cifar
