"""The live view of a running study: one line per event, and the Pareto front at the end."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO
from sksearch.units import format_count


class ProgressPrinter:
    """Receives the searcher's events (start, epoch, end, infeasible) and prints them as they happen."""

    def __init__(self, out: TextIO = sys.stdout, every_epoch: bool = True):
        self.out = out
        self.every_epoch = every_epoch
        self.t0 = time.perf_counter()

    def __call__(self, kind: str, e: dict[str, Any]) -> None:
        t = f"[{time.perf_counter() - self.t0:6.1f}s]"
        head = f"{t} trial {e['number']:>3}"
        if kind == "start":
            line = f"{head} start     {e['label']:<34} params {format_count(e['params']):>7}  MACs {format_count(e['macs']):>7}"
        elif kind == "epoch":
            if not self.every_epoch:
                return
            line = f"{head} epoch {e['epoch']:>2}/{e['max_epochs']:<2} accuracy {e['accuracy']:.3f}"
        elif kind == "end":
            acc = "-" if e["accuracy"] is None else f"{e['accuracy']:.3f}"
            why = f"  ({e['error']})" if e.get("error") else ""
            line = f"{head} {e['state']:<9} after {e['epochs_done']} epochs, accuracy {acc}{why}"
        elif kind == "duplicate":
            line = f"{head} skipped   {e['label']:<34} same spec as trial {e['of']}: its result is copied"
        elif kind == "infeasible":
            line = f"{head} skipped   {e['label']:<34} infeasible: {e['reason']}"
        else:
            return
        print(line, file=self.out, flush=True)


def front_table(rows: list[dict[str, Any]]) -> str:
    """rows: dicts with number, label, accuracy, params, macs (sorted by the caller)."""
    if not rows:
        return "(no trial has finished at full fidelity yet)"
    header = f"{'trial':>5}  {'SK setting':<40} {'accuracy':>8} {'params':>8} {'MACs':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['number']:>5}  {r['label']:<40} {r['accuracy']:>8.4f} {format_count(r['params']):>8} {format_count(r['macs']):>8}")
    return "\n".join(lines)
