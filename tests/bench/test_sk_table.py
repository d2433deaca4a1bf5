"""The SK benchmark table (bench/tables/sk_bench.json, issue 13): its format and what it promises."""
from __future__ import annotations

import importlib
import json
import random
import statistics
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "bench" / "tables" / "sk_bench.json"


@pytest.fixture(scope="module")
def table() -> dict:
    return json.loads(TABLE.read_text())


@pytest.fixture
def bench_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    monkeypatch.syspath_prepend(str(REPO / "bench" / "schedulers"))
    return importlib.import_module("sk_table"), importlib.import_module("sk_replay")


def _specs(table: dict) -> dict[str, list[dict]]:
    by_spec: dict[str, list[dict]] = {}
    for row in table["rows"]:
        by_spec.setdefault(json.dumps(row["spec"], sort_keys=True), []).append(row)
    return by_spec


def test_the_table_is_made_with_the_committed_study(table):
    assert table["study"] == yaml.safe_load((REPO / "studies" / "sk_bench.yaml").read_text())
    assert set(table) == {"study", "rows"}
    for row in table["rows"]:
        assert set(row) == {"spec", "seed", "accuracy", "macs", "params", "train_seconds"}


def test_the_table_holds_what_issue_13_asks(table):
    by_spec = _specs(table)
    assert len(by_spec) >= 96                                            # distinct specs
    assert all(len(r["accuracy"]) >= 9 for r in table["rows"])           # rungs 1, 3, 9
    assert all(0 <= a <= 1 for r in table["rows"] for a in r["accuracy"])
    three_seeds = [rows for rows in by_spec.values() if {r["seed"] for r in rows} >= {0, 1, 2}]
    assert len(three_seeds) >= 16                                        # the table's own noise floor
    assert all(len({r["seed"] for r in rows}) == len(rows) for rows in by_spec.values())  # no row twice
    finals = [statistics.mean(r["accuracy"][-1] for r in rows) for rows in by_spec.values()]
    assert statistics.median(finals) >= 0.5                              # most specs learn


def test_the_table_spans_the_sk_knobs(table):
    specs = [rows[0]["spec"] for rows in _specs(table).values()]
    sk = [s["sk"] for s in specs]
    assert {len(s["branches"]) for s in sk} == {1, 2, 3}
    assert len({s["G"] for s in sk}) >= 3 and len({s["r"] for s in sk}) >= 2 and len({s["L"] for s in sk}) >= 2
    assert {s["attention"] for s in sk if len(s["branches"]) > 1} == {"softmax", "sum"}
    paths = {(b["kernel"], b["dilation"]) for s in sk for b in s["branches"][1:]}
    assert paths == {(3, 1), (3, 2), (5, 1), (5, 2)}


def test_costs_are_sksearch_counts(table):
    from sksearch.config import load_study
    from sksearch.search.feasibility import check_spec

    cfg = load_study(REPO / "studies" / "sk_bench.yaml")
    num_classes, input_size = cfg.geometry()
    rows = [rows[0] for rows in _specs(table).values()]
    for row in random.Random(0).sample(rows, 16):
        feas = check_spec(row["spec"], cfg.constraints, num_classes=num_classes, input_size=input_size)
        assert feas.feasible and feas.spec.to_dict() == row["spec"]
        assert (feas.macs, feas.params) == (row["macs"], row["params"])


def test_the_builder_skips_rows_already_in_the_table(bench_modules, table):
    sk_table, _ = bench_modules
    # The first planned specs are the ones in the table (same sampler, same seed), so a rerun has nothing to do.
    planned = sk_table.sample_specs(8, 0)
    done = {sk_table.row_key(r) for r in table["rows"]}
    assert all(sk_table.row_key({"spec": s["spec"], "seed": 0}) in done for s in planned)


def test_a_replay_spends_at_most_its_budget_and_never_beats_the_true_front(bench_modules):
    _, sk_replay = bench_modules
    t = sk_replay.SKTable.load()
    true_hv = t.true_hypervolume()
    for method in ("random + FIFO", "random + Pareto-ASHA"):
        trace = sk_replay.replay(t, method, 0, budget=180, workers=4, grace=1, rf=3)
        assert trace.epochs == sorted(trace.epochs) and trace.epochs[-1] <= 180
        assert trace.hypervolume == sorted(trace.hypervolume)  # a front only grows
        assert 0 < trace.hypervolume[-1] <= true_hv + 1e-12
    # Trained to the end in every order, FIFO finds the whole true front.
    full = sk_replay.replay(t, "random + FIFO", 1, budget=t.max_t * len(t.rows), workers=4, grace=1, rf=3)
    assert full.trials == len(t.rows) and full.hypervolume[-1] == pytest.approx(true_hv)


def test_the_synthetic_curve_table_draws_distinct_networks_as_the_dry_run_does(monkeypatch):
    # bench/schedulers/schedulers_table.py samples through the product's distinct_networks (not a copy of it):
    # no two of its specs build the same network.
    from sksearch.search.dryrun import distinct_networks
    from sksearch.spec import ArchSpec

    monkeypatch.syspath_prepend(str(REPO / "bench" / "schedulers"))
    tables = importlib.import_module("schedulers_table")
    specs = tables.sample_specs(12, seed=0)
    identities = [ArchSpec.from_dict(s["spec"]).identity() for s in specs]
    assert len(set(identities)) == 12
    assert identities == [f.spec.identity() for f in distinct_networks(tables.curve_study(), 12, seed=0,
                                                                        max_draws=1200)]


@pytest.mark.slow
def test_a_replay_does_not_depend_on_the_replays_before_it_in_the_process(bench_modules):
    # bench_sk_table.py's workers share one SpecChecker across the orders they replay. Its cache once returned
    # the verdict of the first spec seen for a network, so a later spec of that network (other r and L, paths in
    # another order) was answered by another row, and a replay's result depended on the pool's scheduling.
    _, sk_replay = bench_modules
    table = sk_replay.SKTable.load(TABLE)
    kw = {"budget": table.max_t * len(table.rows), "workers": 4, "grace": 1, "rf": 3}
    method = "TPE + Pareto-ASHA (sksearch)"
    alone = sk_replay.replay(table, method, 0, sampler=sk_replay._spec_sampler(table), **kw)
    shared = sk_replay._spec_sampler(table)
    sk_replay.replay(table, method, 1, sampler=shared, **kw)
    after = sk_replay.replay(table, method, 0, sampler=shared, **kw)
    assert after.ended == alone.ended and after.hypervolume == alone.hypervolume
