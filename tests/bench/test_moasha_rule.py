"""The exact reference of Syne Tune's documented MOASHA rule (bench/schedulers/moasha_rule.py)."""
from __future__ import annotations

import importlib
import random
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "schedulers"


@pytest.fixture
def rule(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("moasha_rule")


def test_documented_order_peels_fronts_then_spreads_from_the_lowest_error(rule):
    # (error, log MACs). Front 0: a, b, c; d is dominated by b; inside the front the lowest error comes
    # first, then the point farthest from it, then the rest.
    a, b, c, d = (0.1, 8.0), (0.3, 7.0), (0.6, 6.0), (0.4, 7.5)
    assert rule.documented_order([a, b, c, d]) == [0, 2, 1, 3]


def test_documented_rule_keeps_a_dominating_candidate_and_the_first_entry(rule):
    assert rule.documented_continues([], (0.9, 9.0), 3)  # first result at a rung
    rung = [(0.5, 7.0), (0.6, 7.2), (0.55, 7.5), (0.7, 6.9)]
    assert rule.documented_continues(rung, (0.1, 6.0), 3)      # dominates all: position 0
    assert not rule.documented_continues(rung, (0.8, 8.0), 3)  # dominated by all: last


def test_moashas_bracket_given_the_documented_order_takes_the_documented_decision(rule):
    pytest.importorskip("syne_tune")
    priority = rule.documented_priority_class()()
    rng = random.Random(1)
    for _ in range(300):
        rung, cand, rf = rule.random_rung(rng)
        assert rule.shipped_continues(rung, cand, rf, priority) == rule.documented_continues(rung, cand, rf)


def test_shipped_moasha_0_16_stops_a_candidate_that_dominates_its_rung(rule):
    # The finding BENCHMARKS.md reports, on one rung: the order nondominated_sort returns is read as
    # per-item priorities, so the decision follows where the LAST item landed, not the candidate.
    st = pytest.importorskip("syne_tune")
    if st.__version__ != "0.16.0":
        pytest.skip(f"measured on syne-tune 0.16.0, this is {st.__version__}")
    from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import nondominated_sort

    rung = [(0.3, 6.5), (0.8, 6.9), (0.4, 8.0), (0.6, 7.8)]
    candidate = (0.1, 6.0)  # better on both objectives than every entry
    # The sort itself puts the candidate (index 4) first; read as priorities, the candidate's value is 3.
    assert nondominated_sort(np.array([*rung, candidate]), dim=0) == [4, 0, 2, 1, 3]
    assert rule.documented_continues(rung, candidate, 3)
    assert not rule.shipped_continues(rung, candidate, 3)  # rank 3/5 > 1/3: stopped
