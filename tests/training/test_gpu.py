"""GPU-only tests (marker `gpu`: skipped without CUDA; `make test-gpu` runs them on a GPU machine).

They import neither Ray nor a database driver, so that a GPU machine with only torch, torchvision, numpy and
the wheels the project needs (pydantic, pyyaml) can run them."""
from __future__ import annotations

import math

import pytest
import torch

from sksearch.config import DatasetConfig, TrainConfig
from sksearch.data import make_data
from sksearch.models import SKConv
from sksearch.spec import ArchSpec, SKConfig
from sksearch.training import common
from sksearch.training.loop import train_trial

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CUDA = torch.device("cuda")


def small_sk() -> ArchSpec:
    return ArchSpec.from_dict({
        "backbone": "resnext_cifar", "depths": [1, 1, 1], "widths": [8, 16, 32], "out_channels": [32, 64, 128],
        "stem_channels": 16, "num_classes": 10, "input_size": [3, 32, 32],
        "sk": {"G": 2, "r": 4, "L": 8, "branches": [{"kernel": 3}, {"kernel": 3, "dilation": 2}, {"kernel": 1}]}})


def _run(**recipe):
    data = make_data(DatasetConfig(name="synthetic", train_size=1024, test_size=10), batch_size=64, device=CUDA)
    return train_trial(small_sk(), data, TrainConfig(**{"epochs": 2, "batch_size": 64, **recipe}), device=CUDA)


def test_amp_dtype_matches_the_device():
    major, _ = torch.cuda.get_device_capability()
    expected = torch.bfloat16 if major >= 8 else torch.float16 if major >= 7 else None
    assert common.amp_dtype(CUDA, True) == expected


def test_bf16_channels_last_training_step():
    unit = SKConv(16, 32, 1, SKConfig(G=4, branches=[{"kernel": 3, "dilation": d} for d in (1, 2, 3)]))
    unit = unit.to(CUDA, memory_format=torch.channels_last)
    x = torch.randn(8, 16, 16, 16, device=CUDA).contiguous(memory_format=torch.channels_last)
    with common.autocast(CUDA, torch.bfloat16):
        y = unit(x)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    result = _run(epochs=1)
    assert math.isfinite(result.history[0].train_loss) and result.images_per_second > 0


def test_cuda_graphs_give_the_eager_curve():
    eager = _run()
    graphs = _run(compile="reduce-overhead")
    assert graphs.compile_seconds > 0 and eager.compile_seconds == 0
    for g, e in zip(graphs.history, eager.history):
        assert g.train_loss == pytest.approx(e.train_loss, rel=0.05)  # bf16 noise


def test_memory_cap_turns_overuse_into_this_trials_oom():
    total = torch.cuda.get_device_properties(CUDA).total_memory
    try:
        assert common.cap_memory(CUDA, 0.25) == 0.25
        with pytest.raises(torch.OutOfMemoryError) as info:
            torch.empty(int(total * 0.4), dtype=torch.uint8, device=CUDA)
        assert common.is_oom(info.value)
        small = torch.empty(int(total * 0.1), dtype=torch.uint8, device=CUDA)
        del small
        common.release_memory(CUDA)
        assert torch.cuda.memory_reserved(CUDA) < total * 0.05
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, CUDA)
