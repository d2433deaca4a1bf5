"""Latency as a cost in a real run (real Ray, real Optuna, real timing): an objective, a budget and
Pareto-ASHA's cost; on the front, in the report, in summary.json and the export; the unit table shared
through the study's storage."""
from __future__ import annotations

import io
import itertools
import json
import statistics

import pytest
import yaml
from optuna.trial import TrialState

from sksearch import latency
from sksearch.config import load_study
from sksearch.export import main as export_main
from sksearch.search.dryrun import iter_samples
from sksearch.search.tune import run_study
from sksearch.storage import records
from tests.tune.helpers import counted, load, write_study

pytestmark = pytest.mark.slow

TIMING = {"warmup": 1, "repeats": 6, "min_seconds": 0.01, "presample": 16, "check": 1}


def test_latency_as_objective_budget_and_scheduler_cost(tmp_path, monkeypatch):
    monkeypatch.setenv("SKSEARCH_CACHE", str(tmp_path / "cache"))
    objectives = [{"metric": "accuracy", "direction": "maximize"}, {"metric": "latency", "direction": "minimize"}]
    probe = load_study(write_study(tmp_path, name="probe", objectives=objectives, latency=TIMING))
    # A budget that about half the space meets, from the same table the run will use, and a sampler seed whose
    # first draw is over it by a margin while a quarter of the draws are well under it: the run (which predicts
    # with this process's table and the scale settled here) meets an over-budget spec first, then finds its 3 trials.
    draws = [f for _, f in itertools.islice(iter_samples(probe), 16) if f.feasible]
    table = latency.table_for(probe.latency_target())
    if latency.calibrate(table, [draws[0].spec]).scale is None:
        # Refused as noisy (a busy machine): the run would fit again and move every prediction past the limit
        # chosen below (seen under the suite's load). Settle the table on the plain sum, as a study does.
        table.scale = 1.0
    for seed in range(1, 200):
        predicted = [f.latency for _, f in itertools.islice(iter_samples(probe, seed=seed), 16) if f.feasible]
        limit = round(statistics.median(predicted), 4)
        if predicted[0] > 1.15 * limit and sum(p < limit / 1.15 for p in predicted) >= 4:
            break
    else:
        raise AssertionError(f"no sampler seed draws an over-budget spec first: {predicted}")
    path = write_study(tmp_path, name="lat", n_trials=3, epochs=2, concurrent=1, objectives=objectives, latency=TIMING,
                       constraints={"max_latency_ms": limit},
                       scheduler={"type": "pareto_asha", "cost": "latency", "grace_period": 1,
                                  "reduction_factor": 2})
    data = yaml.safe_load(path.read_text())
    data["tune"]["sampler"]["seed"] = seed
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = io.StringIO()
    assert run_study(load_study(path), out=out) == 0
    text = out.getvalue()
    assert "latency on cpu" in text and "per-unit sum vs whole network on 1 specs" in text
    # the scale this machine's table was calibrated with, a new fit, or a fit refused as too noisy
    assert "(scale " in text or "predictions scaled by" in text or "no scale fitted" in text

    study = load(path)
    trials = study.get_trials()
    # Trials whose spec cannot be built (a G that does not divide a width) have no latency and no target.
    targets = [t.user_attrs[records.Key.LATENCY_TARGET] for t in trials if records.Key.LATENCY_MS in t.user_attrs]
    assert targets and all(t == targets[0] for t in targets)
    target = targets[0]
    assert target["device"] == "cpu" and target["batch"] == 1 and target["id"]
    infeasible = [t for t in trials if records.status(t) == "infeasible" and t.state == TrialState.COMPLETE]
    assert infeasible, f"the first draw of seed {seed} is over {limit} ms"
    for t in infeasible:
        assert t.user_attrs["latency_ms"] > limit and "max_latency_ms" in t.user_attrs["infeasible"]
        assert t.constraints["max_latency_ms"] > 0
    trained = counted(study)
    assert len(trained) == 3 and all(t.user_attrs["latency_ms"] <= limit for t in trained)
    for t in trained:
        if t.state == TrialState.COMPLETE:
            assert t.values[1] == pytest.approx(t.user_attrs["latency_ms"])  # the objective is the prediction

    summary = json.loads((tmp_path / "runs" / "lat" / "report" / "summary.json").read_text())
    assert summary["objectives"] == ["accuracy", "latency"] and summary["front"]
    assert all(row["latency_ms"] is not None for row in summary["front"])
    assert 'id="accuracy_vs_latency_ms"' in (tmp_path / "runs" / "lat" / "report" / "report.html").read_text()

    stored = records.latency_units(study._storage, study._study_id, target["id"])
    assert stored, "the units the trials were predicted from are in the study's storage"

    best = tmp_path / "best.yaml"
    assert export_main([str(path), "--out", str(best)]) == 0
    source = yaml.safe_load(best.read_text())["provenance"]["source"]
    assert source["latency_ms"] > 0 and source["latency_target"]["id"] == target["id"]

    # A rerun on a machine whose cache is empty (or a second driver) reads the table from the storage.
    monkeypatch.setenv("SKSEARCH_CACHE", str(tmp_path / "other-cache"))
    latency._TABLES.clear()
    out = io.StringIO()
    assert run_study(load_study(path), n_trials=4, out=out) == 0
    assert ", 0 timed now" in out.getvalue()
    scale = records.latency_scale(study._storage, study._study_id, target["id"])
    if scale is not None:  # the study's scale, not a new fit
        assert f"(scale {scale:g})" in out.getvalue()
