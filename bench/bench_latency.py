"""Latency as a measured cost (issue 20): how good the per-unit table is, whether training next to it
disturbs it, and what it changes about the front.

    .venv/bin/python bench/bench_latency.py                       # all three parts, CPU, ~10 minutes
    .venv/bin/python bench/bench_latency.py --part error --specs 12
    .venv/bin/python bench/bench_latency.py --device cuda         # on a GPU machine

1. error: for distinct networks drawn from a study's space (the quick start's and sk_bench's), the table's
   prediction (sum of the units, each timed alone, times the scale fitted on 6 other networks as a study
   fits it) against the whole network timed as one module; beside it the unscaled sum's error and the
   noise floor: the same whole network timed a second time, a minute later. Batch 1 and 32.
2. concurrent: the units of the quick start's space timed alone, then again (a fresh table) while a training
   process runs on the other core, then alone again: ratios of medians, against the units' own spread.
3. finding: on bench/tables/sk_bench.json (96 real specs of the quick start's network, 9 epochs, mean final
   accuracy), the accuracy-vs-latency front against the accuracy-vs-MACs front at batch 1 and 32; and the
   latency of one SK unit with attention against the same paths summed (no attention) and against one plain
   grouped conv of the same MACs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine_note, markdown_table  # noqa: E402

from sksearch import latency  # noqa: E402
from sksearch.complexity import count  # noqa: E402
from sksearch.config import LatencyConfig, load_study  # noqa: E402
from sksearch.front import nondomination_ranks  # noqa: E402
from sksearch.search.dryrun import distinct_networks  # noqa: E402
from sksearch.spec import ArchSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CAL = LatencyConfig().check  # networks the scale is fitted on, as in a study
STUDIES = {"quickstart": REPO / "studies/quickstart.yaml", "sk_bench": REPO / "studies/sk_bench.yaml"}


def fresh_table(config: LatencyConfig, folder: Path, name: str) -> latency.LatencyTable:
    return latency.LatencyTable(config, path=folder / f"{name}.json")


def part_error(args: argparse.Namespace, folder: Path) -> None:
    print("\n## 1. Per-unit sum vs whole network\n")
    rows = []
    for space, path in STUDIES.items():
        drawn = [f.spec for f in distinct_networks(load_study(path), args.specs, seed=args.seed)]
        for batch in (1, 32):
            specs = drawn
            config = LatencyConfig(device=args.device, batch=batch)
            table = fresh_table(config, folder, f"err-{space}-{batch}")
            start = time.perf_counter()
            raw = [table.unit_sum(s).ms for s in specs]
            built = time.perf_counter() - start
            fit = latency.calibrate(table, specs[:CAL])  # as a study does (latency.check), then held out:
            specs, raw = specs[CAL:], raw[CAL:]
            predicted = [table.predict(s).ms for s in specs]
            first = [table.measure_network(s).ms for s in specs]
            second = [table.measure_network(s).ms for s in specs]  # the noise floor: the same thing again
            err = [abs(p / w - 1) for p, w in zip(predicted, first)]
            err2 = [abs(p / w - 1) for p, w in zip(predicted, second)]
            noise = [abs(b / a - 1) for a, b in zip(first, second)]
            signed = statistics.median([p / w - 1 for p, w in zip(predicted, first)])
            unscaled = [abs(r / w - 1) for r, w in zip(raw, first)]
            rows.append([space, batch, len(specs), table.measured, f"{built:.0f} s",
                         f"{min(first):.3g}-{max(first):.3g}",
                         f"{fit.errors.median:.1%}, noise {fit.noise:.1%} -> "
                         + (f"x{fit.scale:.3f}" if fit.scale else "no scale"),
                         f"{statistics.median(unscaled):.1%} / {max(unscaled):.1%}",
                         f"{statistics.median(err):.1%} / {max(err):.1%}", f"{signed:+.1%}",
                         f"{statistics.median(err2):.1%} / {max(err2):.1%}",
                         f"{statistics.median(noise):.1%} / {max(noise):.1%}"])
            print(f"  {space} batch {batch}: " + ", ".join(f"{p:.3g}/{w:.3g}" for p, w in zip(predicted, first)),
                  flush=True)
    print(markdown_table(["space", "batch", "held-out specs", "units timed", "table built in", "whole network ms",
                          f"{CAL} calibration specs: sum's error -> scale", "unscaled sum's error (median / worst)",
                          "error vs 1st timing (median / worst)", "median signed", "error vs 2nd timing",
                          "noise: 2nd vs 1st timing"], rows))


TRAINER = """
import torch, time
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3, padding=1),
                          torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.01)
x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
print("training", flush=True)
while True:
    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
