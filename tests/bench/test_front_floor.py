"""bench/schedulers/front_floor.py: the fewest rows trained in full that reach a share of a table's true front."""
from __future__ import annotations

import importlib
import itertools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def floor(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    monkeypatch.syspath_prepend(str(REPO / "bench" / "schedulers"))
    return importlib.import_module("front_floor")


@pytest.mark.parametrize("goal", [0.90, 0.95, 0.99])
def test_the_floor_is_the_fewest_rows_of_the_whole_table_that_reach_the_share(floor, goal):
    # The script searches subsets of the true front only; check it against every row of the table: no set of
    # k - 1 rows reaches the share (pairs at most, so the check stays small), and k front rows do.
    table = floor.sk_replay.SKTable.load(floor.TABLES[0])
    k = floor.fewest_rows(table, goal)
    target = goal * table.true_hypervolume()
    points = [(r.final, r.macs) for r in table.rows]
    if k - 1 <= 2:
        assert not any(table.hypervolume(list(c)) >= target
                       for n in range(1, k) for c in itertools.combinations(points, n))
    front = [(r.final, r.macs) for r in table.front_rows()]
    assert any(table.hypervolume(list(c)) >= target - 1e-12 for c in itertools.combinations(front, k))
    assert table.hypervolume(front) == pytest.approx(table.true_hypervolume())


def test_rung_ranks_put_the_best_row_of_each_epoch_first(floor):
    table = floor.sk_replay.SKTable.load(floor.TABLES[0])
    ranks = floor.rung_ranks(floor.rung_accuracy(table, [1, 3, table.max_t]))
    assert ranks.shape == (len(table.rows), 3) and (ranks.min(axis=0) == 1).all()
    best_final = max(range(len(table.rows)), key=lambda i: table.rows[i].final)
    assert ranks[best_final, 2] == 1  # the last rung is the final accuracy the table is scored on
