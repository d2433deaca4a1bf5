"""Pareto-ASHA: the promotion rule on hand-made rungs, the scheduler through Ray's scheduler API with real
Trial objects, and one small real Tuner.fit run on a local Ray."""

from __future__ import annotations

import os

import numpy as np
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from sksearch.config import StudyConfig
from sksearch.results.pareto import _peel_fronts
from sksearch.search.protocol import RESUMED_AT
from sksearch.search.schedulers import (
    ParetoASHA,
    _as_losses,
    crowding_distances,
    nondomination_ranks,
    pareto_promotable,
    promotion_quota,
    rung_epochs,
)

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


# -- the promotion rule -------------------------------------------------------------------------------------

def test_candidate_alone_continues():
    assert pareto_promotable([], (0.01, 5e9), 3)


def test_cheap_less_accurate_trial_on_the_front_is_promoted():
    rung = [(0.80, 1e9), (0.78, 8e8), (0.75, 6e8), (0.70, 9e8), (0.72, 1.2e9)]
    cheap = (0.40, 1e7)
    # Plain ASHA would stop it: it has the lowest accuracy of the rung.
    assert cheap[0] < np.percentile([a for a, _ in rung], (1 - 1 / 3) * 100)
    assert pareto_promotable(rung, cheap, 3)


def test_dominated_trial_is_not_promoted():
    rung = [(0.80, 1e8), (0.90, 1e9)]
    assert not pareto_promotable(rung, (0.60, 5e8), 3)       # worse and dearer than (0.80, 1e8)
    assert not pareto_promotable(rung, (0.60, 5e8), 1.5)     # quota 2, still two non-dominated ahead
    assert not pareto_promotable([(0.5, 1e8)], (float("nan"), 1e9), 3)  # NaN accuracy counts as worst


def test_crowding_distance_breaks_ties_inside_the_front():
    rung = [(0.50, 1e7), (0.90, 1e9), (0.61, 2.1e7)]
    crowded = (0.60, 2e7)     # non-dominated, but right next to (0.61, 2.1e7)
    isolated = (0.75, 1e8)    # non-dominated, alone in the middle of the front
    assert (nondomination_ranks([*rung, crowded]) == 0).all()
    assert (nondomination_ranks([*rung, isolated]) == 0).all()
    # quota ceil(4 / 1.5) = 3: the two extremes (infinite distance) plus the better-spread interior point
    assert pareto_promotable(rung, isolated, 1.5, keep_most_accurate=False)
    assert not pareto_promotable(rung, crowded, 1.5, keep_most_accurate=False)
    # The accuracy cut keeps it all the same: only (0.90, 1e9) and (0.61, 2.1e7) are more accurate (< 3).
    assert pareto_promotable(rung, crowded, 1.5)


def test_the_accuracy_cut_keeps_an_accurate_slow_starter_that_pareto_order_stops():
    # Epoch 1 of a crossing regime: the big model is second in accuracy but dominated by a cheap fast starter.
    rung = [(0.30, 7e6), (0.12, 6e6), (0.14, 8e6), (0.11, 9e6), (0.13, 6.5e6)]
    big = (0.25, 1.8e7)
    assert nondomination_ranks([*rung, big])[-1] > 0
    assert not pareto_promotable(rung, big, 3, keep_most_accurate=False)  # quota 2: fronts ahead fill it
    assert pareto_promotable(rung, big, 3)  # one entry more accurate: within ceil(6 / 3) = 2
    assert not pareto_promotable(rung, (0.10, 1.8e7), 3)  # neither front nor accuracy: stopped


def test_quota_rounds_up():
    assert [promotion_quota(n, 3) for n in (1, 2, 3, 4, 9, 10)] == [1, 1, 1, 2, 3, 4]
    assert promotion_quota(4, 2) == 2
    top = (0.90, 1e7)  # dominates everything below
    candidate = (0.60, 2e8)  # second front, one entry ahead of it
    assert pareto_promotable([top, (0.50, 5e8), (0.40, 6e8)], candidate, 3)   # n=4: quota 2
    assert not pareto_promotable([top, (0.50, 5e8)], candidate, 3)            # n=3: quota 1


def test_crowding_extremes_are_infinite_and_small_fronts_all_infinite():
    d = crowding_distances([(0.5, 1e7), (0.6, 1e8), (0.7, 1e9), (0.65, 3e8)])
    assert np.isinf(d[0]) and np.isinf(d[2]) and np.isfinite(d[1]) and np.isfinite(d[3])
    assert np.isinf(crowding_distances([(0.5, 1e7), (0.6, 1e8)])).all()


