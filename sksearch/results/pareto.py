"""The Pareto front of a study and its hypervolume, over trials trained for the full budget only.

Front: COMPLETE trials with `full_fidelity` true, not infeasible, all Optuna constraints <= 0; the non-dominated
sort is Optuna's own (`_is_pareto_front`, the function behind `study.best_trials`). With every record written
by storage.records, study.best_trials holds the same trials (repeated specs violate a constraint there).

The array math (non-dominated sorting, hypervolume, EHVI) is sksearch.front's; this module makes it study-aware.

Hypervolume (Optuna's `compute_hypervolume`, which minimises): every objective is mapped to [0, ~1] so that
the reference point means the same in every study:
- accuracy (maximised): loss = 1 - accuracy, reference 1 (an untrained model);
- a cost (macs, params, latency; minimised): cost / scale, reference 1.05, where scale is the study's budget
  for it (constraints.max_macs / max_params / max_latency_ms) when set, else the largest cost of any trial that reports it.
With [accuracy, macs] the largest possible value is 1 x 1.05 = 1.05.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from sksearch.config import StudyConfig
from sksearch.storage import records
from sksearch.units import format_count


# The array-level front math lives in sksearch.front (below search/ and results/); re-exported for old callers.
from sksearch.front import COST_REFERENCE, cost_scale  # noqa: E402
from sksearch.front import (_hypervolume_fallback, _is_pareto_front, _is_pareto_front_fallback,  # noqa: F401
                            _peel_fronts, compute_hypervolume, nondomination_ranks)


def _losses(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> np.ndarray:
    sign = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    return np.array([t.values for t in trials], dtype=float).reshape(len(trials), len(directions)) * sign


def pareto_front(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    """The non-dominated trials among `trials` (all with values), as study.best_trials computes it."""
    if not trials:
        return []
    on = _is_pareto_front(_losses(trials, directions), assume_unique_lexsorted=False)
    return [t for t, keep in zip(trials, on) if keep]


def full_fidelity_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if records.status(t) == "full" and t.values is not None]


def front_trials(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """Non-dominated full-fidelity feasible trials, cheapest first (by the first cost objective), each network
    once: of two trials that trained the same network (ArchSpec.identity; two drivers racing, or a study
    from before the identity check) only the first is a front member."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    front = pareto_front(one_per_network(full_fidelity_trials(trials)), study.directions)
    return sorted(front, key=lambda t: tuple(_sort_key(t, study.directions)))