"""


def _unit_times(config: LatencyConfig, specs: list[ArchSpec], folder: Path, name: str) -> dict[str, latency.Timing]:
    table = fresh_table(config, folder, name)
    for s in specs:
        table.predict(s)
    return dict(table.units)


def part_concurrent(args: argparse.Namespace, folder: Path) -> None:
    print("\n## 2. Timing next to a training process\n")
    specs = [f.spec for f in distinct_networks(load_study(STUDIES["quickstart"]), args.specs, seed=args.seed)]
    rows = []
    for batch in (1, 32):
        config = LatencyConfig(device=args.device, batch=batch)
        alone = _unit_times(config, specs, folder, f"alone-{batch}")
        trainer = subprocess.Popen([sys.executable, "-c", TRAINER], stdout=subprocess.PIPE, text=True)
        try:
            assert trainer.stdout is not None and trainer.stdout.readline().strip() == "training"
            busy = _unit_times(config, specs, folder, f"busy-{batch}")
        finally:
            trainer.kill()
            trainer.wait()
        again = _unit_times(config, specs, folder, f"again-{batch}")
        keys = sorted(alone)
        busy_ratio = [busy[k].ms / alone[k].ms for k in keys]
        again_ratio = [again[k].ms / alone[k].ms for k in keys]
        spread = [alone[k].spread / alone[k].ms for k in keys]
        rows.append([batch, len(keys), f"{statistics.median(busy_ratio):.3f} [{min(busy_ratio):.2f}, {max(busy_ratio):.2f}]",
                     f"{statistics.median(again_ratio):.3f} [{min(again_ratio):.2f}, {max(again_ratio):.2f}]",
                     f"{statistics.median(spread):.1%}"])
    print(markdown_table(["batch", "units", "next to training / alone (median [min, max])",
                          "alone again / alone", "units' own spread (IQR / median)"], rows))


def _fronts(acc: np.ndarray, cost: np.ndarray) -> set[int]:
    return set(np.flatnonzero(nondomination_ranks(np.column_stack([-acc, cost])) == 0).tolist())


def part_finding(args: argparse.Namespace, folder: Path) -> None:
    print("\n## 3. The accuracy-vs-latency front against the accuracy-vs-MACs front (sk_bench table)\n")
    data = json.loads((REPO / "bench/tables/sk_bench.json").read_text())
    by_spec: dict[str, list[dict]] = {}
    for r in data["rows"]:
        by_spec.setdefault(json.dumps(r["spec"], sort_keys=True), []).append(r)
    specs = [ArchSpec.model_validate(rs[0]["spec"]) for rs in by_spec.values()]
    acc = np.array([np.mean([r["accuracy"][-1] for r in rs]) for rs in by_spec.values()])
    macs = np.array([float(rs[0]["macs"]) for rs in by_spec.values()])
    mac_front = _fronts(acc, macs)
    for batch in (1, 32):
        table = fresh_table(LatencyConfig(device=args.device, batch=batch), folder, f"finding-{batch}")
        ms = np.array([table.predict(s).ms for s in specs])
        lat_front = _fronts(acc, ms)
        rho = float(np.corrcoef(np.argsort(np.argsort(macs)), np.argsort(np.argsort(ms)))[0, 1])
        print(f"batch {batch}: {len(specs)} specs, latency {ms.min():.3g}-{ms.max():.3g} ms; Spearman(MACs, latency) "
              f"= {rho:.2f}; MAC front {len(mac_front)}, latency front {len(lat_front)}, both {len(mac_front & lat_front)}")
        rows = []
        for i in sorted(mac_front | lat_front, key=lambda i: macs[i]):
            rows.append([specs[i].label().split("] ", 1)[-1] + f" w{specs[i].widths[0]}", f"{acc[i]:.3f}",
                         f"{macs[i] / 1e6:.1f}M", f"{ms[i]:.3g}", "yes" if i in mac_front else "no",
                         "yes" if i in lat_front else "no"])
        print(markdown_table(["spec", "accuracy (mean)", "MACs", "ms", "on MAC front", "on latency front"], rows))

    print("\n### One SK unit against the same paths summed and a plain grouped conv of the same MACs\n")
    base = load_study(STUDIES["quickstart"])
    num_classes, input_size = base.geometry()
    rows = []
    for batch in (1, 32):
        table = fresh_table(LatencyConfig(device=args.device, batch=batch), folder, f"unit-{batch}")
        for G in (8,):
            variants = {
                "SK M=2 softmax": {"G": G, "attention": "softmax"},
                "M=2 summed (no attention)": {"G": G, "attention": "sum"},
                f"plain M=1, G={G // 2} (same conv MACs)": {"G": G // 2, "attention": "sum", "M1": True},
            }
            stage_ms: dict[str, list[float]] = {}
            stage_macs: dict[str, list[int]] = {}
            for name, v in variants.items():
                branches = [{"kernel": 3, "dilation": 1}] + ([] if v.get("M1") else [{"kernel": 3, "dilation": 2}])
                spec = ArchSpec.from_dict({
                    "backbone": "resnext_cifar", "depths": [1, 1, 1], "widths": [16, 32, 64],
                    "out_channels": [32, 64, 128], "stem_channels": 16, "num_classes": num_classes,
                    "input_size": list(input_size),
                    "sk": {"G": v["G"], "r": 8, "L": 16, "attention": v["attention"], "branches": branches}})
                pred = table.predict(spec)
                parts = count(spec).parts
                stage_ms[name] = [p.ms for p in pred.parts if p.name.startswith("stage")]
                stage_macs[name] = [p.macs for p in parts if p.name.startswith("stage")]
            ref = stage_ms[f"plain M=1, G={G // 2} (same conv MACs)"]
            for name in variants:
                rows.append([batch, name] + [f"{m:.3g} ms, {c / 1e6:.2f}M ({m / r:.2f}x)"
                                             for m, c, r in zip(stage_ms[name], stage_macs[name], ref)])
    print(markdown_table(["batch", "unit", "stage 1 (16 wide, 32 px)", "stage 2 (32 wide, 16 px)",
                          "stage 3 (64 wide, 8 px)"], rows))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["error", "concurrent", "finding", "all"], default="all")
    p.add_argument("--specs", type=int, default=12 + CAL, help="distinct networks per space (parts 1 and 2; "
                                                                "part 1 calibrates on the first latency.check)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = p.parse_args()
    print(machine_note())
    print(f"torch threads while timing: 1; device {args.device}")
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        folder = Path(tmp)
        if args.part in ("error", "all"):
            part_error(args, folder)
        if args.part in ("concurrent", "all"):
            part_concurrent(args, folder)
        if args.part in ("finding", "all"):
            part_finding(args, folder)
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
