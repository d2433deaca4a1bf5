"""The Pareto front of a study and its hypervolume, over trials trained for the full budget only.

Front: COMPLETE trials with `full_fidelity` true, not infeasible, all Optuna constraints <= 0; the non-dominated
sort is Optuna's own (`_is_pareto_front`, the function behind `study.best_trials`). With every record written
by storage.records, study.best_trials holds the same trials (repeated specs violate a constraint there).

This is the only module that imports Optuna's private multi-objective helpers (non-dominated sorting and
hypervolume); each has a plain numpy fallback used when a new Optuna release moves them.

Hypervolume (Optuna's `compute_hypervolume`, which minimises): every objective is mapped to [0, ~1] so that
the reference point means the same in every study:
- accuracy (maximised): loss = 1 - accuracy, reference 1 (an untrained model);
- a cost (macs, params, latency; minimised): cost / scale, reference 1.05, where scale is the study's budget
  for it (constraints.max_macs / max_params) when set, else the largest cost of any trial that reports it.
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

COST_REFERENCE = 1.05

def _is_pareto_front_fallback(losses: np.ndarray, assume_unique_lexsorted: bool = False) -> np.ndarray:
    """Minimisation on every column: True where no other row is <= everywhere and < somewhere."""
    n = len(losses)
    on = np.ones(n, dtype=bool)
    for i in range(n):
        dominated = np.all(losses <= losses[i], axis=1) & np.any(losses < losses[i], axis=1)
        on[i] = not dominated.any()
    return on


def _hypervolume_fallback(points: np.ndarray, reference: np.ndarray, assume_pareto: bool = False) -> float:
    """Exact hypervolume (minimisation) by slicing on the first objective; fine for the few points of a front."""
    pts = points[np.all(points < reference, axis=1)]
    if len(pts) == 0:
        return 0.0
    if pts.shape[1] == 1:
        return float(reference[0] - pts[:, 0].min())
    pts = pts[np.argsort(pts[:, 0])]
    total = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, 0] if i + 1 < len(pts) else reference[0]
        if upper > pts[i, 0]:
            total += (upper - pts[i, 0]) * _hypervolume_fallback(pts[: i + 1, 1:], reference[1:])
    return float(total)


def _peel_fronts(losses: np.ndarray) -> np.ndarray:
    """Non-domination rank by repeatedly peeling the front (O(n^2) per front; rungs are small)."""
    ranks = np.full(len(losses), -1)
    remaining = np.arange(len(losses))
    rank = 0
    while remaining.size:
        sub = losses[remaining]
        # j dominates i: no worse everywhere, better somewhere
        dominated = ((sub[None, :, :] <= sub[:, None, :]).all(-1) & (sub[None, :, :] < sub[:, None, :]).any(-1))
        on_front = ~dominated.any(axis=1)
        ranks[remaining[on_front]] = rank
        remaining = remaining[~on_front]
        rank += 1
    return ranks


try:  # Optuna's own, fast and maintained; private, so guarded
    from optuna._hypervolume import compute_hypervolume
    from optuna.study._multi_objective import _calculate_nondomination_rank as _optuna_ranks
    from optuna.study._multi_objective import _is_pareto_front
except ImportError:  # pragma: no cover - depends on the installed Optuna
    compute_hypervolume = _hypervolume_fallback  # type: ignore[assignment]
    _is_pareto_front = _is_pareto_front_fallback  # type: ignore[assignment]
    _optuna_ranks = None


def nondomination_ranks(losses: np.ndarray) -> np.ndarray:
    """Front index of each row of losses (all minimised): 0 = the Pareto front of the set."""
    if len(losses) == 0:
        return np.zeros(0, dtype=int)
    if _optuna_ranks is not None:
        try:
            return np.asarray(_optuna_ranks(losses), dtype=int)
        except Exception:  # a changed private signature must not break scheduling
            pass
    return _peel_fronts(losses)


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
    """Non-dominated full-fidelity feasible trials, cheapest first (by the first cost objective)."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    front = pareto_front(full_fidelity_trials(trials), study.directions)
    return sorted(front, key=lambda t: tuple(_sort_key(t, study.directions)))


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
            budgets = {records.Key.MACS: cfg.constraints.max_macs, records.Key.PARAMS: cfg.constraints.max_params}
        scales = []
        for i, (name, d) in enumerate(zip(names, study.directions)):
            if name == records.Key.ACCURACY:
                scales.append(1.0)
                continue
            seen = [float(c) for t in trials if (c := records.cost(t, name)) is not None]
            seen += [t.values[i] for t in trials if t.values is not None and records.status(t) == "full"]
            scales.append(float(budgets.get(name) or max(seen, default=1.0)) or 1.0)
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
