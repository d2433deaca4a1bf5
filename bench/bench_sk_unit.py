"""Forward + backward time of sksearch's SKConv against timm's SelectiveKernel, identical settings.

Settings (CIFAR-sized maps): C = 256 in and out, M = 2 paths K3 (3x3 d1) and K5 (3x3 d2), 32 groups per
path, d = max(256 // 16, 32) = 32, BN + ReLU in each path, train mode, batch 64, 32x32, CPU.
timm: kernel_size=[3, 5] with keep_3x3=True turns the 5 into a 3x3 with dilation 2; split_input=False
feeds every path the whole input (as the paper does); rd_channels=32 (timm would otherwise round
256/16 to 16: it has no L). Both modules get the same weights and must give the same output first.

    .venv/bin/python bench/bench_sk_unit.py [--repeats 15] [--batch 64] [--size 32] [--threads N]
"""
from __future__ import annotations

import argparse

import torch
from timm.layers import SelectiveKernel
from torch import nn

from common import copy_weights, interleaved, machine_note, markdown_table, median, ratio
from sksearch.models import SKConv
from sksearch.spec import SKConfig

CHANNELS, GROUPS, REDUCTION, MIN_WIDTH = 256, 32, 16, 32


def cfg_width() -> int:
    return max(CHANNELS // REDUCTION, MIN_WIDTH)


def make_ours() -> SKConv:
    cfg = SKConfig(G=GROUPS, r=REDUCTION, L=MIN_WIDTH, attention="softmax",
                   branches=[{"kernel": 3, "dilation": 1, "relu": True}, {"kernel": 3, "dilation": 2, "relu": True}])
    return SKConv(CHANNELS, CHANNELS, 1, cfg)


def make_timm() -> SelectiveKernel:
    return SelectiveKernel(CHANNELS, CHANNELS, kernel_size=[3, 5], keep_3x3=True, split_input=False,
                           groups=GROUPS, rd_channels=cfg_width())


def check_identical(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> None:
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    assert n_ours == n_theirs, f"parameter counts differ: ours {n_ours}, timm {n_theirs}"
    copy_weights(ours, theirs)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x[:4]), theirs(x[:4]), rtol=1e-4, atol=1e-4)
    ours.train(), theirs.train()


def step(module: nn.Module, x: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    module(x).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    ours, theirs = make_ours(), make_timm()
    x = torch.randn(args.batch, CHANNELS, args.size, args.size)
    check_identical(ours, theirs, x)
    params = sum(p.numel() for p in ours.parameters())

    times = interleaved({"ours": lambda: step(ours, x), "timm": lambda: step(theirs, x)}, repeats=args.repeats)
    rows = [
        ["sksearch SKConv", f"{median(times['ours']) * 1e3:.1f}", f"{ratio(times['ours'], times['timm']):.3f}"],
        ["timm SelectiveKernel", f"{median(times['timm']) * 1e3:.1f}", "1.000"],
    ]
    print(f"SK unit fwd+bwd, train mode, C={CHANNELS}, M=2 (K3+K5), G={GROUPS}, d={cfg_width()}, "
          f"batch {args.batch}, {args.size}x{args.size}, {params:,} params each, {args.repeats} interleaved repeats")
    print(markdown_table(["module", "median ms", "ratio vs timm"], rows))
    print(machine_note())


if __name__ == "__main__":
    main()
