from __future__ import annotations

import torch

from sksearch.config import DatasetConfig
from sksearch.data import make_data
from sksearch.data.split import stratified_split


def test_split_is_disjoint_complete_deterministic_and_stratified():
    labels = torch.arange(1000) % 10
    tr, va = stratified_split(labels, 0.1, seed=3)
    assert len(set(tr.tolist()) & set(va.tolist())) == 0
    assert sorted(tr.tolist() + va.tolist()) == list(range(1000))
    assert torch.bincount(labels[va]).tolist() == [10] * 10
    tr2, va2 = stratified_split(labels, 0.1, seed=3)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    assert not torch.equal(stratified_split(labels, 0.1, seed=4)[1], va)


def test_bundle_validation_images_are_not_training_images():
    cfg = DatasetConfig(name="synthetic", train_size=500, test_size=100, val_fraction=0.2)
    data = make_data(cfg, batch_size=500, device=torch.device("cpu"))
    assert (data.n_train, data.n_val) == (400, 100)
    train = {bytes(img.numpy()) for img in data.train.images[:, :, 4:-4, 4:-4]}  # undo the stored padding
    val = {bytes(img.numpy()) for img in data.val.images}
    assert len(train) == 400 and len(val) == 100 and not (train & val)
    again = make_data(cfg, batch_size=500, device=torch.device("cpu"))
    assert torch.equal(again.val.images, data.val.images)
