from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sksearch.config import DatasetConfig, read_class_list
from sksearch.data import make_data
from sksearch.data.imagenet import image_folder, imagenet_transforms
from sksearch.errors import UserError

CPU = torch.device("cpu")


def test_class_list_selects_and_orders_the_subset(imagenet_root: Path, tmp_path: Path):
    classes = tmp_path / "classes.txt"
    classes.write_text("# two of three\nn03\n\nn01  # comment\n")
    assert read_class_list(classes) == ["n03", "n01"]
    cfg = DatasetConfig(name="imagenet_subset", root=str(imagenet_root), classes_file=str(classes),
                        resolution=24, val_fraction=0.34, workers=0)
    data = make_data(cfg, batch_size=4, device=CPU)
    assert data.num_classes == 2 and data.input_size == [3, 24, 24]
    assert (data.n_train, data.n_val) == (8, 4)  # 6 images a class, 2 held out from each
    x, y = next(iter(data.train))
    assert x.shape == (4, 3, 24, 24) and x.dtype == torch.float32 and set(y.tolist()) <= {0, 1}
    # Evaluation is deterministic (resize + centre crop) and keeps every image.
    a = torch.cat([x for x, _ in data.val])
    b = torch.cat([x for x, _ in data.val])
    assert a.shape[0] == 4 and torch.equal(a, b)
    assert sum(y.numel() for _, y in data.test) == 4   # val/ is the test set: 2 images x 2 classes


def test_workers_and_persistent_loader(imagenet_root: Path):
    cfg = DatasetConfig(name="imagenet_subset", root=str(imagenet_root), resolution=16, workers=1)
    data = make_data(cfg, batch_size=2, device=CPU)
    assert data.train.loader.persistent_workers
    for _ in range(2):  # two epochs through the same workers
        assert sum(y.numel() for _, y in data.train) == data.n_train // 2 * 2
    assert data.num_classes == 3


def test_transforms_shapes():
    from PIL import Image

    img = Image.new("RGB", (50, 30), (10, 200, 30))
    assert imagenet_transforms(32, train=True)(img).shape == (3, 32, 32)
    out = imagenet_transforms(32, train=False, normalize=False)(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8


def test_missing_class_folder_and_split(imagenet_root: Path, tmp_path: Path):
    with pytest.raises(UserError, match="n09") as info:
        image_folder(imagenet_root, "train", ["n01", "n09"], 16, train=False)
    assert info.value.key == "dataset.classes_file"
    with pytest.raises(UserError, match=str(tmp_path / "empty" / "train")):
        image_folder(tmp_path / "empty", "train", None, 16, train=True)
    with pytest.raises(UserError, match="cannot read the class list"):
        read_class_list(tmp_path / "absent.txt")
