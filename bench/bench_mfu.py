"""Model FLOP utilisation of a training step: achieved GFLOP/s as a fraction of dense fp32 matmul GFLOP/s.

Network: the CIFAR SK network of bench_train_throughput.py (built by sksearch), batch 64, channels_last,
train mode, one SGD step = forward + backward + update. FLOPs of forward + backward come from
torch.utils.flop_counter.FlopCounterMode (convs, matmuls; BN and elementwise ops count zero, as is usual
for MFU), with its convolution-backward formula replaced (see conv_backward_flops: torch's ignores groups
for grad_weight). Peak = torch.mm of two --mm x --mm fp32 matrices on the same device, timed interleaved with the
training step, at the precision the step's convolutions run in (TF32 on CUDA, where cuDNN allows it by
default: peak_matmul_precision), so that the MFU cannot exceed 100%. Where the time goes: torch.profiler self time per op family over a few steps.

    .venv/bin/python bench/bench_mfu.py [--batch 64] [--mm 2048] [--repeats 7] [--device cpu]
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from bench_train_throughput import bench_spec
from common import interleaved, machine_note, markdown_table, median
from sksearch.models import build_model

FAMILIES = [  # substring of the aten op name -> family
    ("convolution_backward", "conv backward"), ("conv", "conv forward"), ("batch_norm", "batch norm"),
    ("threshold_backward", "relu"), ("relu", "relu"), ("clamp_min", "relu"), ("sigmoid", "SK select (elementwise)"),
    ("addcmul", "SK select (elementwise)"), ("mean", "pooling"), ("sum", "pooling"), ("add", "adds, SGD update"),
    ("mul", "adds, SGD update"), ("sub", "adds, SGD update"), ("copy", "layout copies"), ("mm", "matmul"),
]


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **_) -> int:
    """grad_input and grad_weight each cost one forward convolution.

    torch's own formula (2.14) counts grad_weight as if the conv had one group, which inflates the backward
    of a G-group conv about G/2-fold (a 16-group 3x3 conv: backward 17x its forward instead of 2x)."""
    fwd = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def peak_matmul_precision(device_type: str, conv_tf32: bool) -> str:
    """The torch.set_float32_matmul_precision to time the peak matmul with: the precision the step's
    convolutions run in. On CUDA cuDNN runs fp32 convolutions in TF32 by default (allow_tf32), about 7x the
    fp32 rate on an H100; against a full-fp32 matmul peak the MFU would read ~7x too high (over 100%)."""
    return "high" if device_type == "cuda" and conv_tf32 else "highest"


def mfu(achieved: float, peak: float) -> float:
    """achieved / peak, which cannot exceed 1: a higher ratio means the peak was timed at a lower precision
    than the step ran in."""
    ratio = achieved / peak
    if ratio > 1:
        raise ValueError(f"MFU {ratio:.0%} > 100%: the peak matmul ran at a lower precision than the step")
    return ratio


def family(name: str) -> str:
    for key, fam in FAMILIES:
        if key in name:
            return fam
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--mm", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    fmt = torch.channels_last
    model = build_model(bench_spec()).to(device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    with FlopCounterMode(display=False) as raw:
        loss_fn(model(x), y).backward()
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}) as counter:
        loss_fn(model(x), y).backward()
    step_flops = counter.get_total_flops()

    precision = peak_matmul_precision(device.type, torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision(precision)  # the step's Linear and the peak matmul alike
    a = torch.randn(args.mm, args.mm, device=device)
    b = torch.randn(args.mm, args.mm, device=device)

    def matmul() -> None:
        torch.mm(a, b)
        sync()

    times = interleaved({"step": step, "mm": matmul}, repeats=args.repeats)
    achieved = step_flops / median(times["step"]) / 1e9
    peak = 2 * args.mm**3 / median(times["mm"]) / 1e9

    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])) as prof:
        for _ in range(3):
            step()
    self_time: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        if ev.key.startswith("aten::"):
            t = ev.self_device_time_total if device.type == "cuda" else ev.self_cpu_time_total
            self_time[family(ev.key)] += t
    total = sum(self_time.values()) or 1.0

    print(markdown_table(["quantity", "value"], [
        ["training-step FLOPs (fwd+bwd, FlopCounterMode, grouped-conv backward fixed)", f"{step_flops / 1e9:.2f} GFLOP"],
        ["(FlopCounterMode as shipped: overcounts grouped-conv backward)", f"{raw.get_total_flops() / 1e9:.2f} GFLOP"],
        ["training step (median)", f"{median(times['step']) * 1e3:.0f} ms"],
        ["achieved", f"{achieved:.1f} GFLOP/s"],
        [f"dense fp32 torch.mm {args.mm}x{args.mm}, matmul precision {precision!r}", f"{peak:.1f} GFLOP/s"],
        ["MFU (achieved / matmul)", f"{mfu(achieved, peak):.1%}"],
    ]))
    print()
    print(markdown_table(["op family", "share of op self time"],
                         [[k, f"{v / total:.0%}"] for k, v in sorted(self_time.items(), key=lambda kv: -kv[1])]))
    print(f"\nbatch {args.batch}, {args.repeats} repetitions, device {device}; {machine_note()}")


if __name__ == "__main__":
    main()