def test_local_ranking_matches_optuna():
    rng = np.random.default_rng(0)
    for _ in range(100):
        points = rng.integers(0, 6, size=(int(rng.integers(1, 25)), 2)).astype(float)  # many ties
        assert (nondomination_ranks(points) == _peel_fronts(_as_losses(points))).all()


# -- the scheduler through Ray's API ------------------------------------------------------------------------

def _trial(i: int) -> Trial:
    return Trial("fake", config={"i": i}, trial_id=f"t{i}", stub=True)


def _result(epoch: int, acc: float, macs: float) -> dict:
    return {"training_iteration": epoch, "accuracy": acc, "macs": int(macs), "params": int(macs / 60)}


def _feed(scheduler, rows: list[tuple[float, float]], epoch: int = 1) -> list[str]:
    decisions = []
    for i, (acc, macs) in enumerate(rows):
        trial = _trial(i)
        scheduler.on_trial_add(None, trial)
        decisions.append(scheduler.on_trial_result(None, trial, _result(epoch, acc, macs)))
    return decisions


ROWS = [(0.80, 1e9), (0.70, 9e8), (0.75, 1.1e9), (0.30, 1e7), (0.20, 2e9)]


def test_scheduler_promotes_cheap_front_trials_where_asha_stops_them():
    pasha = ParetoASHA(grace_period=1, reduction_factor=3, max_t=9)
    assert _feed(pasha, ROWS) == [CONTINUE, CONTINUE, STOP, CONTINUE, STOP]  # 2 and 4 are dominated
    asha = AsyncHyperBandScheduler(metric="accuracy", mode="max", grace_period=1, reduction_factor=3, max_t=9)
    assert _feed(asha, ROWS)[3] == STOP
    assert [m for m, _ in pasha._brackets[0].rungs] == [3, 1]
    assert "Iter 1: 5 recorded" in pasha.debug_string()


def test_scheduler_rungs_max_t_mode_and_missing_cost():
    pasha = ParetoASHA(metric="loss", mode="min", grace_period=1, reduction_factor=2, max_t=4)
    a, b, c = _trial(0), _trial(1), _trial(2)
    for t in (a, b, c):
        pasha.on_trial_add(None, t)
    res = lambda e, loss, macs: {"training_iteration": e, "loss": loss, "macs": macs}  # noqa: E731
    assert pasha.on_trial_result(None, a, res(1, 0.5, 1e8)) == CONTINUE
    assert pasha.on_trial_result(None, b, res(1, 0.9, 2e8)) == STOP        # higher loss AND dearer
    assert pasha.on_trial_result(None, a, res(2, 0.4, 1e8)) == CONTINUE     # rung 2, alone
    assert pasha.on_trial_result(None, a, res(3, 0.3, 1e8)) == CONTINUE     # between rungs
    assert pasha.on_trial_result(None, a, res(4, 0.2, 1e8)) == STOP         # max_t reached
    assert pasha.on_trial_result(None, c, {"training_iteration": 1, "loss": 2.0}) == CONTINUE  # no cost
    assert pasha._num_stopped == 1


def test_complete_records_and_save_restore_round_trip(tmp_path):
    pasha = ParetoASHA(grace_period=1, reduction_factor=3, max_t=9)
    _feed(pasha, ROWS[:3])
    late = _trial(9)
    pasha.on_trial_add(None, late)
    pasha.on_trial_complete(None, late, _result(1, 0.95, 5e8))
    assert "t9" in pasha._brackets[0].rungs[-1][1] and "t9" not in pasha._trial_info
    path = tmp_path / "sched.pkl"
    pasha.save(str(path))
    other = ParetoASHA(grace_period=1, reduction_factor=3, max_t=9)
    other.restore(str(path))
    probe = _trial(10)
    other.on_trial_add(None, probe)
    assert other._brackets[0].rungs == pasha._brackets[0].rungs
    assert other.on_trial_result(None, probe, _result(1, 0.50, 2e9)) == STOP  # a fresh one would let it on


