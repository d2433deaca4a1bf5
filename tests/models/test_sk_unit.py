"""The SK unit (SKConv) against the paper's definition (sk-design-space.md section 1)."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from sksearch.models import SKConv
from sksearch.spec import SKConfig

K3 = {"kernel": 3, "dilation": 1}
K5 = {"kernel": 3, "dilation": 2}
K7 = {"kernel": 3, "dilation": 3}


def sk(cin: int = 32, cout: int = 64, stride: int = 1, **cfg: Any) -> SKConv:
    cfg.setdefault("G", 8)
    cfg.setdefault("branches", [K3, K5])
    torch.manual_seed(0)
    unit = SKConv(cin, cout, stride, SKConfig(**cfg))
    randomize_bn(unit)
    return unit


def randomize_bn(module: nn.Module) -> None:
    # Non-trivial BN affine and running statistics, so that eval-mode comparisons test something.
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)


def generic_select(unit: SKConv, x: torch.Tensor) -> torch.Tensor:
    """The paper's select step written out: V = sum_m a_m * U_m with a = softmax over paths."""
    feats = [path(x) for path in unit.paths]
    a = unit.attention(feats)
    return (torch.stack(feats, dim=1) * a).sum(dim=1)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("train", [False, True])
def test_single_path_without_attention_is_a_grouped_conv(stride: int, train: bool) -> None:
    unit = sk(stride=stride, attention="sum", branches=[K3])
    reference = nn.Sequential(nn.Conv2d(32, 64, 3, stride, padding=1, groups=8, bias=False), nn.BatchNorm2d(64), nn.ReLU())
    reference.load_state_dict(unit.paths[0].state_dict())
    unit.train(train), reference.train(train)
    x = torch.randn(2, 32, 9, 9)
    torch.testing.assert_close(unit(x), reference(x), rtol=0, atol=0)
    assert not hasattr(unit, "fuse") and not hasattr(unit, "select")
    assert sum(p.numel() for p in unit.parameters()) == sum(p.numel() for p in reference.parameters())


def test_attention_sums_to_one_per_channel() -> None:
    unit = sk(branches=[K3, K5, K7]).eval()
    x = torch.randn(3, 32, 8, 8)
    a = unit.attention([path(x) for path in unit.paths])
    assert a.shape == (3, 3, 64, 1, 1)
    assert (a > 0).all()
    torch.testing.assert_close(a.sum(dim=1), torch.ones(3, 64, 1, 1))
    assert not torch.allclose(a[:, 0], a[:, 1])  # the weights depend on the input, not a constant split


@pytest.mark.parametrize("train", [False, True])
def test_two_path_fast_path_equals_generic_softmax(train: bool) -> None:
    unit = sk().train(train)
    x = torch.randn(4, 32, 8, 8)
    x_fast, x_generic = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast = unit(x_fast)
    generic = generic_select(unit, x_generic)
    torch.testing.assert_close(fast, generic, rtol=1e-5, atol=1e-5)
    weight = torch.randn_like(fast)
    (fast * weight).sum().backward()
    grads_fast = [x_fast.grad] + [p.grad.clone() for p in unit.parameters()]
    unit.zero_grad()
    (generic * weight).sum().backward()
    grads_generic = [x_generic.grad] + [p.grad for p in unit.parameters()]
    for g_fast, g_generic in zip(grads_fast, grads_generic):
        torch.testing.assert_close(g_fast, g_generic, rtol=1e-4, atol=1e-4)


def test_three_paths() -> None:
    unit = sk(branches=[K3, K5, {"kernel": 1}])
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    y = unit(x)
    assert y.shape == (2, 64, 8, 8)
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in unit.parameters())
    torch.testing.assert_close(unit.eval()(x), generic_select(unit, x))
    assert unit.select.out_channels == 3 * 64


def test_sum_attention_adds_the_paths() -> None:
    unit = sk(attention="sum", branches=[K3, K5, K7]).eval()
    x = torch.randn(2, 32, 8, 8)
    torch.testing.assert_close(unit(x), sum(path(x) for path in unit.paths))


def test_relu_per_path() -> None:
    unit = sk(branches=[{**K3, "relu": True}, {**K5, "relu": False}])
    has_relu = [any(isinstance(m, nn.ReLU) for m in path.modules()) for path in unit.paths]
    assert has_relu == [True, False]
    x = torch.randn(2, 32, 8, 8)
    assert (unit.paths[0](x) >= 0).all() and (unit.paths[1](x) < 0).any()


@pytest.mark.parametrize("channels, r, L, d", [(64, 16, 32, 32), (1024, 16, 32, 64), (256, 4, 16, 64), (64, 2, 8, 32), (48, 4, 16, 16)])
def test_fuse_width_is_max_of_c_over_r_and_L(channels: int, r: int, L: int, d: int) -> None:
    unit = SKConv(channels, channels, 1, SKConfig(G=16, r=r, L=L, branches=[K3, K5]))
    conv, bn, relu = unit.fuse
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.bias) == (channels, d, (1, 1), None)
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    assert (unit.select.in_channels, unit.select.out_channels, unit.select.bias) == (d, 2 * channels, None)


def test_groups_per_path() -> None:
    unit = sk(G=8, branches=[K3, {"kernel": 5, "groups": 16}, {"kernel": 7, "groups": 32}, {"kernel": 3, "groups": "depthwise"}],
              cin=64, cout=64)
    assert [path[0].groups for path in unit.paths] == [8, 16, 32, 64]
    depthwise = sk(G="depthwise", branches=[K3, K5], cin=48, cout=48)
    assert [path[0].groups for path in depthwise.paths] == [48, 48]
    assert depthwise.paths[0][0].weight.shape == (48, 1, 3, 3)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
def test_padding_keeps_the_spatial_size(stride: int, size: int) -> None:
    branches = [{"kernel": 1}, K3, K5, K7, {"kernel": 5, "dilation": 1}, {"kernel": 5, "dilation": 2}, {"kernel": 7, "dilation": 1}]
    unit = sk(G=4, stride=stride, branches=branches).eval()
    x = torch.randn(1, 32, size, size)
    expected = (size - 1) // stride + 1
    for path in unit.paths:
        assert path(x).shape == (1, 64, expected, expected)
    assert unit(x).shape == (1, 64, expected, expected)


def test_stride_sits_on_every_path_conv() -> None:
    unit = sk(stride=2, branches=[K3, K5, {"kernel": 1}])
    assert [path[0].stride for path in unit.paths] == [(2, 2)] * 3
    assert unit.fuse[0].stride == (1, 1)
    assert unit(torch.randn(2, 32, 16, 16)).shape == (2, 64, 8, 8)


def test_paths_are_conv_bn_without_bias() -> None:
    unit = sk(branches=[K3, K7])
    for path, dilation in zip(unit.paths, (1, 3)):
        conv, bn = path[0], path[1]
        assert conv.bias is None and conv.dilation == (dilation, dilation) and conv.padding == (dilation, dilation)
        assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == 64
