"""Parameters and multiply-adds of a spec, measured on the meta device (no weights are allocated).

Counting rules (see ../shared/design/sk-design-space.md section 3):
- params: learnable parameters (conv and BN weights, classifier weight and bias); BN running stats excluded.
- macs: multiply-adds of conv and fully connected layers, including the SK fuse and select 1x1 convs, as
  torch's FlopCounterMode counts them (2 FLOPs per MAC). BN, ReLU, pooling and the attention's elementwise
  products are excluded; the latter (M x C x H x W per SK unit) are reported separately as
  `select_macs`, so that a user comparing with the paper's SKNet GFLOPs can add them.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sksearch.models import Block, SKConv, blueprint
from sksearch.spec import ArchSpec


@dataclass(frozen=True)
class PartComplexity:
    name: str
    params: int
    macs: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    select_macs: int
    parts: list[PartComplexity] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class UnitCount:
    """One unit at one input shape, from one build on the meta device."""

    params: int
    macs: int
    select_macs: int
    output_shape: tuple[int, ...]
    # A stable name for the module it builds (types, channels, kernels, strides, groups) at that shape: units that
    # build the same module share it whatever the recipe that names them (the latency table's key).
    structure: str


def _strip_batchnorm(module: nn.Module) -> None:
    # BN has no MACs under our rules, and FlopCounterMode decomposes it slowly: drop it for the pass.
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _strip_batchnorm(child)


_BLOCK_CACHE: dict[tuple, UnitCount] = {}
_BLOCK_CACHE_MAX = 20000


def count_unit(block: Block, input_shape: tuple[int, ...]) -> UnitCount:
    """One unit, memoised by (recipe, input shape): equal units, in one spec or across a search (and for the
    latency table's names), are built and counted once."""
    key = (block.key(), input_shape)
    hit = _BLOCK_CACHE.get(key)
    if hit is None:
        if len(_BLOCK_CACHE) >= _BLOCK_CACHE_MAX:
            _BLOCK_CACHE.clear()
        hit = _BLOCK_CACHE[key] = _measure_block(block, input_shape)
    return hit


def _measure_block(block: Block, input_shape: tuple[int, ...]) -> UnitCount:
    """Build one unit on the meta device and count it."""
    with torch.device("meta"):
        module = block.build().eval()
        x = torch.empty(1, *input_shape)
    structure = hashlib.sha1(f"{module!r}|{tuple(input_shape)}".encode()).hexdigest()[:16]
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    select_macs = 0

    def _select_products(m: SKConv, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal select_macs
        if m.use_attention:
            select_macs += m.M * out[0].numel()

    for m in module.modules():
        if isinstance(m, SKConv):
            m.register_forward_hook(_select_products)
    _strip_batchnorm(module)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        y = module(x)
    return UnitCount(params, counter.get_total_flops() // 2, select_macs, tuple(y.shape[1:]), structure)


def _count(spec: ArchSpec) -> Complexity:
    shape = tuple(spec.input_size)
    parts = []
    select_macs = 0
    for name, blocks in blueprint(spec).items():
        params = macs = 0
        for block in blocks:
            c = count_unit(block, shape)
            params, macs, shape = params + c.params, macs + c.macs, c.output_shape
            select_macs += c.select_macs
        parts.append(PartComplexity(name, params, macs, shape))
    return Complexity(
        params=sum(p.params for p in parts),
        macs=sum(p.macs for p in parts),
        select_macs=select_macs,
        parts=parts,
    )


@functools.lru_cache(maxsize=4096)
def _count_cached(key: str) -> Complexity:
    return _count(ArchSpec.model_validate_json(key))


def count(spec: ArchSpec) -> Complexity:
    """Params and MACs of `spec` (cached by the spec's canonical form)."""
    return _count_cached(spec.key())
