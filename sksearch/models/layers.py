"""Layers shared by every backbone: conv-BN(-ReLU) and the Selective Kernel unit."""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from pydantic import BaseModel
from torch import nn

from sksearch.spec import SKConfig


class ConvBN(nn.Sequential):
    """conv (no bias) -> BN -> optional ReLU. A Sequential so that its state dict is conv/bn/relu by index."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, dilation: int = 1,
                 groups: int = 1, relu: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding=dilation * (kernel - 1) // 2,
                      dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SKConv(nn.Module):
    """Selective Kernel convolution (Li et al. 2019): split into M paths, fuse, select.

    split:  U_m = [ReLU](BN(conv_m(X)))            one path per entry of cfg.branches
    fuse:   z = ReLU(BN(W . avgpool(sum_m U_m)))   W: d x C, d = max(C // r, L)
    select: a = softmax_m(A_m z) per channel;  V = sum_m a_m * U_m
    With cfg.attention == 'sum' the unit returns sum_m U_m (the paper's naive aggregation).
    """

    def __init__(self, cin: int, cout: int, stride: int, cfg: SKConfig):
        super().__init__()
        self.M = cfg.M
        self.channels = cout
        self.use_attention = cfg.attention == "softmax"
        self.paths = nn.ModuleList(
            ConvBN(cin, cout, b.kernel, stride, b.dilation, cfg.groups_for(b, cout), relu=b.relu)
            for b in cfg.branches
        )
        if self.use_attention:
            d = cfg.attention_width(cout)
            self.fuse = ConvBN(cout, d, 1)                       # W with BN and ReLU, no bias
            self.select = nn.Conv2d(d, self.M * cout, 1, bias=False)  # the M matrices A_m as one 1x1 conv

    def attention(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Attention weights a, shape (B, M, C, 1, 1); they sum to 1 over the M paths."""
        u = feats[0]
        for f in feats[1:]:
            u = u + f
        logits = self.select(self.fuse(u.mean((2, 3), keepdim=True)))
        return logits.view(u.shape[0], self.M, self.channels, 1, 1).softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [path(x) for path in self.paths]
        if not self.use_attention:
            out = feats[0]
            for f in feats[1:]:
                out = out + f
            return out
        if self.M == 2:
            # Two-way softmax is a sigmoid of the logit difference and a_2 = 1 - a_1, so
            # V = U_2 + a_1 (U_1 - U_2): no (B, M, C, H, W) stack, one product instead of two.
            f0, f1 = feats
            s = (f0 + f1).mean((2, 3), keepdim=True)
            logits = self.select(self.fuse(s)).view(x.shape[0], 2, self.channels, 1, 1)
            a0 = torch.sigmoid(logits[:, 0] - logits[:, 1])
            return torch.addcmul(f1, f0 - f1, a0)
        # Under autocast the softmax comes out fp32: select in the features' dtype (bf16 stays bf16), and
        # accumulate path by path rather than stack, so the output keeps the features' channels_last layout.
        a = self.attention(feats).to(feats[0].dtype)
        out = feats[0] * a[:, 0]
        for m in range(1, self.M):
            out = torch.addcmul(out, feats[m], a[:, m])
        return out


def init_weights(model: nn.Module) -> None:
    """He initialisation (fan_out, ReLU) for convs, unit BN, small normal classifier."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class Block(NamedTuple):
    """A recipe for one module: factory(*args). Hashable through key(), so that the complexity counter
    can count each distinct unit once (the units of a stage after its first are all alike)."""

    factory: Callable[..., nn.Module]
    args: tuple

    def build(self) -> nn.Module:
        return self.factory(*self.args)

    def key(self) -> tuple:
        return (self.factory.__module__, self.factory.__qualname__,
                tuple(a.model_dump_json() if isinstance(a, BaseModel) else a for a in self.args))


# A network's blueprint: named parts (stem, stage1..N, head), each a list of blocks run in order.
Blueprint = dict[str, list[Block]]


class Sequence(nn.Module):
    """A network as named parts run in order (stem, stage1..N, head), so that complexity and
    timing can be reported per part without hooks."""

    def __init__(self, parts: dict[str, nn.Module]):
        super().__init__()
        self.parts = nn.ModuleDict(parts)

    @classmethod
    def from_blueprint(cls, blueprint: Blueprint) -> "Sequence":
        return cls({name: nn.Sequential(*(b.build() for b in blocks)) for name, blocks in blueprint.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for part in self.parts.values():
            x = part(x)
        return x


class ClassifierHead(nn.Sequential):
    """global average pool -> flatten -> fully connected (with bias), the last layer in fp32.

    Under bf16 autocast the logits would be bf16, whose 8-bit mantissa ties the top classes of 0.2-0.7% of
    predictions (argmax then picks by index: noise in the accuracy that ranks trials). The classifier is
    one small matmul, so it runs in fp32 and the logits are fp32."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool, flatten, fc = self
        x = flatten(pool(x))
        if x.device.type not in ("cuda", "cpu"):
            return fc(x)  # a meta tensor (the complexity counter): no autocast there
        with torch.autocast(x.device.type, enabled=False):
            return fc(x.float())  # .float(): a no-op outside autocast
