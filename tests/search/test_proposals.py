"""The ehvi proposer (search/proposals.py) on real studies written by the driver's own record functions."""
from __future__ import annotations

import itertools

import numpy as np
import optuna
import pytest
import yaml

from sksearch.config import load_study
from sksearch.search.dryrun import iter_distinct
from sksearch.search.feasibility import sample_feasibility
from sksearch.search.proposals import FrontGainProposer, RungToFinal
from sksearch.search.space import SearchSpace
from sksearch.storage import records as st
from sksearch.storage.open import open_storage
from tests.tune.helpers import write_study

EPOCHS = 4


def _setup(tmp_path, **kw):
    path = write_study(tmp_path, epochs=EPOCHS, **kw)
    data = yaml.safe_load(path.read_text())
    data["tune"]["sampler"] = {"type": "ehvi", "seed": 3, "n_startup_trials": 4, "pool_size": 64}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_study(path)
    space = SearchSpace.load(cfg.space_path())
    study = optuna.create_study(study_name=cfg.name, storage=open_storage(cfg.storage_url()),
                                directions=[o.direction for o in cfg.objectives])
    return cfg, space, study


def _train(study, cfg, space, params: dict, history: list[float], *, paused: bool = False) -> optuna.Trial:
    """A trial as the driver writes it: sampled, recorded, its epochs, its end (PRUNED when the history
    is shorter than the budget; paused: its training state kept, tune.scheduler.pause)."""
    study.enqueue_trial(params)
    trial = study.ask()
    feas = sample_feasibility(space, trial, cfg)
    st.set_constraints(trial, feas.constraints)
    st.record_sampled(trial, feas.spec.to_dict(), feas.spec.sk.label(), feas.params, feas.macs,
                      feas.select_macs, EPOCHS, latency_ms=feas.latency)
    for epoch in range(1, len(history) + 1):
        st.record_epoch(study._storage, trial._trial_id, epoch=epoch, accuracy=history[epoch - 1],
                        history=history[:epoch])
    if paused:
        st.mark_paused(trial)
    st.record_end(study, trial, cfg, epochs_done=len(history), max_epochs=EPOCHS, accuracy=history[-1],
                  params=feas.params, macs=feas.macs, error=None, latency_ms=feas.latency)
    return trial


def _networks(cfg, n, seed=0):
    """n (params, Feasibility) of distinct feasible networks, in draw order."""
    return list(itertools.islice(iter_distinct(cfg, seed=seed, max_draws=3000), n))


def _curve(feas, final: float) -> list[float]:
    return [round(final * e / EPOCHS, 4) for e in range(1, EPOCHS + 1)]


def _proposed_feasibility(cfg, space, proposal):
    study = optuna.create_study()
    study.enqueue_trial(proposal.params)
    return sample_feasibility(space, study.ask(), cfg)


@pytest.mark.slow
def test_random_until_the_model_has_data_then_never_a_trained_or_infeasible_network(tmp_path):
    # A MACs budget that the biggest networks break, and trained networks whose accuracy grows with their
    # MACs: the model's favourites are the big, infeasible ones and the trained ones; neither is proposed.
    cfg, space, study = _setup(tmp_path, constraints={"max_macs": 12_000_000})
    proposer = FrontGainProposer(cfg, space)
    nets = _networks(cfg, 60)
    assert proposer.propose(study) is None  # no observations: the searcher's random sampler draws
    trained = set()
    for params, feas in nets[:40]:
        _train(study, cfg, space, params, _curve(feas, min(0.95, feas.macs / 12e6)))
        trained.add(feas.spec.identity())
    pool = proposer.pool(draw_seed=5)
    assert any(c.identity not in trained for c in pool)  # feasible untried networks exist in its pool
    seen = set()
    for _ in range(3):
        proposal = proposer.propose(study)
        assert proposal is not None and proposal.sd > 0
        feas = _proposed_feasibility(cfg, space, proposal)
        assert feas.feasible, feas.reason
        assert feas.spec.identity() not in trained | seen
        seen.add(feas.spec.identity())
        _train(study, cfg, space, proposal.params, _curve(feas, 0.5))


def test_a_space_whose_networks_are_all_trained_gets_no_proposal(tmp_path):
    # A two-network space: once both are trained the pool is empty.
    cfg, space, study = _setup(tmp_path, search_space=str(_two_network_space(tmp_path)))
    proposer = FrontGainProposer(cfg, space, n_startup=1)
    nets = _networks(cfg, 2)
    assert len(_networks(cfg, 3)) == 2
    _train(study, cfg, space, nets[0][0], _curve(nets[0][1], 0.4))
    proposal = proposer.propose(study)
    assert proposal is not None  # the other network:
    assert _proposed_feasibility(cfg, space, proposal).spec.identity() == nets[1][1].spec.identity()
    _train(study, cfg, space, nets[1][0], _curve(nets[1][1], 0.5))
    assert proposer.propose(study) is None


def _two_network_space(tmp_path):
    # r builds nothing without attention: two networks (G 4 and G 8).
    space_file = tmp_path / "two.yaml"
    space_file.write_text("base:\n  backbone: resnext_cifar\n  depths: [1, 1, 1]\n  widths: [16, 32, 64]\n"
                          "  out_channels: [32, 64, 128]\n  stem_channels: 16\n"
                          "  sk: {G: 8, r: 8, L: 16, attention: sum, branches: [{kernel: 3}]}\n"
                          "search:\n  sk.G: {choices: [4, 8]}\n  sk.r: {choices: [4, 8]}\n")
    return space_file


