"""complexity.count: the same params and MACs as the real model, measured without real weights."""
from __future__ import annotations

import math
import random
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from sksearch import complexity
from sksearch.complexity import count
from sksearch.models import build_model, list_presets
from sksearch.spec import ArchSpec, load_spec

from tests.fresh import peak_rss_growth_mib


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def measured(spec: ArchSpec) -> tuple[int, int]:
    """params and MACs of the real model on the CPU, the way a user would check them by hand."""
    model = build_model(spec, init=False).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, *spec.input_size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def small(spec: ArchSpec) -> ArchSpec:
    return spec if spec.input_size[1] <= 64 else spec.replace(input_size=[3, 64, 64])


@pytest.mark.parametrize("name", list_presets())
def test_presets_match_the_real_model(name: str) -> None:
    spec = load_spec(name)
    params, _ = measured(small(spec))
    assert count(spec).params == params  # params do not depend on the input size
    c = count(small(spec))
    assert (c.params, c.macs) == measured(small(spec))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def random_spec(rng: random.Random) -> ArchSpec:
    """A random valid spec from every corner of the space, small enough to build for real."""
    backbone = rng.choice(["resnext", "resnext_cifar", "shufflenet_v2"])
    stages = rng.randint(1, 4 if backbone == "resnext" else 3)
    m = rng.randint(1, 3)
    branches = [{"kernel": rng.choice([1, 3, 5]), "dilation": rng.randint(1, 3), "relu": rng.random() < 0.5}
                for _ in range(m)]
    data: dict[str, Any] = {
        "backbone": backbone,
        "depths": [rng.randint(1, 2) for _ in range(stages)],
        "num_classes": rng.randint(1, 50),
        "sk": {"G": 1, "r": rng.choice([1, 2, 4, 8, 16]), "L": rng.choice([1, 4, 8, 32]),
               "attention": "sum" if m == 1 else rng.choice(["softmax", "sum"]), "branches": branches},
    }
    if backbone == "shufflenet_v2":
        data["widths"] = [2 * rng.randint(4, 24) for _ in range(stages)]
        data["stem_channels"] = rng.choice([8, 16, 24])
        data["final_channels"] = rng.choice([32, 64])
        data["input_size"] = [3, rng.randint(16, 48), rng.randint(16, 48)]
    else:
        data["widths"] = [rng.choice([16, 24, 32, 48, 64]) for _ in range(stages)]
        data["out_channels"] = [rng.choice([32, 64, 96]) for _ in range(stages)]
        data["stem_channels"] = rng.choice([16, 32])
        side = rng.randint(8, 40) if backbone == "resnext_cifar" else rng.randint(32, 72)
        data["input_size"] = [rng.choice([1, 3]), side, side]
    spec = ArchSpec.from_dict(data)
    # Groups that divide every SK width of this spec (per path too, sometimes depthwise).
    divisors = _divisors(math.gcd(*spec.sk_channels()))
    updates: dict[str, Any] = {"sk.G": rng.choice(divisors + ["depthwise"])}
    for i in range(m):
        if rng.random() < 0.3:
            updates[f"sk.branches.{i}.groups"] = rng.choice(divisors + ["depthwise"])
    return spec.replace(**updates)


RANDOM_SPECS = [random_spec(random.Random(seed)) for seed in range(36)]


def test_random_specs_cover_the_space() -> None:
    assert {s.backbone for s in RANDOM_SPECS} == {"resnext", "resnext_cifar", "shufflenet_v2"}
    assert {s.M for s in RANDOM_SPECS} == {1, 2, 3}
    assert {s.sk.attention for s in RANDOM_SPECS} == {"softmax", "sum"}
    assert len({s.key() for s in RANDOM_SPECS}) == len(RANDOM_SPECS)


@pytest.mark.parametrize("spec", RANDOM_SPECS, ids=[f"seed{i}" for i in range(len(RANDOM_SPECS))])
def test_random_specs_match_the_real_model(spec: ArchSpec) -> None:
    c = count(spec)
    assert (c.params, c.macs) == measured(spec), spec.label()
    assert c.params == sum(p.params for p in c.parts) and c.macs == sum(p.macs for p in c.parts)


