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
            line = f"{head} skipped   {e.label:<34} same network as trial {e.of}: its result is copied"
        elif isinstance(e, p.Infeasible):
            line = f"{head} skipped   {e.label:<34} infeasible: {e.reason}"
        else:
            return
        print(line, file=self.out, flush=True)


def front_table(rows: Sequence[dict[str, Any]], seed_sd: float | None = None, threshold: float | None = None) -> str:
    """rows: storage.records.front_row dicts (results.pareto.noisy_front_row when the front was retrained with
    other seeds), in the order to print. With seed confirmations: a `mean +- SD (runs)` column, and `~N` on
    members whose accuracy is within noise (threshold) of front trial N's."""
    if not rows:
        return "(no trial has finished at full fidelity yet)"
    spread = any((r.get("runs") or 0) > 1 for r in rows)
    timed = any(r.get("latency_ms") is not None for r in rows)
    header = f"{'trial':>5}  {'SK setting':<40} {'accuracy':>8} {'params':>8} {'MACs':>8}"
    if timed:
        header += f" {'ms':>8}"
    if spread:
        header += f"  {'over seeds: mean +- SD (runs)':<30} noise"
    lines = [header, "-" * len(header)]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        line = (f"{r['trial']:>5}  {r['label']:<40} {acc:>8} {format_count(r['params']):>8} "
                f"{format_count(r['macs']):>8}")
        if timed:
            ms = r.get("latency_ms")
            line += f" {'-' if ms is None else f'{ms:.3g}':>8}"
        if spread:
            sd = r.get("accuracy_sd")
            cell = f"{r['accuracy_mean']:.4f} +- {sd:.4f} ({r['runs']})" if sd is not None else "(1 run)"
            mark = " ".join(f"~{n}" for n in r.get("within_noise_of") or [])
            line += f"  {cell:<30} {mark}".rstrip()
        lines.append(line)
    if seed_sd is not None:
        runs = sum(r.get("runs") or 0 for r in rows)
        lines.append(f"seed-to-seed SD of accuracy: {seed_sd:.4f} (pooled over the front's {runs} runs); "
                     f"~N: accuracy within {threshold:.4f} (2 SD) of front trial N's, so their order is noise")
    else:
        lines.append("(one training run per point: `sksearch run STUDY.yaml --confirm K` retrains the front "
                     "with K other seeds to show its noise)")
    return "\n".join(lines)


def budget_line(trials: Sequence[FrozenTrial], n_trials: int) -> str:
    used = sum(counts_toward_budget(t) and t.state != TrialState.RUNNING for t in trials)
    states = {s: sum(t.state == s and counts_toward_budget(t) for t in trials)
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    status = [records.status(t) for t in trials]
    return (f"{used}/{n_trials} trials done ({states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} "
            f"pruned, {states[TrialState.FAIL]} failed; {status.count('infeasible')} infeasible and "
            f"{status.count('duplicate')} repeated networks skipped"
            + (f"; {status.count('confirmation')} seed confirmations, off the budget)" if 'confirmation' in status
               else ")"))


def overhead_line(trials: Sequence[FrozenTrial], run_id: str, wall: float, ray_start: float, slots: int) -> str | None:
    """Share of the trial slots' wall time spent outside training (Ray start, scheduling, storage)."""
    trained = sum(records.train_seconds(t) for t in trials if records.run_id(t) == run_id)
    if trained <= 0:
        return None
    share = max(0.0, 1 - trained / (wall * slots))
    return (f"time: wall {wall:.1f}s (Ray start {ray_start:.1f}s); trials trained {trained:.1f}s in {slots} "
            f"slot(s); outside training {share:.0%} of slot time")
