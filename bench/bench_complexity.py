"""Specs counted per second by sksearch.complexity.count, against the naive way, on distinct specs.

For each base preset (sknet50, sknet29) a seeded list of DISTINCT specs is drawn (G, r, L and
num_classes vary), so the spec-level cache never hits. Every spec is then counted three ways, interleaved
spec by spec so that outside load hits all three alike:
- naive: build the whole model on the meta device, run FlopCounterMode over its forward (BN included);
- cold:  count() with the unit memo (complexity._BLOCK_CACHE) cleared first: every unit is measured;
- warm:  count() again right after, spec cache cleared but unit memo kept (what a search revisiting
         settings costs).
The three must agree on params and MACs.

    .venv/bin/python bench/bench_complexity.py [--specs 30] [--seed 0]
"""
from __future__ import annotations

import argparse
import random

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import machine_note, markdown_table, median, time_once
from sksearch import complexity
from sksearch.models import build_model, preset_dict
from sksearch.spec import ArchSpec


def distinct_specs(preset: str, n: int, seed: int) -> list[ArchSpec]:
    base = ArchSpec.from_dict(preset_dict(preset))
    rng = random.Random(seed)
    groups = [g for g in (1, 2, 4, 8, 16, 32, 64) if all(w % g == 0 for w in base.widths)]
    seen: set[str] = set()
    specs: list[ArchSpec] = []
    while len(specs) < n:
        spec = base.replace(**{"sk.G": rng.choice(groups), "sk.r": rng.choice([2, 4, 8, 16, 32, 64]),
                               "sk.L": rng.choice([8, 16, 32, 64]), "num_classes": rng.randint(2, 1000)})
        if spec.key() not in seen:
            seen.add(spec.key())
            specs.append(spec)
    return specs


def naive_count(spec: ArchSpec) -> tuple[int, int]:
    with torch.device("meta"):
        model = build_model(spec, init=False).eval()
        x = torch.empty(1, *spec.input_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def cold_count(spec: ArchSpec) -> tuple[int, int]:
    complexity._BLOCK_CACHE.clear()
    complexity._count_cached.cache_clear()
    c = complexity.count(spec)
    return c.params, c.macs


def warm_count(spec: ArchSpec) -> tuple[int, int]:
    complexity._count_cached.cache_clear()
    c = complexity.count(spec)
    return c.params, c.macs


def bench(preset: str, n: int, seed: int) -> list[list[str]]:
    specs = distinct_specs(preset, n, seed)
    ways = {"naive": naive_count, "cold": cold_count, "warm": warm_count}
    naive_count(specs[0]), cold_count(specs[0])  # warm-up: imports, dispatcher caches
    times: dict[str, list[float]] = {name: [] for name in ways}
    for spec in specs:
        results = {}
        for name, fn in ways.items():  # warm must follow cold: it reuses the units cold just measured
            times[name].append(time_once(lambda: results.__setitem__(name, fn(spec))))
        assert results["naive"] == results["cold"] == results["warm"], (spec.label(), results)
    base = median(times["naive"])
    return [[preset, name, f"{1 / median(t):.1f}", f"{base / median(t):.1f}x"] for name, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", type=int, default=30, help="distinct specs per preset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = bench("sknet50", args.specs, args.seed) + bench("sknet29", args.specs, args.seed)
    print(f"complexity counting, {args.specs} distinct specs per preset (median per spec)")
    print(markdown_table(["preset", "method", "specs/s", "speed-up vs naive"], rows))
    print(machine_note())


if __name__ == "__main__":
    main()
