"""Named presets: the paper's figures, a forward and backward pass each, the built layout."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sksearch.complexity import count
from sksearch.models import PRESETS, SKConv, build_model, list_presets
from sksearch.models.resnext import SKBottleneck
from sksearch.spec import ArchSpec, load_spec

# Paper figures (Li et al. 2019, Tables 2, 7): params in millions, MACs in billions (None: not stated).
# ImageNet at 224x224 and 1000 classes; CIFAR at 32x32.
PAPER = {
    "resnext50_32x4d": (25.0, 4.24),
    "sknet26": (16.8, None),
    "sknet50": (27.5, 4.47),
    "sknet101": (48.9, 8.46),
    "resnext29_16x32d": (25.2, None),
    "sknet29": (27.7, None),
}


def test_every_documented_preset_exists() -> None:
    documented = {"resnext50_32x4d", "sknet26", "sknet50", "sknet101", "resnext29_16x32d", "sknet29",
                  "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x0_5_sk", "shufflenet_v2_x1_0_sk"}
    assert documented <= set(list_presets())


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_figures_within_one_percent(name: str) -> None:
    params_m, gmacs = PAPER[name]
    spec = load_spec(name)
    c = count(spec)
    assert c.params / 1e6 == pytest.approx(params_m, rel=0.01)
    if gmacs is not None:
        assert spec.input_size == [3, 224, 224] and spec.num_classes == 1000
        # The paper's SK figures may or may not include the select products; within 1% either way.
        assert c.macs / 1e9 == pytest.approx(gmacs, rel=0.01)
        assert (c.macs + c.select_macs) / 1e9 == pytest.approx(gmacs, rel=0.01)


def test_sk_costs_little_over_resnext() -> None:
    # The paper's headline: SKNet-50 adds ~10% params and ~5% MACs over ResNeXt-50.
    plain, sk = count(load_spec("resnext50_32x4d")), count(load_spec("sknet50"))
    assert 1.05 < sk.params / plain.params < 1.15
    assert 1.0 < sk.macs / plain.macs < 1.1


def small_input(spec: ArchSpec) -> tuple[int, ...]:
    return (2, 3, 32, 32) if spec.backbone == "resnext_cifar" else (2, 3, 64, 64)


@pytest.mark.parametrize("name", list_presets())
def test_forward_and_backward(name: str) -> None:
    spec = load_spec(name)
    torch.manual_seed(0)
    model = build_model(spec)
    x = torch.randn(small_input(spec))
    y = model(x)
    assert y.shape == (2, spec.num_classes)
    y.logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["sknet26", "sknet29", "shufflenet_v2_x0_5_sk"])
def test_yaml_round_trip_builds_the_same_model(name: str, tmp_path: Path) -> None:
    spec = load_spec(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(spec.to_yaml())
    again = load_spec(str(path))
    torch.manual_seed(1)
    a = build_model(spec).eval()
    torch.manual_seed(1)
    b = build_model(again).eval()
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    assert all(state_a[k].shape == state_b[k].shape for k in state_a)
    x = torch.randn(small_input(spec))
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_parts_are_named() -> None:
    model = build_model(load_spec("sknet26"), init=False)
    assert list(model.parts) == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert [len(model.parts[f"stage{i}"]) for i in range(1, 5)] == [2, 2, 2, 2]


def test_resnext_layout_puts_the_stride_on_the_sk_conv() -> None:
    with torch.device("meta"):
        model = build_model(load_spec("sknet50"), init=False)
    for stage, stride in (("stage1", 1), ("stage2", 2), ("stage3", 2), ("stage4", 2)):
        first: SKBottleneck = model.parts[stage][0]
        assert first.conv1[0].stride == (1, 1)
        assert all(path[0].stride == (stride, stride) for path in first.conv2.paths)
        assert first.shortcut[0].stride == (stride, stride)  # projection shortcut where the shape changes
        assert all(isinstance(u.shortcut, nn.Identity) for u in model.parts[stage][1:])
    widths = [model.parts[f"stage{i}"][0].conv2.channels for i in range(1, 5)]
    assert widths == [128, 256, 512, 1024]
    assert all(isinstance(m.conv2, SKConv) and m.conv2.M == 2 for m in model.modules() if isinstance(m, SKBottleneck))


def test_sknet29_second_path_is_1x1() -> None:
    spec = load_spec("sknet29")
    assert [(b.kernel, b.dilation) for b in spec.sk.branches] == [(3, 1), (1, 1)]
    assert (spec.sk.G, spec.sk.r, spec.sk.L) == (16, 32, 32)
    assert spec.widths == [512, 1024, 2048] and spec.out_channels == [256, 512, 1024]


def test_presets_are_fresh_dicts() -> None:
    # A caller editing a preset's dict must not change the registry.
    data = PRESETS["sknet50"]()
    data["sk"]["r"] = 2
    assert load_spec("sknet50").sk.r == 16
