"""The storage contract without Ray: the record writers, states, budget accounting, the read view,
MySQL/MariaDB."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from sksearch.config import StudyConfig
from sksearch.errors import UserError
from sksearch.storage import records as st
from sksearch.storage.ledger import counts_toward_budget, is_failure
from sksearch.storage.open import load_or_create_study, open_storage


def _cfg(tmp_path, name="s") -> StudyConfig:
    return StudyConfig.model_validate({"name": name, "search_space": "x.yaml", "output_dir": str(tmp_path / name)})


def _fill(study: optuna.Study, cfg: StudyConfig) -> None:
    spec = {"backbone": "resnext_cifar"}
    full = study.ask()
    st.record_sampled(full, spec, "SK[2, 8, 8]", 1000, 5000, 10, 2)
    full.set_user_attr("slot", True)
    st.set_constraints(full, {"max_macs": -0.5})
    st.record_epoch(study._storage, full._trial_id, epoch=2, accuracy=0.5, history=[0.3, 0.5])
    assert st.record_end(study, full, cfg, epochs_done=2, max_epochs=2, accuracy=0.5, params=1000, macs=5000,
                         error=None) == TrialState.COMPLETE
    early = study.ask()
    st.record_sampled(early, spec, "SK[3, 8, 8]", 2000, 9000, 10, 2)
    early.set_user_attr("slot", True)
    assert st.record_end(study, early, cfg, epochs_done=1, max_epochs=2, accuracy=0.4, params=2000, macs=9000,
                         error=None) == TrialState.PRUNED
    broken = study.ask()
    st.record_sampled(broken, spec, "SK[2, 4, 8]", 1500, 7000, 10, 2)
    broken.set_user_attr("slot", True)
    assert st.record_end(study, broken, cfg, epochs_done=0, max_epochs=2, accuracy=None, params=1500, macs=7000,
                         error="Traceback...\nRuntimeError: boom") == TrialState.FAIL
    big = study.ask()
    st.set_constraints(big, {"max_macs": 1.5})
    st.record_sampled(big, spec, "SK[3, 4, 4]", 9000, 90000, 10, 2)
    st.record_infeasible(study, big, cfg, "macs 90K > max_macs 60K", 9000, 90000)


def _check(study: optuna.Study) -> None:
    by_label = {t.user_attrs["label"]: t for t in study.get_trials()}
    full, early = by_label["SK[2, 8, 8]"], by_label["SK[3, 8, 8]"]
    broken, big = by_label["SK[2, 4, 8]"], by_label["SK[3, 4, 4]"]
    assert full.state == TrialState.COMPLETE and full.values == [0.5, 5000.0] and full.user_attrs["full_fidelity"]
    assert early.state == TrialState.PRUNED and early.values is None and not early.user_attrs["full_fidelity"]
    assert broken.state == TrialState.FAIL and broken.user_attrs["error"] == "RuntimeError: boom"
    assert big.state == TrialState.COMPLETE and big.values == [0.0, 90000.0]
    assert big.constraints == {"max_macs": 1.5, st.REPEAT_CONSTRAINT: 0.0}
    assert [t.number for t in study.get_trials() if counts_toward_budget(t)] == [0, 1, 2]
    assert [is_failure(t) for t in study.get_trials()] == [False, False, True, False]
    # Optuna's own front (and so optuna-dashboard's) skips the infeasible and the pruned trials.
    assert [t.number for t in study.best_trials] == [full.number]
    # The read view: one status, one explanation, accuracy by metric name, one front row.
    assert [st.status(t) for t in (full, early, broken, big)] == ["full", "pruned", "failed", "infeasible"]
    assert st.explain(early).startswith("pruned after 0 of 2 epochs") and "boom" in st.explain(broken)
    assert st.accuracy(full, ["macs", "accuracy"]) == 5000.0  # by name: the position the names give
    assert st.accuracy(full, ["accuracy", "macs"]) == 0.5 and st.accuracy(big) == 0.0
    assert st.front_row(full, ["accuracy", "macs"])["trial"] == full.number


def test_states_and_budget_on_sqlite(tmp_path):
    cfg = _cfg(tmp_path)
    store = open_storage(cfg.storage_url())
    study = load_or_create_study(cfg, store, optuna.samplers.RandomSampler(seed=0))
    assert study.metric_names == ["accuracy", "macs"]
    _fill(study, cfg)
    _check(study)


def test_states_and_budget_on_mysql(tmp_path, mysql_url):
    cfg = _cfg(tmp_path, name=f"mysql-{tmp_path.name[-8:]}")
    store = open_storage(mysql_url)
    try:
        study = load_or_create_study(cfg, store, optuna.samplers.RandomSampler(seed=0))
        _fill(study, cfg)
        _check(study)
    finally:
        optuna.delete_study(study_name=cfg.name, storage=store)


def test_a_repeated_spec_stays_off_optunas_front(tmp_path):
    cfg = _cfg(tmp_path)
    study = load_or_create_study(cfg, open_storage(cfg.storage_url()), optuna.samplers.RandomSampler(seed=0))
    first = study.ask()
    st.set_constraints(first, {"max_macs": -0.5})
    st.record_sampled(first, {"backbone": "x"}, "SK", 10, 100, 1, 1)
    st.record_epoch(study._storage, first._trial_id, epoch=1, accuracy=0.7, history=[0.7])
    st.record_end(study, first, cfg, epochs_done=1, max_epochs=1, accuracy=0.7, params=10, macs=100, error=None)
    copy = study.ask()
    st.set_constraints(copy, {"max_macs": -0.5}, repeated=True)
    st.record_sampled(copy, {"backbone": "x"}, "SK", 10, 100, 1, 1)
    st.record_duplicate(study, copy, study.trials[0])
    copy = study.trials[1]
    assert copy.state == TrialState.COMPLETE and copy.values == [0.7, 100.0]  # samplers learn its values
    assert st.status(copy) == "duplicate" and [t.number for t in study.best_trials] == [0]


def test_a_failure_records_its_kind_and_only_oom_is_not_a_failure(tmp_path):
    cfg = _cfg(tmp_path)
    study = optuna.create_study(directions=["maximize", "minimize"])
    kinds = {}
    for kind in ("oom", "crash", None):
        trial = study.ask()
        state = st.record_end(study, trial, cfg, epochs_done=1, max_epochs=2, accuracy=0.5, params=1, macs=1,
                              error="RuntimeError: boom", error_kind=kind)
        assert state == TrialState.FAIL
        kinds[kind] = study.trials[-1]
    assert kinds["oom"].user_attrs[st.Key.ERROR_KIND] == "oom" and st.is_oom(kinds["oom"])
    assert kinds["crash"].user_attrs[st.Key.ERROR_KIND] == kinds[None].user_attrs[st.Key.ERROR_KIND] == "crash"
    assert not st.is_oom(kinds["crash"]) and not st.is_oom(kinds[None])
    assert all(is_failure(t) for t in kinds.values())  # FAIL for the ledger; the searcher's hook spares oom


def test_kept_weights_are_the_trials_artifact_and_a_missing_staged_file_records_nothing(tmp_path):
    cfg = _cfg(tmp_path, "kept")
    study = load_or_create_study(cfg, open_storage(cfg.storage_url()), optuna.samplers.RandomSampler(seed=0))
    kept, lost = study.ask(), study.ask()
    staged = st.staging_dir(cfg) / "run-0" / st.WEIGHTS_FILE
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"state dict")
    artifact = st.record_weights(kept, cfg, staged)
    assert not staged.parent.exists()  # the staged file and its folder are gone once kept
    with pytest.raises(FileNotFoundError):  # e.g. staged on a worker node the driver does not share a disk with
        st.record_weights(lost, cfg, st.staging_dir(cfg) / "elsewhere" / st.WEIGHTS_FILE)
    for t in (kept, lost):
        study.tell(t, state=TrialState.PRUNED)
    by_number = {t.number: t for t in study.get_trials()}
    assert st.weights_artifact(study, by_number[kept.number]) == artifact
    assert st.weights_artifact(study, by_number[lost.number]) is None
    assert st.download_weights(cfg, artifact, tmp_path / "w.pt").read_bytes() == b"state dict"
    with pytest.raises(FileExistsError):
        st.download_weights(cfg, artifact, tmp_path / "w.pt")
    with pytest.raises(UserError) as err:
        st.require_weights(study, by_number[lost.number], key="--weights")
    assert f"trials that kept weights: #{kept.number}" in str(err.value)


def test_an_invalid_spec_is_fail_without_values_and_an_over_budget_one_complete_at_accuracy_0(tmp_path):
    # The docs' sentence on budgets (search-spaces.md): over budget -> COMPLETE, accuracy 0, constraint > 0;
    # a spec too broken to count -> FAIL with no values; both carry the reason and use no budget.
    cfg = _cfg(tmp_path)
    study = load_or_create_study(cfg, open_storage(cfg.storage_url()), optuna.samplers.RandomSampler(seed=0))
    invalid = study.ask()
    st.set_constraints(invalid, {"valid": 1.0})
    st.record_sampled(invalid, {}, "invalid", None, None, None, 2)
    st.record_infeasible(study, invalid, cfg, "sk.G: 48 groups do not divide the SK width 64", None, None)
    over = study.ask()
    st.set_constraints(over, {"max_macs": 0.5})
    st.record_sampled(over, {"backbone": "resnext_cifar"}, "SK[3, 4, 4]", 9000, 90000, 10, 2)
    st.record_infeasible(study, over, cfg, "macs 90K > max_macs 60K", 9000, 90000)
    invalid_t, over_t = study.get_trials()
    assert invalid_t.state == TrialState.FAIL and invalid_t.values is None
    assert over_t.state == TrialState.COMPLETE and over_t.values == [0.0, 90000.0] and over_t.constraints["max_macs"] > 0
    assert [st.status(t) for t in (invalid_t, over_t)] == ["infeasible", "infeasible"]
    assert "groups do not divide" in invalid_t.user_attrs["infeasible"]
    assert not any(counts_toward_budget(t) or is_failure(t) for t in (invalid_t, over_t))


def test_clear_staging_removes_what_trials_that_no_longer_run_left_and_keeps_running_ones(tmp_path):
    # A driver killed between a worker's staging and its trial's end leaves the staged files; a rerun removes
    # them, but never the folder of a trial still RUNNING (another driver's, on a shared store).
    cfg = _cfg(tmp_path, name="s")
    study = optuna.create_study(storage=open_storage(cfg.storage_url()), study_name="s")
    running, ended = study.ask(), study.ask()
    study.tell(ended, state=TrialState.FAIL)
    kept = [st.staging_folder(cfg, running.number), st.staging_folder(cfg, running.number, resumes=ended.number)]
    gone = [st.staging_folder(cfg, ended.number), st.staging_folder(cfg, ended.number, resumes=running.number)]
    other = [st.staging_dir(cfg) / "s-1-x-0123abcd", st.staging_dir(cfg) / f"s-{ended.number}-1-0123abcd"]
    for folder in kept + gone + other:
        folder.mkdir(parents=True)
        (folder / st.STATE_FILE).write_bytes(b"state")
    assert st.clear_staging(study, cfg) == 2
    assert all(f.is_dir() for f in kept + other) and not any(f.exists() for f in gone)
    assert st.clear_staging(study, cfg) == 0


def test_two_continuations_of_one_paused_trial_at_once_at_most_one_goes_on(tmp_path):
    # Two drivers choose the same paused trial at the same moment: each claims it, then looks for another claim
    # and withdraws if it finds one. Whatever the interleaving, at most one continuation stays.
    cfg = _cfg(tmp_path, name="s")
    study = optuna.create_study(storage=open_storage(cfg.storage_url()), study_name="s")
    paused = study.ask()
    st.mark_paused(paused)
    study.tell(paused, state=TrialState.PRUNED)
    frozen = study.trials[paused.number]
    assert st.paused_trials(study.get_trials()) == [frozen]
    a, b = study.ask(), study.ask()
    st.claim_continuation(a, frozen)
    st.claim_continuation(b, frozen)  # both claimed before either looked
    rivals_a = st.rival_continuations(study.get_trials(), a.number, paused.number)
    rivals_b = st.rival_continuations(study.get_trials(), b.number, paused.number)
    assert rivals_a == [b.number] and rivals_b == [a.number]
    st.withdraw_continuation(a)
    st.withdraw_continuation(b)
    # Both stepped back: the paused trial is free for a later proposal, and neither counts as its continuation.
    assert st.paused_trials(study.get_trials()) == [frozen] and st.continued_trials(study.get_trials()) == set()
    c, d = study.ask(), study.ask()
    st.claim_continuation(c, frozen)
    assert st.rival_continuations(study.get_trials(), c.number, paused.number) == []  # c looked first: it goes on
    st.claim_continuation(d, frozen)
    assert st.rival_continuations(study.get_trials(), d.number, paused.number) == [c.number]
    st.withdraw_continuation(d)
    assert st.paused_trials(study.get_trials()) == [] and st.continued_trials(study.get_trials()) == {paused.number}
