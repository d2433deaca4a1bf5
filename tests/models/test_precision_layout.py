"""Under CPU bf16 autocast (the twin of CUDA's), SK units keep bf16 and channels_last, ShuffleNet units keep
channels_last, and the classifier's logits are fp32 (issue 14, faults 2, 6, 8)."""
from __future__ import annotations

import pytest
import torch

from sksearch.models import SKConv, build_model
from sksearch.models.shufflenet import ShuffleUnit, channel_shuffle
from sksearch.spec import ArchSpec, SKConfig

CL = torch.channels_last
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("M", [2, 3, 4])
def test_sk_unit_keeps_bf16_and_channels_last_under_autocast(M: int) -> None:
    branches = [{"kernel": 3, "dilation": d} for d in range(1, M + 1)]
    torch.manual_seed(0)
    unit = SKConv(16, 32, 1, SKConfig(G=4, branches=branches)).to(memory_format=CL)
    x = torch.randn(2, 16, 8, 8).contiguous(memory_format=CL)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = unit(x)
    assert y.dtype == torch.bfloat16
    assert y.is_contiguous(memory_format=CL) and not y.is_contiguous()
    ref = unit(x)  # fp32: the bf16 output is the same function
    torch.testing.assert_close(y.float(), ref, rtol=0.05, atol=0.05)
    y.float().square().mean().backward()
    assert all(p.grad is not None for p in unit.parameters())


def test_channel_shuffle_keeps_channels_last_and_the_order() -> None:
    x = torch.arange(2 * 8 * 3 * 3, dtype=torch.float32).view(2, 8, 3, 3)
    nchw = channel_shuffle(x, 2)
    nhwc = channel_shuffle(x.contiguous(memory_format=CL), 2)
    assert nhwc.is_contiguous(memory_format=CL) and not nhwc.is_contiguous()
    assert torch.equal(nchw, nhwc)
    assert nchw[0, :, 0, 0].tolist() == x[0, [0, 4, 1, 5, 2, 6, 3, 7], 0, 0].tolist()


def test_shufflenet_unit_keeps_channels_last() -> None:
    cfg = SKConfig(G=8, branches=[{"kernel": 3, "relu": False}, {"kernel": 3, "dilation": 2, "relu": False}])
    for stride in (1, 2):
        unit = ShuffleUnit(16, 16, stride, cfg).to(memory_format=CL)
        y = unit(torch.randn(2, 16, 8, 8).contiguous(memory_format=CL))
        assert y.is_contiguous(memory_format=CL) and not y.is_contiguous()


def test_logits_are_fp32_under_bf16_autocast() -> None:
    spec = ArchSpec.from_dict({
        "backbone": "resnext_cifar", "depths": [1, 1, 1], "widths": [4, 8, 8], "out_channels": [16, 32, 32],
        "stem_channels": 8, "num_classes": 100, "input_size": [3, 32, 32],
        "sk": {"G": 2, "r": 4, "L": 8, "branches": [{"kernel": 3}, {"kernel": 3, "dilation": 2}]}})
    torch.manual_seed(0)
    model = build_model(spec).eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(64, 3, 32, 32))
    assert logits.dtype == torch.float32
    # bf16 logits would tie; fp32 ones from the fp32 classifier do not (a bf16 copy has fewer distinct values)
    assert logits.unique().numel() > logits.bfloat16().unique().numel()
