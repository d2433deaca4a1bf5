"""`sksearch run STUDY.yaml --dry-run N [--seed S]`: sample N specs and show what a study would try.

Samples with a seeded RandomSampler on an in-memory Optuna study (the study's storage is never opened),
measures each spec on the meta device and prints settings, params, MACs and feasibility. Trains nothing.
"""
from __future__ import annotations

import itertools
import sys
import time
from typing import Iterator, TextIO

import optuna

from sksearch.config import StudyConfig, display_path
from sksearch.search.feasibility import Feasibility, format_count, sample_feasibility
from sksearch.search.space import SearchSpace


def _settings(feas: Feasibility, params: dict) -> str:
    """The spec's label, or the sampled values when no spec could be made from them."""
    if feas.spec is not None:
        widths = "" if feas.spec.backbone == "shufflenet_v2" else f" w{feas.spec.widths}"
        return feas.spec.label() + widths
    return " ".join(f"{k}={v}" for k, v in params.items())


def iter_samples(study: StudyConfig, *, seed: int | None = None,
                 space: SearchSpace | None = None) -> Iterator[tuple[dict, Feasibility]]:
    """(sampled params, Feasibility) pairs from the study's space without end, seeded, storage untouched:
    what the dry run prints, what the benchmark tables are drawn from and the ehvi proposer's pool."""
    space = space or SearchSpace.load(study.space_path())
    study.geometry()  # a missing data folder fails here, before any sampling
    sampler = optuna.samplers.RandomSampler(seed=study.tune.sampler.seed if seed is None else seed)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" chatter in the table
    try:
        scratch = optuna.create_study(sampler=sampler)  # in memory
    finally:
        optuna.logging.set_verbosity(verbosity)
    while True:
        trial = scratch.ask()
        feas = sample_feasibility(space, trial, study)
        yield dict(trial.params), feas


def sample_specs(study: StudyConfig, n: int, *, seed: int | None = None) -> list[tuple[dict, Feasibility]]:
    """N (sampled params, Feasibility) pairs from the study's space, seeded, storage untouched."""
    return list(itertools.islice(iter_samples(study, seed=seed), n))


def iter_distinct(study: StudyConfig, *, seed: int | None = None, space: SearchSpace | None = None,
                  max_draws: int | None = None) -> Iterator[tuple[dict, Feasibility]]:
    """The feasible samples of iter_samples that build a network not drawn before (ArchSpec.identity), in
    draw order, from at most max_draws samples."""
    seen = set()
    for params, feas in itertools.islice(iter_samples(study, seed=seed, space=space), max_draws):
        if feas.feasible and (ident := feas.spec.identity()) not in seen:
            seen.add(ident)
            yield params, feas


def distinct_networks(study: StudyConfig, n: int, *, seed: int | None = None,
                      max_draws: int | None = None) -> list[Feasibility]:
    """The first n feasible samples that build n different networks (ArchSpec.identity), in draw order."""
    return [feas for _, feas in itertools.islice(iter_distinct(study, seed=seed, max_draws=max_draws), n)]


def dry_run(study: StudyConfig, n: int, *, seed: int | None = None, out: TextIO | None = None) -> int:
    """Print a table of N sampled specs and a summary line; returns 0 (the exit status)."""
    out = out or sys.stdout
    start = time.perf_counter()
    rows = sample_specs(study, n, seed=seed)
    elapsed = time.perf_counter() - start

    budgets = ", ".join(f"{k} {v:g}" if k == "max_latency_ms" else f"{k} {format_count(v)}"
                        for k, v in study.constraints.model_dump().items() if v) or "none"
    print(f"study {study.name}: {n} specs from {display_path(study.space_path())} (budgets: {budgets})", file=out)
    timed = study.latency_target() is not None
    if timed:
        from sksearch.latency import table_for

        print(f"latency: predicted on {table_for(study.latency_target()).target.describe()} (per-unit table)",
              file=out)
    print(f"{'#':>4}  {'params':>8}  {'MACs':>8}  " + (f"{'ms':>8}  " if timed else "") + f"{'feasible':<8}  settings",
          file=out)
    for i, (params, feas) in enumerate(rows):
        p = format_count(feas.params) if feas.params is not None else "-"
        m = format_count(feas.macs) if feas.macs is not None else "-"
        ms = f"{feas.latency:.3g}" if feas.latency is not None else "-"
        verdict = "yes" if feas.feasible else "no"
        line = f"{i:>4}  {p:>8}  {m:>8}  " + (f"{ms:>8}  " if timed else "") + f"{verdict:<8}  {_settings(feas, params)}"
        if not feas.feasible:
            line += f"  [{feas.reason}]"
        print(line, file=out)

    feasible = [f for _, f in rows if f.feasible]
    invalid = sum(1 for _, f in rows if f.spec is None)
    summary = f"{len(feasible)}/{n} feasible ({invalid} invalid, {n - len(feasible) - invalid} over budget)"
    if feasible:
        params = [f.params for f in feasible]
        macs = [f.macs for f in feasible]
        summary += (f"; feasible params {format_count(min(params))}-{format_count(max(params))}, "
                    f"MACs {format_count(min(macs))}-{format_count(max(macs))}")
        if timed:
            ms = [f.latency for f in feasible]
            summary += f", latency {min(ms):.3g}-{max(ms):.3g} ms"
    distinct = len({f.spec.identity() for _, f in rows if f.spec is not None})
    summary += f"; {distinct} distinct networks; {elapsed:.1f} s"
    print(summary, file=out)
    return 0
