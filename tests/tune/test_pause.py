"""tune.scheduler.pause in a real run (real Ray, real Optuna, real training): a trial that a rung stopped keeps
its training state, the ehvi sampler resumes it, and the continuation's curve is the one an uninterrupted run
gives."""
from __future__ import annotations

import io

import pytest
import torch
import yaml
from optuna.trial import TrialState

from sksearch.config import load_study
from sksearch.search.dryrun import iter_distinct
from sksearch.search.feasibility import sample_feasibility
from sksearch.search.samplers import make_sampler
from sksearch.search.space import SearchSpace
from sksearch.search.trial import stage_state, train_as_trial
from sksearch.search.tune import run_study
from sksearch.storage import records as st
from sksearch.spec import ArchSpec
from sksearch.storage.open import load_or_create_study, open_storage
from tests.tune.helpers import write_study

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # as the 1-CPU trial trains

EPOCHS = 3


def _two_networks(tmp_path):
    """The micro space's base with G 2 or 4 and nothing else searched: two networks."""
    space = tmp_path / "two.yaml"
    space.write_text("base:\n  backbone: resnext_cifar\n  depths: [1, 1, 1]\n  widths: [8, 16, 32]\n"
                     "  out_channels: [16, 32, 64]\n  stem_channels: 8\n"
                     "  sk: {G: 4, r: 8, L: 16, branches: [{kernel: 3}, {kernel: 1}]}\n"
                     "search:\n  sk.G: {choices: [2, 4]}\n")
    return space


def _record(study, cfg, space, params, history, *, state=None):
    """A trial as the driver records it (sampled, its epochs, its end), with its staged state kept when given."""
    study.enqueue_trial(params)
    trial = study.ask()
    feas = sample_feasibility(space, trial, cfg)
    st.set_constraints(trial, feas.constraints)
    st.record_sampled(trial, feas.spec.to_dict(), feas.spec.sk.label(), feas.params, feas.macs, feas.select_macs,
                      EPOCHS)
    st.record_epoch(study._storage, trial._trial_id, epoch=len(history), accuracy=history[-1], history=history)
    if state is not None:
        st.record_paused(trial, cfg, state)
    st.record_end(study, trial, cfg, epochs_done=len(history), max_epochs=EPOCHS, accuracy=history[-1],
                  params=feas.params, macs=feas.macs, error=None)
    return trial


def test_a_paused_trial_is_resumed_and_its_curve_is_the_uninterrupted_one(tmp_path):
    path = write_study(tmp_path, name="pause", n_trials=1, epochs=EPOCHS, concurrent=1,
                       search_space=str(_two_networks(tmp_path)),
                       scheduler={"type": "pareto_asha", "grace_period": 1, "reduction_factor": 3, "pause": True})
    data = yaml.safe_load(path.read_text())
    data["tune"]["sampler"] = {"type": "ehvi", "seed": 0, "n_startup_trials": 1}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_study(path)
    space = SearchSpace.load(cfg.space_path())
    (a, fa), (b, fb) = iter_distinct(cfg, seed=0, space=space, max_draws=200)
    cpu = torch.device("cpu")

    # Network A trained as a trial trains, its state staged at epoch 1 (the rung) as the worker stages it.
    staged = []
    whole = train_as_trial(cfg, fa.spec, seed=cfg.train.seed, epochs=EPOCHS, device=cpu,
                           on_epoch=lambda r: staged.append(stage_state(r, st.staging_dir(cfg) / "a"))
                           if r.epoch == 1 else None)
    curve = [round(e.val_accuracy, 6) for e in whole.history]
    other = train_as_trial(cfg, fb.spec, seed=cfg.train.seed, epochs=EPOCHS, device=cpu)
    study = load_or_create_study(cfg, open_storage(cfg.storage_url()), make_sampler(cfg))
    # The study so far (not counted toward n_trials: no slots): A paused at its rung, B trained in full. Every
    # network is tried, so the one proposal left is resuming A.
    paused = _record(study, cfg, space, a, curve[:1], state=staged[0])
    _record(study, cfg, space, b, [round(e.val_accuracy, 6) for e in other.history])
    assert st.paused_trials(study.get_trials()) and st.paused_state_artifact(study, study.trials[paused.number])

    out = io.StringIO()
    assert run_study(cfg, out=out) == 0
    assert f"resumes trial {paused.number}" in out.getvalue()
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state != TrialState.RUNNING for t in trials)
    continuation = trials[-1]
    assert continuation.user_attrs[st.Key.RESUMES] == paused.number
    assert continuation.user_attrs[st.Key.PROPOSAL]["resumes"] == paused.number
    assert st.status(continuation) == "full" and st.epochs_done(continuation) == EPOCHS
    assert continuation.user_attrs.get(st.Key.SLOT)  # it used the budget's one slot
    # Epochs 2 and 3 trained from the kept state in a Ray worker: the curve an uninterrupted run gives.
    assert continuation.user_attrs[st.Key.ACCURACY_HISTORY] == curve
    assert st.identity(continuation) == fa.spec.identity()
    assert not st.paused_trials(trials)  # taken by its continuation
    assert not list(st.staging_dir(cfg).rglob("*.pt"))  # nothing staged is left behind


