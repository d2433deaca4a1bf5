"""Pareto-ASHA's promotion rule against an exact reference written from its documentation alone.

The reference is plain Python, by definition (no numpy, no Optuna): dominance pair by pair, fronts peeled,
NSGA-II crowding on (accuracy, log cost) with ties on an axis taken in arrival order, the quota ceil(n / rf)
over entries strictly ahead, and (keep_most_accurate) the same quota over entries strictly more accurate.
10,000 random rungs, many with ties and NaN, half with the accuracy cut, must agree every time.
"""
from __future__ import annotations

import math
import random

import pytest

from sksearch.search.schedulers import pareto_promotable, promotion_quota


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """a, b: (loss1, loss2), both minimised."""
    return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])


def _fronts(losses: list[tuple[float, float]]) -> list[int]:
    rank = [-1] * len(losses)
    left = set(range(len(losses)))
    r = 0
    while left:
        front = {i for i in left if not any(_dominates(losses[j], losses[i]) for j in left if j != i)}
        for i in front:
            rank[i] = r
        left -= front
        r += 1
    return rank


def _crowding(points: list[tuple[float, float]]) -> list[float]:
    """NSGA-II crowding of one front; points are (accuracy, cost)."""
    acc = [(-math.inf if math.isnan(a) else a) for a, _ in points]
    cost = [(math.inf if math.isnan(c) else c) for _, c in points]
    if all(c > 0 and math.isfinite(c) for c in cost):
        cost = [math.log(c) for c in cost]
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    dist = [0.0] * n
    for axis in (acc, cost):
        order = sorted(range(n), key=lambda i: axis[i])  # Python's sort is stable: ties in arrival order
        values = [axis[i] for i in order]
        finite = [v for v in values if math.isfinite(v)]
        if not finite or values[0] == values[-1]:
            continue
        width = (max(finite) - min(finite)) or 1.0
        dist[order[0]] = dist[order[-1]] = math.inf
        for k in range(1, n - 1):
            gap = (values[k + 1] - values[k - 1]) / width
            if math.isnan(gap):
                gap = 0.0
            dist[order[k]] += gap
    return dist


def reference_promotable(rung: list[tuple[float, float]], candidate: tuple[float, float], rf: float,
                         keep_most_accurate: bool = True) -> bool:
    points = [*rung, candidate]
    quota = max(1, math.ceil(round(len(points) / rf, 9)))
    if keep_most_accurate:  # step 4: within the quota by accuracy alone (NaN is the worst accuracy)
        acc = [(-math.inf if math.isnan(a) else a) for a, _ in points]
        if sum(a > acc[-1] for a in acc) < quota:
            return True
    losses = [((math.inf if math.isnan(a) else -a), (math.inf if math.isnan(c) else c)) for a, c in points]
    rank = _fronts(losses)
    me = len(points) - 1
    same = [i for i in range(len(points)) if rank[i] == rank[me]]
    crowd = dict(zip(same, _crowding([points[i] for i in same])))
    ahead = sum(rank[i] < rank[me] for i in range(len(points)))
    ahead += sum(crowd[i] > crowd[me] for i in same)
    return ahead < quota


def _random_point(rng: random.Random, style: str) -> tuple[float, float]:
    if style == "ties":  # coarse grids: many equal accuracies and costs, as small discrete spaces give
        return rng.randint(0, 8) / 8, float(10 ** rng.randint(6, 9))
    if style == "nan" and rng.random() < 0.15:
        return (math.nan, rng.uniform(1e6, 1e9)) if rng.random() < 0.7 else (rng.random(), math.nan)
    return rng.random(), rng.uniform(1e6, 1e9)


def test_rule_agrees_with_the_exact_reference_on_10000_random_rungs():
    rng = random.Random(20261125)
    disagreements = []
    promoted = 0
    for case in range(10_000):
        style = ("plain", "ties", "nan")[case % 3]
        n = rng.randint(0, 30)
        rung = [_random_point(rng, style) for _ in range(n)]
        candidate = _random_point(rng, style)
        rf = rng.choice([2, 3, 4, 1.5, 2.5])
        keep = case % 2 == 0  # both forms of the rule: with and without the accuracy cut (step 4)
        ours = pareto_promotable(rung, candidate, rf, keep_most_accurate=keep)
        promoted += ours
        if ours != reference_promotable(rung, candidate, rf, keep):
            disagreements.append((rung, candidate, rf, keep))
    assert not disagreements, f"{len(disagreements)} disagreements, first: {disagreements[0]}"
    assert 0.2 < promoted / 10_000 < 0.8  # the cases exercise both outcomes


@pytest.mark.parametrize("n, rf, quota", [(1, 3, 1), (3, 3, 1), (4, 3, 2), (9, 3, 3), (10, 3, 4), (6, 1.5, 4),
                                          (3, 1.5, 2)])
def test_quota_is_ceil_of_n_over_rf(n, rf, quota):
    assert promotion_quota(n, rf) == quota == max(1, math.ceil(round(n / rf, 9)))