def one_per_network(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The first trial (by number) of each network; trials without a valid spec are kept as they are."""
    seen: set[str] = set()
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        ident = records.identity(t)
        if ident is not None and ident in seen:
            continue
        if ident is not None:
            seen.add(ident)
        out.append(t)
    return out


def front_2d(accuracy: Sequence[float], cost: Sequence[float]) -> list[int]:
    """Indices of the (max accuracy, min cost) front of a 2-D projection, cheapest first (a plot's staircase)."""
    if len(accuracy) == 0:
        return []
    losses = np.column_stack([-np.asarray(accuracy, float), np.asarray(cost, float)])
    on_front = _is_pareto_front(losses, assume_unique_lexsorted=False)
    return sorted(np.flatnonzero(on_front).tolist(), key=lambda i: (cost[i], -accuracy[i]))


def _sort_key(t: FrozenTrial, directions: Sequence[StudyDirection]) -> list[float]:
    # Costs (minimised) first, then accuracy descending: the front reads cheapest to most expensive.
    costs = [v for v, d in zip(t.values, directions) if d == StudyDirection.MINIMIZE]
    gains = [-v for v, d in zip(t.values, directions) if d == StudyDirection.MAXIMIZE]
    return costs + gains


@dataclass(frozen=True)
class Normaliser:
    """Maps objective values to losses in [0, ~1] (see the module docstring) and holds the reference point."""

    names: tuple[str, ...]
    directions: tuple[StudyDirection, ...]
    scales: tuple[float, ...]

    @classmethod
    def for_study(cls, study: optuna.Study, names: Sequence[str], cfg: StudyConfig | None = None) -> "Normaliser":
        trials = study.get_trials(deepcopy=False)
        budgets = {}
        if cfg is not None:
            budgets = {records.Key.MACS: cfg.constraints.max_macs, records.Key.PARAMS: cfg.constraints.max_params,
                       "latency": cfg.constraints.max_latency_ms}
        scales = []
        for i, (name, d) in enumerate(zip(names, study.directions)):
            if name == records.Key.ACCURACY:
                scales.append(1.0)
                continue
            seen = [float(c) for t in trials if (c := records.cost(t, name)) is not None]
            seen += [t.values[i] for t in trials if t.values is not None and records.status(t) == "full"]
            scales.append(cost_scale(budgets.get(name), seen))
        return cls(tuple(names), tuple(study.directions), tuple(scales))

    @property
    def reference_point(self) -> np.ndarray:
        return np.array([1.0 if d == StudyDirection.MAXIMIZE else COST_REFERENCE for d in self.directions])

    def losses(self, values: Sequence[float]) -> np.ndarray:
        out = []
        for v, d, s in zip(values, self.directions, self.scales):
            out.append(1.0 - v / s if d == StudyDirection.MAXIMIZE else v / s)
        # Anything worse than the reference (a cost above 1.05 x the budget) adds no volume: clip it there.
        return np.minimum(np.array(out, dtype=float), self.reference_point)

    def describe(self) -> str:
        """The reference point in words, for a figure or a summary."""
        parts = []
        for name, d, s in zip(self.names, self.directions, self.scales):
            if d == StudyDirection.MAXIMIZE:
                parts.append(f"{name} 0" if name == records.Key.ACCURACY else f"{name} 0 (scale {s:g})")
            else:
                parts.append(f"{name} {COST_REFERENCE:g} x {format_count(s)}")
        return "reference point: " + ", ".join(parts) + " (objectives normalised: 1 - accuracy, cost / scale)"


def hypervolume(trials: Sequence[FrozenTrial], norm: Normaliser) -> float:
    points = [norm.losses(t.values) for t in full_fidelity_trials(trials)]
    if not points:
        return 0.0
    return float(compute_hypervolume(np.stack(points), norm.reference_point))


@dataclass(frozen=True)
class HypervolumePoint:
    trial: int              # trial number after which this value holds
    trials_finished: int    # finished trials so far (any state)
    compute_seconds: float  # training seconds spent so far, over every trial (pruned and failed too)
    epochs: int             # epochs trained so far, over every trial
    hypervolume: float


def hypervolume_history(study: optuna.Study, norm: Normaliser) -> list[HypervolumePoint]:
    """The front's hypervolume after each finished trial, in trial-number order, with the compute spent."""
    finished = sorted((t for t in study.get_trials(deepcopy=False) if t.state.is_finished()), key=lambda t: t.number)
    out: list[HypervolumePoint] = []
    front: list[np.ndarray] = []
    seconds, epochs, hv = 0.0, 0, 0.0
    for n, t in enumerate(finished, 1):
        seconds += records.train_seconds(t)
        epochs += records.epochs_done(t)
        if records.status(t) == "full" and t.values is not None:
            p = norm.losses(t.values)
            if not any(np.all(q <= p) for q in front):  # dominated points add nothing
                front = [q for q in front if not np.all(p <= q)] + [p]
                hv = float(compute_hypervolume(np.stack(front), norm.reference_point, assume_pareto=True))
        out.append(HypervolumePoint(t.number, n, round(seconds, 3), epochs, hv))
    return out


# -- seed noise of the front (`sksearch run --confirm K`) -----------------------------------------------------------

NOISE_FACTOR = 2.0  # adjacent front members closer than this many seed SDs in accuracy: their order is noise


@dataclass(frozen=True)
class FrontNoise:
    """What the seed confirmations say about the front's accuracies."""

    runs: dict[int, list[float]]   # front trial -> accuracies: the original's first, then its confirmations'
    pooled_sd: float | None        # seed-to-seed SD of accuracy, pooled over the members retrained (None: none)
    members: int                   # front members with at least one confirmation
    close: dict[int, list[int]]    # front trial -> its neighbours by mean accuracy within NOISE_FACTOR * pooled_sd

    def spread(self, number: int) -> tuple[float, float | None, int]:
        """(mean, SD or None for a single run, runs) of a front trial's accuracy."""
        acc = self.runs.get(number, [])
        if not acc:
            return float("nan"), None, 0
        return float(np.mean(acc)), (float(np.std(acc, ddof=1)) if len(acc) > 1 else None), len(acc)

    @property
    def threshold(self) -> float | None:
        return None if self.pooled_sd is None else NOISE_FACTOR * self.pooled_sd


def front_noise(front: Sequence[FrozenTrial], trials: Sequence[FrozenTrial],
                names: Sequence[str] | None = None) -> FrontNoise:
    """Per front member the accuracy of the original and of its seed confirmations; the SD pooled over the
    members (sum of squared deviations from each member's mean over their degrees of freedom); and the
    adjacent members (sorted by mean accuracy) whose difference is below NOISE_FACTOR x that SD."""
    confirmed = records.confirmations(trials)
    runs: dict[int, list[float]] = {}
    for t in front:
        acc = [records.accuracy(x, names) for x in (t, *confirmed.get(t.number, []))]
        runs[t.number] = [float(a) for a in acc if a is not None]
    retrained = [a for a in runs.values() if len(a) > 1]
    dof = sum(len(a) - 1 for a in retrained)
    pooled = float(np.sqrt(sum(float(np.sum((np.array(a) - np.mean(a)) ** 2)) for a in retrained) / dof)) \
        if dof else None
    close: dict[int, list[int]] = {n: [] for n in runs}
    if pooled is not None:
        order = sorted((n for n in runs if runs[n]), key=lambda n: float(np.mean(runs[n])))
        for a, b in zip(order, order[1:]):
            if abs(float(np.mean(runs[a])) - float(np.mean(runs[b]))) < NOISE_FACTOR * pooled:
                close[a].append(b)
                close[b].append(a)
    return FrontNoise(runs, pooled, len(retrained), close)


def noisy_front_row(t: FrozenTrial, noise: FrontNoise, names: Sequence[str] | None = None) -> dict:
    """records.front_row plus the spread over seeds: runs, accuracy_mean, accuracy_sd (None for one run) and
    within_noise_of (neighbouring front trials whose accuracy order is within noise)."""
    mean, sd, n = noise.spread(t.number)
    return {**records.front_row(t, names), "runs": n, "accuracy_mean": mean if n else None, "accuracy_sd": sd,
            "within_noise_of": sorted(noise.close.get(t.number, []))}