def test_a_paused_trial_is_proposed_for_resuming_until_a_continuation_takes_it(tmp_path):
    cfg, space, study = _setup(tmp_path, search_space=str(_two_network_space(tmp_path)))
    proposer = FrontGainProposer(cfg, space, n_startup=1)
    (a, fa), (b, fb) = _networks(cfg, 2)
    _train(study, cfg, space, a, _curve(fa, 0.4))
    stopped = _train(study, cfg, space, b, [0.2], paused=False)
    assert proposer.propose(study) is None  # pruned without its state: nothing can resume it, the pool is empty
    paused = _train(study, cfg, space, b, [0.25], paused=True)
    proposal = proposer.propose(study)
    assert proposal is not None and proposal.resume == paused.number != stopped.number
    assert proposal.summary()["resumes"] == paused.number
    assert _proposed_feasibility(cfg, space, proposal).spec.identity() == fb.spec.identity()
    # A continuation running (or ended) takes it; one that was interrupted gives it back.
    study.enqueue_trial(proposal.params)
    continuation = study.ask()
    st.record_continuation(continuation, study.trials[paused.number])
    assert continuation.user_attrs[st.Key.ACCURACY_HISTORY] == [0.25]
    assert proposer.propose(study) is None
    study.tell(continuation, state=optuna.trial.TrialState.FAIL)  # no error: interrupted (its driver died)
    assert proposer.propose(study).resume == paused.number


def test_what_only_pruned_trials_measured_changes_the_proposal(tmp_path):
    # Same full trials; pruned trials of the big networks measured either poor or good early epochs. If the
    # model ignored pruned rungs both studies would get the same proposal.
    proposals = []
    for variant, curve in enumerate([[0.05, 0.06], [0.6, 0.8]]):
        (tmp_path / str(variant)).mkdir()
        cfg, space, study = _setup(tmp_path / str(variant))
        nets = sorted(_networks(cfg, 40), key=lambda n: n[1].macs)
        for params, feas in nets[:8]:  # the small networks, trained in full
            _train(study, cfg, space, params, _curve(feas, 0.3 + feas.macs / 4e8))
        for params, feas in nets[-8:]:  # the big ones, stopped after two epochs
            _train(study, cfg, space, params, curve)
        assert sum(st.status(t) == "pruned" for t in study.get_trials()) == 8
        proposals.append(FrontGainProposer(cfg, space).propose(study))
    assert proposals[0].params != proposals[1].params
    assert proposals[1].mean > proposals[0].mean  # good rungs raise what it expects of its choice


@pytest.mark.slow
def test_latency_is_a_known_cost_to_the_proposer(tmp_path):
    # Objectives accuracy and latency, a latency budget that about half the space meets, and accuracy that
    # grows with latency: the model's favourites are slow; only untried networks within the budget are proposed.
    timing = {"warmup": 1, "repeats": 4, "min_seconds": 0.0, "presample": 0, "check": 0}
    objectives = [{"metric": "accuracy", "direction": "maximize"}, {"metric": "latency", "direction": "minimize"}]
    (tmp_path / "probe").mkdir()
    probe, _, _ = _setup(tmp_path / "probe", objectives=objectives, latency=timing)
    ms = sorted(f.latency for _, f in _networks(probe, 30))
    limit = ms[len(ms) // 2]
    cfg, space, study = _setup(tmp_path, objectives=objectives, latency=timing,
                               constraints={"max_latency_ms": limit})
    proposer = FrontGainProposer(cfg, space)
    assert proposer.cost_names == ["latency"]
    trained = set()
    for params, feas in _networks(cfg, 8):
        _train(study, cfg, space, params, _curve(feas, min(0.95, 0.3 * feas.latency / limit)))
        trained.add(feas.spec.identity())
    assert all(t.user_attrs[st.Key.LATENCY_MS] > 0 for t in study.get_trials())
    for _ in range(2):
        proposal = proposer.propose(study)
        assert proposal is not None
        feas = _proposed_feasibility(cfg, space, proposal)
        assert feas.feasible and feas.latency <= limit, feas.reason
        assert feas.spec.identity() not in trained
        trained.add(feas.spec.identity())
        _train(study, cfg, space, proposal.params, _curve(feas, 0.5))


def test_a_rung_counts_for_what_the_curves_say_it_predicts():
    # Six curves trained in full: epoch 1 is noise around 0.1, epoch 3 ranks the finals. A result at epoch 3
    # moves the predicted final accuracy and comes with a small error; one at epoch 1 comes with about the
    # finals' own spread.
    finals = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85]
    curves = [[0.1 + 0.01 * (-1) ** i, f / 3, f] for i, f in enumerate(finals)]
    lines = RungToFinal(curves, max_epochs=3)
    assert lines.ready()
    low, high = lines.predict(2, 0.5 / 3), lines.predict(2, 0.85 / 3)
    assert low[0] == pytest.approx(0.5, abs=1e-6) and high[0] == pytest.approx(0.85, abs=1e-6)
    assert high[1] < 1e-4
    spread = float(np.var(finals))
    first = lines.predict(1, 0.11)
    assert first[1] > 0.5 * spread
    assert lines.predict(3, 0.42) == (0.42, 0.0)  # a final accuracy is measured, not predicted
    assert not RungToFinal(curves[:2], max_epochs=3).ready()
