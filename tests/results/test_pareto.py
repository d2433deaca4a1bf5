from __future__ import annotations

import numpy as np
import optuna

from sksearch.results.pareto import (Normaliser, _hypervolume_fallback, _is_pareto_front_fallback, compute_hypervolume,
                                     front_2d, front_trials, hypervolume, hypervolume_history, pareto_front)
from sksearch.storage.open import open_study
from sksearch.storage.records import status

from .conftest import tag_of, trial_by_tag


def _tags(trials):
    return [tag_of(t.number) for t in trials]


def test_front_holds_full_fidelity_feasible_trials_only(results_study):
    study, _ = open_study(results_study)
    front = front_trials(study)
    # Cheapest first; the over-budget, pruned and failed trials (some more accurate or cheaper) are not on it.
    assert _tags(front) == ["tiny_g8", "small_g16", "g40", "sknet29"]
    by_tag = {tag_of(t.number): status(t) for t in study.trials}
    assert by_tag["pruned_m3"] == "pruned" and by_tag["over_budget"] == "infeasible"
    assert by_tag["crashed"] == "failed" and by_tag["interrupted"] == "interrupted"
    assert by_tag["invalid"] == "infeasible" and by_tag["repeat_of_sknet29"] == "duplicate"
    # One front: Optuna's own (what optuna-dashboard draws) is the same set, without the repeated spec's copy
    # (which has its twin's values but violates the `repeated` constraint).
    assert {t.number for t in front} == {t.number for t in study.best_trials}
    assert trial_by_tag(results_study, "repeat_of_sknet29").values == trial_by_tag(results_study, "sknet29").values


def test_fallbacks_match_optunas_private_helpers():
    rng = np.random.default_rng(0)
    pts = rng.random((30, 2))
    from sksearch.results import pareto

    assert (pareto._is_pareto_front(pts, assume_unique_lexsorted=False) == _is_pareto_front_fallback(pts)).all()
    ref = np.array([1.05, 1.05])
    front = pts[_is_pareto_front_fallback(pts)]
    assert np.isclose(compute_hypervolume(front, ref, assume_pareto=True), _hypervolume_fallback(front, ref))
    pts3 = rng.random((12, 3))
    front3 = pts3[_is_pareto_front_fallback(pts3)]
    assert np.isclose(compute_hypervolume(front3, np.ones(3) * 1.1), _hypervolume_fallback(front3, np.ones(3) * 1.1))
    assert pareto_front([], []) == []


def test_front_2d_is_a_staircase():
    acc, cost = [0.5, 0.9, 0.7, 0.6, 0.9], [1, 3, 2, 2.5, 4]
    assert front_2d(acc, cost) == [0, 2, 1]


def test_hypervolume_history_grows_with_the_front(results_study):
    study, _ = open_study(results_study)
    norm = Normaliser.for_study(study, ["accuracy", "macs"], results_study)
    assert norm.scales[1] == 6e9  # the study's max_macs budget
    hist = hypervolume_history(study, norm)
    values = [h.hypervolume for h in hist]
    assert len(hist) == len(study.trials)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert np.isclose(values[-1], hypervolume(study.trials, norm))
    # By hand: the staircase area of the front in (1 - accuracy, macs / 6G) up to (1, 1.05).
    pts = sorted((t.values[1] / 6e9, 1 - t.values[0]) for t in front_trials(study))
    area, prev_loss = 0.0, 1.0
    for c, loss in pts:
        area += (1.05 - c) * (prev_loss - loss)
        prev_loss = loss
    assert np.isclose(values[-1], area)
    # Compute spent counts every trial (pruned and failed included), in trial order.
    seconds = sum(10.0 + t.number for t in study.trials if tag_of(t.number) not in
                  ("over_budget", "invalid", "repeat_of_sknet29"))
    assert np.isclose(hist[-1].compute_seconds, seconds)
    sknet = trial_by_tag(results_study, "sknet29")
    before = [h for h in hist if h.trial < sknet.number][-1].hypervolume
    assert [h for h in hist if h.trial == sknet.number][0].hypervolume > before


def test_reading_never_creates_a_storage(tmp_path):
    from .conftest import _write_study_file
    from sksearch.config import load_study
    from sksearch.errors import UserError

    cfg = load_study(_write_study_file(tmp_path, "empty", "cifar10"))
    try:
        open_study(cfg)
    except UserError as exc:
        assert "sksearch run" in str(exc)
    else:
        raise AssertionError("expected a UserError")
    assert not (tmp_path / "runs" / "empty" / "optuna.db").exists()
