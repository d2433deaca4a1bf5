"""Front math on plain arrays, below both search/ and results/: non-dominated sorting, hypervolume and the
two-objective expected hypervolume improvement (EHVI) of a point with a Gaussian accuracy and a known cost.

Every function takes losses (all objectives minimised). This is the only module that imports Optuna's private
multi-objective helpers; each has a plain numpy fallback used when a new Optuna release moves them.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

# Hypervolumes are taken on normalised losses: 1 - accuracy (reference 1) and cost / scale (reference 1.05, so
# a model at exactly the budget still adds a sliver of volume and one past 1.05 x the budget adds none).
COST_REFERENCE = 1.05


def cost_scale(budget: float | None, seen: Iterable[float]) -> float:
    """What a cost is divided by before its hypervolume: the study's budget on it, else the largest value seen
    (the report's Normaliser and the ehvi proposer use this one rule, so their volumes agree)."""
    return float(budget or max(seen, default=1.0)) or 1.0


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


def is_pareto_front(losses: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of losses (all minimised)."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(_is_pareto_front(losses, assume_unique_lexsorted=False), dtype=bool)


def nondomination_ranks(losses: np.ndarray) -> np.ndarray:
    """Front index of each row of losses (all minimised): 0 = the Pareto front of the set."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return np.zeros(0, dtype=int)
    if _optuna_ranks is not None:
        try:
            return np.asarray(_optuna_ranks(losses), dtype=int)
        except Exception:  # a changed private signature must not break scheduling
            pass
    return _peel_fronts(losses)


def hypervolume(losses: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by the rows of losses and bounded by reference (rows beyond the reference add nothing)."""
    losses = np.asarray(losses, dtype=float).reshape(-1, len(reference))
    reference = np.asarray(reference, dtype=float)
    losses = losses[np.all(losses < reference, axis=1)]
    if len(losses) == 0:
        return 0.0
    return float(compute_hypervolume(losses, reference))


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def _norm_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def expected_positive_part(a: np.ndarray, mean: float, sd: float) -> np.ndarray:
    """E[max(a - Y, 0)] for Y ~ N(mean, sd^2), elementwise over a (sd 0: the plain difference)."""
    a = np.asarray(a, dtype=float)
    if sd <= 0.0:
        return np.maximum(a - mean, 0.0)
    z = (a - mean) / sd
    return (a - mean) * _norm_cdf(z) + sd * _norm_pdf(z)


def expected_hypervolume_improvement(front: np.ndarray, reference: np.ndarray, cost: float,
                                     loss_mean: float, loss_sd: float) -> float:
    """Expected gain of the 2-D hypervolume when a point with known cost (column 1) and a Gaussian loss
    (column 0, e.g. 1 - accuracy ~ N(loss_mean, loss_sd^2)) joins `front` (losses [loss, cost], minimised).

    With the cost known, the gain for a loss y is the area between y and the front's staircase over
    [cost, reference cost]: sum over the staircase's steps [c_j, c_{j+1}) of width x max(h_j - y, 0), where
    h_j is the best loss of the front at costs <= c_j (the reference loss before the first member). Its
    expectation under a Gaussian is closed form: E[max(h - Y, 0)] = (h - mu) Phi(z) + sd phi(z)."""
    reference = np.asarray(reference, dtype=float)
    if cost >= reference[1]:
        return 0.0
    pts = np.asarray(front, dtype=float).reshape(-1, 2)
    pts = pts[np.all(pts < reference, axis=1)]
    # Breakpoints of the staircase at or after `cost`: the point's own cost and every front cost above it.
    edges = np.unique(np.concatenate([[cost], pts[:, 1][pts[:, 1] > cost], [reference[1]]]))
    lefts, widths = edges[:-1], np.diff(edges)
    heights = np.array([min([reference[0], *pts[:, 0][pts[:, 1] <= c]]) for c in lefts])
    return float(np.sum(widths * expected_positive_part(heights, loss_mean, loss_sd)))
