"""The console view of a running study: one line per searcher event, the budget line, the Pareto front and
the overhead line at the end."""
from __future__ import annotations

import sys
import time
from typing import Any, Sequence, TextIO

from optuna.trial import FrozenTrial, TrialState

from sksearch.search import protocol as p
from sksearch.storage import records
from sksearch.storage.ledger import counts_toward_budget
from sksearch.units import format_count


class ProgressPrinter:
    """Receives the searcher's events (protocol.Started, EpochDone, Ended, Repeated, Infeasible) and prints
    them as they happen."""

    def __init__(self, out: TextIO = sys.stdout, every_epoch: bool = True):
        self.out = out
        self.every_epoch = every_epoch
        self.t0 = time.perf_counter()

    def __call__(self, e: p.Event) -> None:
        head = f"[{time.perf_counter() - self.t0:6.1f}s] trial {e.number:>3}"
        if isinstance(e, p.Started):
            line = (f"{head} start     {e.label:<34} params {format_count(e.params):>7}  "
                    f"MACs {format_count(e.macs):>7}")
        elif isinstance(e, p.EpochDone):
            if not self.every_epoch:
                return
            line = f"{head} epoch {e.epoch:>2}/{e.max_epochs:<2} accuracy {e.accuracy:.3f}"
        elif isinstance(e, p.Ended):
            acc = "-" if e.accuracy is None else f"{e.accuracy:.3f}"
            why = f"  ({e.error})" if e.error else ""
            line = f"{head} {e.state:<9} after {e.epochs_done} epochs, accuracy {acc}{why}"
        elif isinstance(e, p.Repeated):
            line = f"{head} skipped   {e.label:<34} same spec as trial {e.of}: its result is copied"
        elif isinstance(e, p.Infeasible):
            line = f"{head} skipped   {e.label:<34} infeasible: {e.reason}"
        else:
            return
        print(line, file=self.out, flush=True)


def front_table(rows: Sequence[dict[str, Any]]) -> str:
    """rows: storage.records.front_row dicts, in the order to print."""
    if not rows:
        return "(no trial has finished at full fidelity yet)"
    header = f"{'trial':>5}  {'SK setting':<40} {'accuracy':>8} {'params':>8} {'MACs':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        lines.append(f"{r['trial']:>5}  {r['label']:<40} {acc:>8} {format_count(r['params']):>8} "
                     f"{format_count(r['macs']):>8}")
    return "\n".join(lines)


def budget_line(trials: Sequence[FrozenTrial], n_trials: int) -> str:
    used = sum(counts_toward_budget(t) and t.state != TrialState.RUNNING for t in trials)
    states = {s: sum(t.state == s and counts_toward_budget(t) for t in trials)
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    status = [records.status(t) for t in trials]
    return (f"{used}/{n_trials} trials done ({states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} "
            f"pruned, {states[TrialState.FAIL]} failed; {status.count('infeasible')} infeasible and "
            f"{status.count('duplicate')} repeated specs skipped)")


def overhead_line(trials: Sequence[FrozenTrial], run_id: str, wall: float, ray_start: float, slots: int) -> str | None:
    """Share of the trial slots' wall time spent outside training (Ray start, scheduling, storage)."""
    trained = sum(records.train_seconds(t) for t in trials if records.run_id(t) == run_id)
    if trained <= 0:
        return None
    share = max(0.0, 1 - trained / (wall * slots))
    return (f"time: wall {wall:.1f}s (Ray start {ray_start:.1f}s); trials trained {trained:.1f}s in {slots} "
            f"slot(s); outside training {share:.0%} of slot time")
