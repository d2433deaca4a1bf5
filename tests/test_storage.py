"""The storage contract without Ray: states, budget accounting, --fresh, MySQL/MariaDB, redaction."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from sksearch.storage import records as st
from sksearch.storage.ledger import counts_toward_budget, is_failure
from sksearch.config import StudyConfig, redact_url
from sksearch.errors import UserError

from tests.tune.helpers import MYSQL_URL, reachable


def _cfg(tmp_path, name="s") -> StudyConfig:
    return StudyConfig.model_validate({"name": name, "search_space": "x.yaml", "output_dir": str(tmp_path / name)})


def _fill(study: optuna.Study, cfg: StudyConfig) -> None:
    spec = {"backbone": "resnext_cifar"}
    full = study.ask()
    st.record_sampled(full, spec, "SK[2, 8, 8]", 1000, 5000, 10, 2)
    full.set_user_attr("slot", True)
    st.record_epoch(study._storage, full._trial_id, {"training_iteration": 2, "accuracy": 0.5}, [0.3, 0.5])
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
    big.set_constraint("max_macs", 1.5)
    st.record_sampled(big, spec, "SK[3, 4, 4]", 9000, 90000, 10, 2)
    st.record_infeasible(study, big, cfg, "macs 90K > max_macs 60K", 9000, 90000)


def _check(study: optuna.Study) -> None:
    by_label = {t.user_attrs["label"]: t for t in study.get_trials()}
    full, early = by_label["SK[2, 8, 8]"], by_label["SK[3, 8, 8]"]
    broken, big = by_label["SK[2, 4, 8]"], by_label["SK[3, 4, 4]"]
    assert full.state == TrialState.COMPLETE and full.values == [0.5, 5000.0] and full.user_attrs["full_fidelity"]
    assert early.state == TrialState.PRUNED and early.values is None and not early.user_attrs["full_fidelity"]
    assert broken.state == TrialState.FAIL and broken.user_attrs["error"] == "RuntimeError: boom"
    assert big.state == TrialState.COMPLETE and big.values == [0.0, 90000.0] and big.constraints == {"max_macs": 1.5}
    assert [t.number for t in study.get_trials() if counts_toward_budget(t)] == [0, 1, 2]
    assert [is_failure(t) for t in study.get_trials()] == [False, False, True, False]
    # Optuna's own front (and so optuna-dashboard's) skips the infeasible and the pruned trials.
    assert [t.number for t in study.best_trials] == [full.number]


def test_states_and_budget_on_sqlite(tmp_path):
    cfg = _cfg(tmp_path)
    store = st.open_storage(cfg.storage_url())
    study = st.load_or_create_study(cfg, store, optuna.samplers.RandomSampler(seed=0))
    assert study.metric_names == ["accuracy", "macs"]
    _fill(study, cfg)
    _check(study)


def test_states_and_budget_on_mysql(tmp_path):
    problem = reachable(MYSQL_URL)
    if problem:
        pytest.skip(f"no MySQL/MariaDB at {MYSQL_URL}: {problem}")
    cfg = _cfg(tmp_path, name=f"mysql-{tmp_path.name[-8:]}")
    store = st.open_storage(MYSQL_URL)
    try:
        study = st.load_or_create_study(cfg, store, optuna.samplers.RandomSampler(seed=0))
        _fill(study, cfg)
        _check(study)
    finally:
        optuna.delete_study(study_name=cfg.name, storage=store)


def test_fresh_keeps_the_old_study_under_another_name(tmp_path):
    cfg = _cfg(tmp_path)
    store = st.open_storage(cfg.storage_url())
    study = st.load_or_create_study(cfg, store, optuna.samplers.RandomSampler(seed=0))
    _fill(study, cfg)
    kept = st.archive_study(cfg, store)
    assert kept and kept.startswith("s-")
    assert len(optuna.load_study(study_name=kept, storage=store).trials) == 4
    names = {s.study_name for s in optuna.get_all_study_summaries(store)}
    assert cfg.name not in names
    fresh = st.load_or_create_study(cfg, store, optuna.samplers.RandomSampler(seed=0))
    assert fresh.trials == []


def test_changed_objectives_ask_for_fresh(tmp_path):
    cfg = _cfg(tmp_path)
    store = st.open_storage(cfg.storage_url())
    st.load_or_create_study(cfg, store, optuna.samplers.RandomSampler())
    other = cfg.model_copy(update={"objectives": cfg.objectives[:1]})
    with pytest.raises(UserError, match="--fresh"):
        st.load_or_create_study(other, store, optuna.samplers.RandomSampler())


def test_unreachable_storage_is_a_user_error_without_the_password():
    with pytest.raises(UserError) as info:
        st.open_storage("postgresql+psycopg2://bob:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("url, safe", [
    ("postgresql://u:p%40ss@host:5432/db", "postgresql://u:***@host:5432/db"),
    ("mysql+pymysql://root@127.0.0.1/test", "mysql+pymysql://root@127.0.0.1/test"),
    ("sqlite:///runs/x/optuna.db", "sqlite:///runs/x/optuna.db"),
])
def test_redact_url(url, safe):
    assert redact_url(url) == safe
