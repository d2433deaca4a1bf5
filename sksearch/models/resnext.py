"""ResNeXt with SK units: the ImageNet layout (SKNet-26/50/101) and the CIFAR layout (SKNet-29)."""
from __future__ import annotations

import torch
from torch import nn

from sksearch.models.layers import Block, Blueprint, ClassifierHead, ConvBN, SKConv
from sksearch.spec import ArchSpec, SKConfig


class SKBottleneck(nn.Module):
    """1x1 (C) -> SK conv (C -> C, carries the stride) -> 1x1 (out, BN, no ReLU); + shortcut; ReLU."""

    def __init__(self, cin: int, width: int, cout: int, stride: int, cfg: SKConfig):
        super().__init__()
        self.conv1 = ConvBN(cin, width, 1)
        self.conv2 = SKConv(width, width, stride, cfg)
        self.conv3 = ConvBN(width, cout, 1, relu=False)
        self.shortcut = ConvBN(cin, cout, 1, stride, relu=False) if (stride != 1 or cin != cout) else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


def imagenet_stem(cin: int, c: int) -> nn.Module:
    """7x7 conv stride 2 -> BN -> ReLU -> 3x3 max-pool stride 2."""
    return nn.Sequential(ConvBN(cin, c, 7, stride=2), nn.MaxPool2d(3, stride=2, padding=1))


def resnext_blueprint(spec: ArchSpec) -> Blueprint:
    cin, c = spec.input_size[0], spec.stem_width()
    # CIFAR: one 3x3 conv and no downsampling for 32x32 inputs.
    stem = Block(ConvBN, (cin, c, 3)) if spec.backbone == "resnext_cifar" else Block(imagenet_stem, (cin, c))
    blueprint: Blueprint = {"stem": [stem]}
    cin = c
    assert spec.out_channels is not None
    for i, (depth, width, cout) in enumerate(zip(spec.depths, spec.widths, spec.out_channels)):
        units = []
        for j in range(depth):
            stride = 2 if (i > 0 and j == 0) else 1
            units.append(Block(SKBottleneck, (cin, width, cout, stride, spec.sk)))
            cin = cout
        blueprint[f"stage{i + 1}"] = units
    blueprint["head"] = [Block(ClassifierHead, (cin, spec.num_classes))]
    return blueprint