class _TensorDevices(TorchDispatchMode):
    """Records the device of every tensor any op produces (factories included)."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.devices |= {t.device.type for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}
        return out


def test_counting_creates_no_real_tensor() -> None:
    spec = load_spec("sknet50").replace(**{"sk.r": 7, "num_classes": 17})
    complexity._BLOCK_CACHE.clear()
    with _TensorDevices() as seen:
        c = count(spec)
    assert c.params > 0
    assert seen.devices == {"meta"}


def test_a_huge_spec_is_counted_in_little_memory() -> None:
    # ~18G parameters: 70 GB as real float32 weights. Counted in a fresh process, whose peak memory before the
    # count is its own (this one's peak was raised by earlier tests, which would hide any growth).
    growth = peak_rss_growth_mib(
        "from sksearch.complexity import count\n"
        "from sksearch.spec import load_spec\n"
        "count(load_spec('sknet26'))  # warm the counter's code paths\n"
        "spec = load_spec('sknet101').replace(widths=[2048, 4096, 8192, 16384],\n"
        "                                     out_channels=[4096, 8192, 16384, 32768], num_classes=50000)\n"
        "MEASURE\n"
        "assert count(spec).params > 10**10\n")
    assert growth < 200, f"{growth:.0f} MiB"  # the weights alone would be ~70000 MiB


def test_per_part_shapes_and_totals() -> None:
    c = count(load_spec("sknet50"))
    assert [p.name for p in c.parts] == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert [p.output_shape for p in c.parts] == [(64, 56, 56), (256, 56, 56), (512, 28, 28), (1024, 14, 14),
                                                 (2048, 7, 7), (1000,)]
    assert c.parts[-1].params == 2048 * 1000 + 1000 and c.parts[-1].macs == 2048 * 1000
    assert c.to_dict()["params"] == c.params


def test_select_macs_are_m_c_h_w_per_unit() -> None:
    c = count(load_spec("sknet50"))
    units = [(3, 128, 56), (4, 256, 28), (6, 512, 14), (3, 1024, 7)]
    assert c.select_macs == sum(2 * n * ch * side * side for n, ch, side in units)
    assert count(load_spec("resnext50_32x4d")).select_macs == 0
    assert count(load_spec("sknet50").replace(**{"sk.attention": "sum"})).select_macs == 0


def test_equal_specs_share_a_count_and_input_size_matters() -> None:
    spec = load_spec("sknet26")
    assert count(spec) is count(ArchSpec.from_dict(spec.to_dict()))
    big, low = count(spec), count(spec.replace(input_size=[3, 112, 112]))
    assert big.params == low.params
    # stage1 runs at 56x56 against 28x28: its convs scale with the pixels, the SK fuse/select (on pooled maps) do not.
    assert big.parts[1].macs / low.parts[1].macs == pytest.approx(4, rel=1e-3)
    assert big.parts[-1].macs == low.parts[-1].macs  # the classifier does not


def test_unit_memo_is_bounded_and_a_full_memo_counts_the_same(monkeypatch) -> None:
    specs = [load_spec("sknet26").replace(**{"sk.r": r}) for r in (3, 5, 6, 7, 9, 10)]
    complexity._BLOCK_CACHE.clear()
    complexity._count_cached.cache_clear()
    roomy = [count(s).to_dict() for s in specs]
    assert len(complexity._BLOCK_CACHE) > 8  # the six specs hold more distinct units than the bound below
    monkeypatch.setattr(complexity, "_BLOCK_CACHE_MAX", 8)
    complexity._BLOCK_CACHE.clear()
    complexity._count_cached.cache_clear()
    sizes = []
    for s in specs:
        count(s)
        sizes.append(len(complexity._BLOCK_CACHE))
    assert max(sizes) <= 8
    assert any(b < a for a, b in zip(sizes, sizes[1:]))  # the memo was cleared at its bound, and refilled
    complexity._count_cached.cache_clear()
    assert [count(s).to_dict() for s in specs] == roomy  # counted again through a memo that keeps clearing
    complexity._count_cached.cache_clear()
