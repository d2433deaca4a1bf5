"""ShuffleNetV2: the plain presets are torchvision's network; '+SK' swaps every depthwise 3x3 for an SK unit."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.shufflenetv2 import ShuffleNetV2

from sksearch.models import SKConv, build_model
from sksearch.spec import load_spec

# The SK paper's stage repeats {4, 6, 6}; torchvision's channel lists include the stem and the last conv.
TORCHVISION = {
    "shufflenet_v2_x0_5": [24, 48, 96, 192, 1024],
    "shufflenet_v2_x1_0": [24, 116, 232, 464, 1024],
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_plain_preset_is_torchvision_shufflenet(name: str) -> None:
    ours = build_model(load_spec(name)).eval()
    theirs = ShuffleNetV2([4, 6, 6], TORCHVISION[name]).eval()
    assert n_params(ours) == n_params(theirs)
    # Same layers in the same order: copying the weights across gives the same function.
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert [v.shape for v in ours_state.values()] == [v.shape for v in theirs_state.values()]
    torch.manual_seed(0)
    for value in theirs_state.values():
        if value.is_floating_point():
            value.copy_(torch.rand_like(value) + 0.5)  # non-trivial BN statistics and weights
    ours.load_state_dict(dict(zip(ours_state, theirs_state.values())))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5_sk", "shufflenet_v2_x1_0_sk"])
def test_sk_preset_replaces_every_depthwise_conv(name: str) -> None:
    spec = load_spec(name)
    plain = build_model(load_spec(name.removesuffix("_sk")), init=False)
    sk = build_model(spec, init=False)
    plain_units = [m for m in plain.modules() if isinstance(m, SKConv)]
    sk_units = [m for m in sk.modules() if isinstance(m, SKConv)]
    # {4, 6, 6} units, one depthwise conv each plus one more in each stage's downsampling unit.
    assert len(plain_units) == len(sk_units) == 16 + 3
    for unit in sk_units:
        assert unit.M == 2 and unit.use_attention
        convs = [path[0] for path in unit.paths]
        assert all(c.groups == c.in_channels == c.out_channels for c in convs)  # depthwise
        assert [c.dilation for c in convs] == [(1, 1), (2, 2)]  # K3 + K5
        assert not any(isinstance(m, nn.ReLU) for m in unit.paths.modules())  # no ReLU in either path
        assert unit.fuse[0].out_channels == max(unit.channels // 4, spec.sk.L)  # r = 4
    assert all(not u.use_attention and u.M == 1 for u in plain_units)
    assert n_params(sk) > n_params(plain)