def test_the_driver_keeps_the_state_of_a_trial_stopped_at_a_rung_and_drops_the_rest(tmp_path):
    """The searcher as Ray Tune drives it (suggest, a result per epoch, the end): a trial stopped at its rung
    keeps the state its worker staged there; one that trains to the end or fails keeps none."""
    from sksearch.search.searcher import StudySearcher

    path = write_study(tmp_path, name="keep", n_trials=3, epochs=EPOCHS, concurrent=1,
                       scheduler={"type": "pareto_asha", "grace_period": 1, "reduction_factor": 3, "pause": True})
    data = yaml.safe_load(path.read_text())
    data["tune"]["sampler"] = {"type": "ehvi", "seed": 0}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_study(path)
    space = SearchSpace.load(cfg.space_path())
    store = open_storage(cfg.storage_url())
    study = load_or_create_study(cfg, store, make_sampler(cfg))
    searcher = StudySearcher(cfg, space, study, store, n_trials=3)
    try:
        ends = {}
        for tid, stop_after, error in [("stopped", 1, None), ("full", EPOCHS, None), ("failed", 2, "boom")]:
            config = searcher.suggest(tid)
            assert config["pause_at"] == [1] and "resume" not in config
            results = []
            train_as_trial(cfg, ArchSpec.from_dict(config["spec"]), seed=cfg.train.seed, epochs=stop_after,
                           device=torch.device("cpu"),
                           on_epoch=lambda r: results.append(
                               {"accuracy": r.val_accuracy, "epoch": r.epoch,
                                "state": stage_state(r, st.staging_dir(cfg) / tid) if r.epoch == 1 else None}))
            for r in results[:-1]:
                searcher.on_trial_result(tid, r)
            # A crash in epoch 2 reports only its error (the state staged at epoch 1 came with epoch 1's result).
            last = {"error": error, "error_kind": "crash"} if error else results[-1]
            searcher.on_trial_complete(tid, last)
            ends[tid] = config["trial_number"]
    finally:
        searcher.close()
    trials = {t.number: t for t in study.get_trials()}
    stopped, full, failed = (trials[ends[k]] for k in ("stopped", "full", "failed"))
    assert stopped.state == TrialState.PRUNED and stopped.user_attrs.get(st.Key.PAUSED)
    assert st.paused_state_artifact(study, stopped) is not None
    assert full.state == TrialState.COMPLETE and not full.user_attrs.get(st.Key.PAUSED)
    assert failed.state == TrialState.FAIL and not failed.user_attrs.get(st.Key.PAUSED)
    assert [t.number for t in st.paused_trials(study.get_trials())] == [stopped.number]
    assert not list(st.staging_dir(cfg).rglob("*.pt"))
