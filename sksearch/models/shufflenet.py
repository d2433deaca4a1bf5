"""ShuffleNetV2 (Ma et al. 2018) whose 3x3 depthwise convs are SK units.

With sk = one K3 path, G = depthwise, no ReLU, attention sum, it is exactly the plain ShuffleNetV2
(torchvision's layout); '+SK' in the paper: M = 2 (K3, K5), r = 4, depthwise, no ReLU in either path.
"""
from __future__ import annotations

import torch
from torch import nn

from sksearch.models.layers import Block, Blueprint, ClassifierHead, ConvBN, SKConv
from sksearch.spec import ArchSpec, SKConfig


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` groups, keeping x's memory format (a reshape after the
    transpose would return NCHW and every later layer would run on a converted copy)."""
    b, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        nhwc = x.permute(0, 2, 3, 1)  # contiguous: shuffle the last dimension, then view back as NCHW
        return nhwc.reshape(b, h, w, groups, c // groups).transpose(3, 4).reshape(b, h, w, c).permute(0, 3, 1, 2)
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, cfg: SKConfig):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(SKConv(cin, cin, stride, cfg), ConvBN(cin, half, 1))
        else:
            self.branch1 = None
        right_in = cin if stride > 1 else half
        self.branch2 = nn.Sequential(ConvBN(right_in, half, 1), SKConv(half, half, stride, cfg), ConvBN(half, half, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            left, right = x.chunk(2, dim=1)
            out = torch.cat((left, self.branch2(right)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


def shufflenet_stem(cin: int, c: int) -> nn.Module:
    """3x3 conv stride 2 -> BN -> ReLU -> 3x3 max-pool stride 2."""
    return nn.Sequential(ConvBN(cin, c, 3, stride=2), nn.MaxPool2d(3, stride=2, padding=1))


def shufflenet_head(cin: int, final: int, num_classes: int) -> nn.Module:
    """1x1 conv to `final` channels -> pool -> classifier."""
    return nn.Sequential(ConvBN(cin, final, 1), ClassifierHead(final, num_classes))


def shufflenet_v2_blueprint(spec: ArchSpec) -> Blueprint:
    stem = spec.stem_width()
    blueprint: Blueprint = {"stem": [Block(shufflenet_stem, (spec.input_size[0], stem))]}
    cin = stem
    for i, (depth, cout) in enumerate(zip(spec.depths, spec.widths)):
        blueprint[f"stage{i + 1}"] = [
            Block(ShuffleUnit, (cin if j == 0 else cout, cout, 2 if j == 0 else 1, spec.sk)) for j in range(depth)
        ]
        cin = cout
    blueprint["head"] = [Block(shufflenet_head, (cin, spec.final_channels or 1024, spec.num_classes))]
    return blueprint
