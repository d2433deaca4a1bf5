from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sksearch.config import DatasetConfig, StudyConfig
from sksearch.data import make_data
from sksearch.data.cifar import load_cifar
from sksearch.errors import UserError, cli_entry

CPU = torch.device("cpu")


def test_reads_torchvision_cifar10_pickles(cifar10_root):
    root, written = cifar10_root
    (xtr, ytr), (xte, yte) = load_cifar("cifar10", root)
    assert xtr.dtype == torch.uint8 and xtr.shape == (100, 3, 32, 32)
    assert xte.shape == (20, 3, 32, 32) and ytr.dtype == torch.int64
    # Row-major CHW exactly as the pickle stores it: batch 2's first image is training image 20.
    assert np.array_equal(xtr[20].numpy().reshape(-1), written["data_batch_2"][0])
    assert np.array_equal(xte[-1].numpy().reshape(-1), written["test_batch"][-1])
    assert ytr[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_cifar100_fine_labels(tmp_path: Path, cifar_writer):
    cifar_writer(tmp_path, "cifar100", per_batch=40)
    data = make_data(DatasetConfig(name="cifar100", root=str(tmp_path), val_fraction=0.25),
                     batch_size=16, device=CPU)
    assert data.num_classes == 100 and data.input_size == [3, 32, 32]
    assert data.n_train + data.n_val == 200
    x, y = next(iter(data.train))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and int(y.max()) < 100


def test_make_data_splits_a_root_resolved_against_the_study_folder(cifar10_root):
    root, _ = cifar10_root
    # load_study validates with the study file's folder as base_dir: the path is absolute from then on.
    study = {"name": "c", "search_space": "s.yaml",
             "dataset": {"name": "cifar10", "root": root.name, "val_fraction": 0.2, "train_size": 60}}
    cfg = StudyConfig.model_validate(study, context={"base_dir": root.parent}).dataset
    assert cfg.root == str(root)
    data = make_data(cfg, batch_size=8, device=CPU)
    assert data.n_train + data.n_val == 60 and 8 <= data.n_val <= 16   # per-class rounding of 20%
    assert sum(y.numel() for _, y in data.val) == data.n_val          # eval keeps the last partial batch
    assert sum(y.numel() for _, y in data.train) == data.n_train // 8 * 8  # train drops it
    assert sum(y.numel() for _, y in data.test) == 20


def test_missing_files_name_the_expected_path(tmp_path: Path):
    cfg = DatasetConfig(name="cifar10", root=str(tmp_path / "nowhere"))
    with pytest.raises(UserError) as info:
        make_data(cfg, batch_size=8, device=CPU)
    msg = str(info.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py" / "data_batch_1") in msg
    assert "download: true" in msg and info.value.key == "dataset.root"

    @cli_entry
    def main(argv):
        make_data(cfg, batch_size=8, device=CPU)

    assert main([]) == 2  # a command reports it as a user error: exit 2, no traceback


def test_corrupt_batch_is_a_user_error(cifar10_root):
    root, _ = cifar10_root
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="CIFAR format"):
        load_cifar("cifar10", root)
