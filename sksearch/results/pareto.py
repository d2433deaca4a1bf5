"""The Pareto front of a study and its hypervolume, over trials trained for the full budget only.

Front: COMPLETE trials with `full_fidelity` true, not infeasible, all Optuna constraints <= 0; the non-dominated
sort is Optuna's own (`_get_pareto_front_trials_by_trials`, the function behind `study.best_trials`, which
alone would let a complete-but-partial or infeasible-without-constraints trial through).

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
from optuna._hypervolume import compute_hypervolume
from optuna.study import StudyDirection
from optuna.study._multi_objective import _get_pareto_front_trials_by_trials, _is_pareto_front
from optuna.trial import FrozenTrial, TrialState

from sksearch.config import StudyConfig
from sksearch.units import format_count

COST_REFERENCE = 1.05


def trial_status(t: FrozenTrial) -> str:
    """One of: full (trained to the budget), pruned, infeasible, failed, partial, duplicate, running."""
    a = t.user_attrs
    if "duplicate_of" in a:
        return "duplicate"  # a repeated spec whose result was copied, not trained
    if "infeasible" in a or any(v > 0 for v in t.constraints.values()):
        return "infeasible"
    if t.state == TrialState.COMPLETE:
        return "full" if a.get("full_fidelity") else "partial"
    if t.state == TrialState.PRUNED:
        return "pruned"
    if t.state == TrialState.FAIL:
        return "failed"
    return "running"


def full_fidelity_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if trial_status(t) == "full" and t.values is not None]


def front_trials(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """Non-dominated full-fidelity feasible trials, cheapest first (by the first cost objective)."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    front = _get_pareto_front_trials_by_trials(full_fidelity_trials(trials), study.directions)
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
            budgets = {"macs": cfg.constraints.max_macs, "params": cfg.constraints.max_params}
        scales = []
        for i, (name, d) in enumerate(zip(names, study.directions)):
            if name == "accuracy":
                scales.append(1.0)
                continue
            seen = [float(t.user_attrs[name]) for t in trials if isinstance(t.user_attrs.get(name), (int, float))]
            seen += [t.values[i] for t in trials if t.values is not None and trial_status(t) == "full"]
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
                parts.append(f"{name} 0" if name == "accuracy" else f"{name} 0 (scale {s:g})")
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
        seconds += float(t.user_attrs.get("train_seconds") or 0.0)
        epochs += int(t.user_attrs.get("epochs_done") or 0)
        if trial_status(t) == "full" and t.values is not None:
            p = norm.losses(t.values)
            if not any(np.all(q <= p) for q in front):  # dominated points add nothing
                front = [q for q in front if not np.all(p <= q)] + [p]
                hv = float(compute_hypervolume(np.stack(front), norm.reference_point, assume_pareto=True))
        out.append(HypervolumePoint(t.number, n, round(seconds, 3), epochs, hv))
    return out