def test_a_continuation_is_judged_only_at_the_rungs_after_where_it_paused():
    pasha = ParetoASHA(grace_period=1, reduction_factor=3, max_t=9)
    _feed(pasha, ROWS)  # rung 1 holds five trials; (0.2, 2e9) was stopped there
    again = _trial(20)
    pasha.on_trial_add(None, again)
    resumed = lambda e, acc: {**_result(e, acc, 2e9), RESUMED_AT: 1}  # noqa: E731
    assert pasha.on_trial_result(None, again, resumed(2, 0.2)) == CONTINUE  # rung 1 is behind it
    assert "t20" not in pasha._brackets[0].rungs[-1][1]
    assert pasha.on_trial_result(None, again, resumed(3, 0.9)) == CONTINUE  # rung 3: judged, and the best
    assert "t20" in pasha._brackets[0].rungs[0][1]
    fresh = _trial(21)
    pasha.on_trial_add(None, fresh)
    assert pasha.on_trial_result(None, fresh, _result(2, 0.2, 2e9)) == STOP  # without it: rung 1 cuts it


def test_rung_epochs_are_where_the_scheduler_judges():
    cfg = StudyConfig.model_validate({"name": "s", "search_space": "space.yaml", "train": {"epochs": 9},
                                      "tune": {"scheduler": {"type": "pareto_asha", "reduction_factor": 2.5}}})
    assert rung_epochs(cfg) == [1, 3, 7]  # 1, 2.5, 6.25: judged at the first epoch past each
    made = ParetoASHA(grace_period=1, reduction_factor=2.5, max_t=9)
    assert sorted(m for m, _ in made._brackets[0].rungs) == [1, 2.5, 6.25]


def test_search_properties_and_make_scheduler():
    pasha = ParetoASHA()
    assert pasha.set_search_properties("accuracy", "max") and pasha.set_search_properties(None, None)
    assert not pasha.set_search_properties("loss", "min")
    with pytest.raises(ValueError):
        ParetoASHA(reduction_factor=1)

def test_study_selects_pareto_asha():
    from sksearch.search.schedulers import make_scheduler  # the tuner's wiring of tune.scheduler

    cfg = StudyConfig.model_validate({
        "name": "s", "search_space": "space.yaml", "train": {"epochs": 12},
        "tune": {"scheduler": {"type": "pareto_asha", "grace_period": 2, "reduction_factor": 2, "cost": "params"}}})
    made = make_scheduler(cfg)
    assert isinstance(made, ParetoASHA) and made._cost_attr == "params" and made._max_t == 12
    assert [m for m, _ in made._brackets[0].rungs] == [8, 4, 2]
    assert made._brackets[0].keep_most_accurate  # the accuracy cut is on unless the study turns it off
    off = cfg.tune.scheduler.model_copy(update={"keep_most_accurate": False})
    made = make_scheduler(cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"scheduler": off})}))
    assert not made._brackets[0].keep_most_accurate


# -- one real Tuner.fit ------------------------------------------------------------------------------------

# (MACs, accuracy per epoch): three dear accurate models, then a cheap weak one (on the front), then a dear
# weak one (dominated). One trial at a time, so they reach the rung in this order.
CURVES = [(1e9, [0.70, 0.80, 0.85]), (8e8, [0.66, 0.74, 0.80]), (1.2e9, [0.68, 0.79, 0.84]),
          (1e7, [0.30, 0.35, 0.40]), (2e9, [0.20, 0.30, 0.35])]


def _standin_trainable(config: dict) -> None:
    from ray import tune

    macs, curve = CURVES[config["i"]]
    for acc in curve:
        tune.report({"accuracy": acc, "macs": int(macs), "params": int(macs / 60)})


@pytest.mark.slow
def test_tuner_fit_keeps_cheap_front_trial(tmp_path):
    ray = pytest.importorskip("ray")
    from ray import tune

    started_here = not ray.is_initialized()  # another test may have left a local Ray up
    if started_here:  # the suite's shared head where there is one (tests/conftest.py), else a local Ray
        where = {"address": os.environ["RAY_ADDRESS"]} if os.environ.get("RAY_ADDRESS") else \
            {"address": "local", "num_cpus": 2}
        ray.init(**where, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        tuner = tune.Tuner(
            _standin_trainable,
            param_space={"i": tune.grid_search(list(range(len(CURVES))))},
            tune_config=tune.TuneConfig(
                scheduler=ParetoASHA(grace_period=1, reduction_factor=3, max_t=3),
                max_concurrent_trials=1, reuse_actors=True, metric="accuracy", mode="max"),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="pasha", verbose=0),
        )
        results = tuner.fit()
        epochs = {r.config["i"]: r.metrics["training_iteration"] for r in results}
    finally:
        if started_here:
            ray.shutdown()
    assert epochs[3] == 3   # cheap, least accurate, on the front: trained to the end
    assert epochs[4] == 1 and epochs[2] == 1   # dominated at the first rung: stopped
    assert epochs[0] == 3
