"""Training images/s of a CIFAR SK network built by sksearch vs the same network built from timm's SK layers.

Network (CIFAR layout, a shrunk SKNet-29): 3x3 stem (32), three stages of 2 bottleneck units, inner widths
64/128/256, outputs 128/256/512, stride 2 on the SK conv of the first unit of stages 2 and 3; every SK conv is
SK[2, 16, 32] with L = 32 (K3 + K5, ReLU in each path). timm's twin: the same bottleneck written with
timm.layers.SelectiveKernel(kernel_size=[3, 5], keep_3x3=True, split_input=False, groups=16,
rd_channels=max(C // 32, 32)) and timm.layers.ConvNormAct. Both get the same weights and must give the same
output (checked) and the same parameter count (checked) before timing.
One repetition = --steps SGD steps (forward, backward, update) on a fixed batch; channels_last, train mode,
mixed precision as a trial runs it (training.common.amp_dtype: bf16 on Ampere or newer, none on CPU);
repetitions interleaved, figure = ratio of median images/s.

    .venv/bin/python bench/bench_train_throughput.py [--batch 64] [--steps 3] [--repeats 7] [--device cpu]
"""
from __future__ import annotations

import argparse

import torch
from timm.layers import ConvNormAct, SelectiveKernel
from torch import nn

from common import copy_weights, interleaved, machine_note, markdown_table, median
from sksearch.models import build_model
from sksearch.spec import ArchSpec
from sksearch.training.common import amp_dtype, autocast

DEPTHS, WIDTHS, OUTS, STEM, G, R, L = [2, 2, 2], [64, 128, 256], [128, 256, 512], 32, 16, 32, 32


def bench_spec() -> ArchSpec:
    return ArchSpec.from_dict({
        "backbone": "resnext_cifar", "depths": DEPTHS, "widths": WIDTHS, "out_channels": OUTS,
        "stem_channels": STEM, "num_classes": 10, "input_size": [3, 32, 32],
        "sk": {"G": G, "r": R, "L": L, "attention": "softmax",
               "branches": [{"kernel": 3, "dilation": 1}, {"kernel": 3, "dilation": 2}]},
    })


class TimmBottleneck(nn.Module):
    def __init__(self, cin: int, width: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = ConvNormAct(cin, width, 1)
        self.conv2 = SelectiveKernel(width, width, kernel_size=[3, 5], stride=stride, groups=G, keep_3x3=True,
                                     split_input=False, rd_channels=max(width // R, L))
        self.conv3 = ConvNormAct(width, cout, 1, apply_act=False)
        self.shortcut = ConvNormAct(cin, cout, 1, stride=stride, apply_act=False) if (stride != 1 or cin != cout) else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


def timm_net() -> nn.Sequential:
    layers: list[nn.Module] = [ConvNormAct(3, STEM, 3)]
    cin = STEM
    for i, (depth, width, cout) in enumerate(zip(DEPTHS, WIDTHS, OUTS)):
        for j in range(depth):
            layers.append(TimmBottleneck(cin, width, cout, 2 if (i > 0 and j == 0) else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def trainer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, device: torch.device):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    dtype = amp_dtype(device, True)  # what a trial uses: bf16 on Ampere+, fp16 before, fp32 on CPU

    def run() -> None:
        for _ in range(steps):
            with autocast(device, dtype):
                loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    ours = build_model(bench_spec())
    theirs = timm_net()
    n_ours, n_theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
    assert n_ours == n_theirs, (n_ours, n_theirs)
    copy_weights(ours, theirs)
    x = torch.randn(args.batch, 3, 32, 32)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), rtol=1e-4, atol=1e-4), "the two networks differ"
    ours.train(), theirs.train()
    fmt = torch.channels_last
    ours, theirs = ours.to(device, memory_format=fmt), theirs.to(device, memory_format=fmt)
    x = x.to(device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch,), device=device)
    times = interleaved({"ours": trainer(ours, x, y, args.steps, device),
                         "timm": trainer(theirs, x, y, args.steps, device)}, repeats=args.repeats)
    ips = {k: args.batch * args.steps / median(v) for k, v in times.items()}
    print(markdown_table(["network", "params", "train images/s (median)", "ratio vs timm"],
                         [["sksearch build_model", f"{n_ours:,}", f"{ips['ours']:,.0f}", f"{ips['ours'] / ips['timm']:.2f}x"],
                          ["timm SelectiveKernel twin", f"{n_theirs:,}", f"{ips['timm']:,.0f}", "1.00x"]]))
    print(f"\nbatch {args.batch}, {args.steps} steps a repetition, {args.repeats} repetitions, device {device}; {machine_note()}")


if __name__ == "__main__":
    main()
