"""Timing helpers shared by the benchmarks under bench/.

Benchmarks run on machines shared with other work, so absolute times drift. Every benchmark therefore
times its candidate and its baseline in the same run, interleaving their repetitions (A B A B ...) so
that a burst of outside load hits both alike, and reports medians and the ratio of medians.

Benchmarks run as scripts (`.venv/bin/python bench/<name>.py`), which puts bench/ on sys.path:
`from common import interleaved, ratio, markdown_table, machine_note`.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Sequence

import torch


def time_once(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(cases: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each case `repeats` times, in rounds that run every case once (order rotated each round,
    so that no case always runs first after a pause). Returns the seconds per call of each case."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_once(cases[name]))
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """median(candidate) / median(baseline): below 1 means the candidate takes less time."""
    return median(candidate) / median(baseline)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def machine_note() -> str:
    """One line describing where the figures were taken (load average included: figures under load drift)."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {sys.version.split()[0]}, load average {load}")


def copy_weights(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy every parameter and buffer from src to dst in registration order, checking shapes: our model
    and its timm twin register the same tensors in the same order under different names."""
    src_state, dst_state = src.state_dict(), dst.state_dict()
    assert len(src_state) == len(dst_state), (list(src_state), list(dst_state))
    for (ks, vs), (kd, vd) in zip(src_state.items(), dst_state.items()):
        assert vs.shape == vd.shape, f"{ks} {tuple(vs.shape)} vs {kd} {tuple(vd.shape)}"
        vd.copy_(vs)
