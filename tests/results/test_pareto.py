from __future__ import annotations

import numpy as np
import optuna

from sksearch.results.pareto import Normaliser, front_2d, front_trials, hypervolume, hypervolume_history, trial_status
from sksearch.storage.open import open_study

from .conftest import trial_by_tag


def _tags(trials):
    return [t.user_attrs["fixture_tag"] for t in trials]


def test_front_holds_full_fidelity_feasible_trials_only(results_study):
    study, _ = open_study(results_study)
    front = front_trials(study)
    # Cheapest first; the over-budget, pruned and failed trials (some more accurate or cheaper) are not on it.
    assert _tags(front) == ["tiny_g8", "small_g16", "g40", "sknet29"]
    status = {t.user_attrs.get("fixture_tag", "invalid"): trial_status(t) for t in study.trials}
    assert status["pruned_m3"] == "pruned" and status["over_budget"] == "infeasible"
    assert status["crashed"] == "failed" and status["interrupted"] == "failed" and status["invalid"] == "infeasible"
    # Optuna's own best_trials would admit nothing wrong here either, but knows nothing of full_fidelity.
    assert {t.number for t in front} <= {t.number for t in study.best_trials}


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
    pts = sorted((t.user_attrs["macs"] / 6e9, 1 - t.values[0]) for t in front_trials(study))
    area, prev_loss = 0.0, 1.0
    for c, loss in pts:
        area += (1.05 - c) * (prev_loss - loss)
        prev_loss = loss
    assert np.isclose(values[-1], area)
    # Compute spent counts every trial (pruned and failed included), in trial order.
    seconds = sum(t.user_attrs.get("train_seconds", 0.0) for t in study.trials)
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
    optuna.logging.set_verbosity(optuna.logging.WARNING)
