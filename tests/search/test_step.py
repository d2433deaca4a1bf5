"""The proposal step (search/step.py) that StudySearcher and the replay of bench/schedulers share, on real
studies in the study's own storage."""
from __future__ import annotations

import optuna
import pytest

from sksearch.config import load_study
from sksearch.search import protocol, step as step_module
from sksearch.search.space import SearchSpace
from sksearch.search.step import Drawn, NothingLeft, ProposalStep
from sksearch.storage import records as st
from sksearch.storage.open import open_storage
from tests.search.test_proposals import EPOCHS, _networks, _train
from tests.tune.helpers import write_study


def _setup(tmp_path, **kw):
    cfg = load_study(write_study(tmp_path, epochs=EPOCHS, **kw))
    space = SearchSpace.load(cfg.space_path())
    study = optuna.create_study(study_name=cfg.name, storage=open_storage(cfg.storage_url()),
                                directions=[o.direction for o in cfg.objectives], sampler=optuna.samplers.RandomSampler(3))
    return cfg, space, study


def test_a_trained_network_drawn_again_is_its_twins_duplicate_and_the_step_draws_on(tmp_path):
    cfg, space, study = _setup(tmp_path)
    (params, feas), = _networks(cfg, 1)
    original = _train(study, cfg, space, params, [0.3, 0.5, 0.6, 0.7])
    events = []
    step = ProposalStep(cfg, space, study, on_event=events.append)
    study.enqueue_trial(params)  # the sampler proposes the trained network again
    got = step.next()
    assert isinstance(got, Drawn) and got.feas.feasible and got.resume is None
    assert got.feas.spec.identity() != feas.spec.identity()
    copy = study.get_trials(deepcopy=False)[1]
    assert st.status(copy) == "duplicate" and copy.state == optuna.trial.TrialState.COMPLETE
    assert [type(e) for e in events] == [protocol.Repeated] and events[0].of == original.number
    # The drawn trial is recorded as sampled (its spec and costs) and left to the caller to train.
    drawn = study.get_trials(deepcopy=False)[2]
    assert drawn.state == optuna.trial.TrialState.RUNNING
    assert st.spec(drawn) == got.feas.spec.to_dict() and st.cost(drawn, st.Key.MACS) == got.feas.macs


def test_a_used_up_space_ends_normally_and_an_infeasible_one_stops(tmp_path, monkeypatch):
    cfg, space, study = _setup(tmp_path)
    (params, _), = _networks(cfg, 1)
    _train(study, cfg, space, params, [0.3, 0.5, 0.6, 0.7])
    monkeypatch.setattr(step_module, "MAX_REPEATS_IN_A_ROW", 3)
    for _ in range(3):
        study.enqueue_trial(params)
    got = ProposalStep(cfg, space, study).next()
    assert isinstance(got, NothingLeft) and got.exhausted and "3 specs in a row that were already trained" in got.reason

    # Budgets that no network of the space meets: every draw is recorded infeasible, then the step stops.
    cfg, space, study = _setup(tmp_path, constraints={"max_macs": 1000})
    monkeypatch.setattr(step_module, "MAX_SKIPPED_IN_A_ROW", 4)
    got = ProposalStep(cfg, space, study).next()
    assert isinstance(got, NothingLeft) and not got.exhausted and "4 sampled specs in a row were infeasible" in got.reason
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 4 and all(st.status(t) == "infeasible" for t in trials)


@pytest.mark.slow
def test_the_gp_sampler_draws_the_conditional_parameters_quietly(tmp_path, caplog):
    # GPSampler models only the parameters every trial has; the per-path ones are drawn at random, which it
    # would otherwise announce once per parameter per trial.
    import yaml

    from sksearch.search.samplers import make_sampler

    path = write_study(tmp_path, epochs=EPOCHS)
    data = yaml.safe_load(path.read_text())
    data["tune"]["sampler"] = {"type": "gp", "seed": 0, "n_startup_trials": 2}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_study(path)
    space = SearchSpace.load(cfg.space_path())
    study = optuna.create_study(study_name=cfg.name, storage=open_storage(cfg.storage_url()),
                                directions=[o.direction for o in cfg.objectives], sampler=make_sampler(cfg))
    for params, feas in _networks(cfg, 3):
        _train(study, cfg, space, params, [0.2, 0.3, 0.4, 0.5 + feas.macs / 1e9])
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            step = ProposalStep(cfg, space, study)
            drawn = [step.next() for _ in range(6)]
    finally:
        optuna.logging.disable_propagation()
    assert all(isinstance(got, Drawn) and got.feas.feasible for got in drawn)
    assert any("path2.kernel" in got.trial.params for got in drawn)  # conditional parameters were drawn
    assert not [r for r in caplog.records if "independently" in r.getMessage()]
