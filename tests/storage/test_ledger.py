"""The budget ledger step by step, on a real SQLite storage: the claim race, the stale rules, max_failures per
run. Each Ledger is one driver; the test interleaves them deterministically (no heartbeat thread beats:
interval an hour); a stall longer than the grace period is simulated by moving every heartbeat and start
time of the study back (`_stall`), which is what the clock would have done."""
from __future__ import annotations

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from sksearch.config import StudyConfig
from sksearch.errors import UserError
from sksearch.storage import records as st
from sksearch.storage.open import load_or_create_study, open_storage
from sksearch.storage.ledger import Ledger, counts_toward_budget, fault_plan

GRACE = 5.0


@pytest.fixture
def make(tmp_path):
    cfg = StudyConfig.model_validate({"name": "ledger", "search_space": "x.yaml", "output_dir": str(tmp_path)})
    url = f"sqlite:///{tmp_path}/ledger.db"
    study = load_or_create_study(cfg, open_storage(url), optuna.samplers.RandomSampler(seed=0))
    ledgers = []

    def driver(n_trials: int = 2, **kw) -> Ledger:
        storage = open_storage(url)  # each driver its own connection pool, as separate processes have
        own = optuna.load_study(study_name=cfg.name, storage=storage)
        kw = {"interval": 3600, "grace": GRACE, "backoff": (0, 0), **kw}
        ledgers.append(Ledger(own, storage, n_trials, **kw))
        return ledgers[-1]

    driver.cfg = cfg
    driver.study = study
    driver.url = url
    yield driver
    for ledger in ledgers:
        ledger.close()


def _train(ledger: Ledger, trial: optuna.Trial, cfg: StudyConfig, error: str | None = None) -> None:
    with ledger.progress(trial._trial_id):
        st.record_epoch(ledger.storage, trial._trial_id, epoch=1, accuracy=0.5, history=[0.5])
    with ledger.finish(trial._trial_id):
        st.record_end(ledger.study, trial, cfg, epochs_done=1, max_epochs=1, accuracy=0.5, params=10, macs=20,
                      error=error)


def _stall(make, seconds: float = 2 * GRACE) -> None:
    """Nobody beat for `seconds`: every heartbeat and start of the study moves that far into the past."""
    engine = sqlalchemy.create_engine(make.url)
    with engine.begin() as conn:
        for table, column in (("trial_heartbeats", "heartbeat"), ("trials", "datetime_start")):
            conn.execute(sqlalchemy.text(f"UPDATE {table} SET {column} = datetime({column}, '-{int(seconds)} seconds')"))
    engine.dispose()


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    return next(t for t in study.get_trials() if t.number == number)


@pytest.mark.parametrize("first", ["lower", "higher"])
def test_claim_race_gives_the_last_slot_to_the_lower_number_and_the_loser_discards(make, first):
    a, b = make(n_trials=2), make(n_trials=2)
    t0 = a.ask()
    assert a.claim(t0)
    _train(a, t0, make.cfg)
    # Both drivers count one free slot, both ask, then both claim (in either order).
    assert a.state().free == 1 and b.state().free == 1
    ta, tb = a.ask(), b.ask()
    assert ta.number < tb.number
    if first == "lower":
        won_a, won_b = a.claim(ta), b.claim(tb)
    else:
        won_b, won_a = b.claim(tb), a.claim(ta)
    assert (won_a, won_b) == (True, False)
    lost = _trial(make.study, tb.number)
    assert lost.state == TrialState.FAIL and lost.user_attrs[st.Key.DISCARDED] and not counts_toward_budget(lost)
    assert b.discarded == 1 and b.held() == []
    # The loser neither claims again nor finishes while the winner trains; then both are done. No deadlock.
    budget = b.state()
    assert budget.free == 0 and budget.others_running
    _train(a, ta, make.cfg)
    assert b.state().free == 0 and not b.state().others_running
    assert [t.number for t in make.study.get_trials() if counts_toward_budget(t)] == [t0.number, ta.number]


def test_an_undecided_trial_of_another_driver_blocks_a_claim_instead_of_costing_a_discard(make):
    a, b = make(n_trials=1), make(n_trials=1)
    a.ask()  # a is sampling: no verdict yet
    budget = b.state()
    assert (budget.used, budget.undecided, budget.free, budget.others_running) == (0, 1, 0, True)


def test_trial_without_heartbeat_row_goes_stale_after_grace_and_is_replaced(make):
    ledger = make(n_trials=2)
    dead = make.study.ask()  # a driver killed between study.ask() and its first heartbeat
    assert ledger.state().undecided == 1  # not yet older than the grace period: maybe just sampling
    _stall(make)
    optuna.storages.fail_stale_trials(make.study)  # Optuna's own check never fails it (issue 11, point 1)
    assert _trial(make.study, dead.number).state == TrialState.RUNNING
    budget = ledger.state()
    assert (budget.used, budget.undecided, budget.free, budget.others_running) == (0, 0, 2, False)
    gone = _trial(make.study, dead.number)
    assert gone.state == TrialState.FAIL and gone.user_attrs[st.Key.INTERRUPTED]
    assert ledger.replaced == [dead.number]
    for _ in range(2):
        trial = ledger.ask()
        assert ledger.claim(trial)
        _train(ledger, trial, make.cfg)
    assert ledger.state().free == 0
    assert not make.study.get_trials(states=(TrialState.RUNNING,))


def test_claimed_trial_whose_heartbeats_stop_is_failed_by_another_driver_and_replaced(make):
    dead, alive = make(n_trials=1), make(n_trials=1)
    trial = dead.ask()
    assert dead.claim(trial)
    assert alive.state().free == 0
    _stall(make)
    assert alive.state().free == 1 and alive.replaced == [trial.number]


def test_own_live_trials_are_never_failed_after_a_stall_longer_than_grace(make):
    ledger = make(n_trials=1)
    trial = ledger.ask()
    assert ledger.claim(trial)
    _stall(make)  # no beat for longer than the grace period: a suspended laptop
    budget = ledger.state()
    assert _trial(make.study, trial.number).state == TrialState.RUNNING
    assert ledger.replaced == [] and budget.used == 1 and not budget.others_running
    _train(ledger, trial, make.cfg)
    assert _trial(make.study, trial.number).state == TrialState.COMPLETE


@pytest.mark.parametrize("write", ["claim", "epoch", "tell"])
def test_driver_whose_trial_another_failed_logs_one_line_and_goes_on(make, write):
    lines: list[str] = []
    stalled, other = make(n_trials=2, log=lines.append), make(n_trials=2)
    trial = stalled.ask()
    if write != "claim":
        assert stalled.claim(trial)
    _stall(make)
    assert other.state().free == 2  # it failed the stalled driver's trial
    if write == "claim":  # it stalled while sampling
        lost = not stalled.claim(trial)
    elif write == "epoch":
        with stalled.progress(trial._trial_id) as w:
            st.record_epoch(stalled.storage, trial._trial_id, epoch=1, accuracy=0.5, history=[0.5])
        lost = w.lost
    else:
        with stalled.finish(trial._trial_id) as w:
            st.record_end(stalled.study, trial, make.cfg, epochs_done=1, max_epochs=1, accuracy=0.5, params=10,
                          macs=20, error=None)
        lost = w.lost
    assert lost and stalled.held() == []
    assert len(lines) == 1 and f"trial {trial.number}:" in lines[0] and "stalled" in lines[0]
    # ... and goes on: its next trial is claimed and trained as usual.
    nxt = stalled.ask()
    assert stalled.claim(nxt)
    _train(stalled, nxt, make.cfg)
    assert _trial(make.study, nxt.number).state == TrialState.COMPLETE and len(lines) == 1


def test_max_failures_counts_this_runs_failures_only(make):
    old = make(n_trials=10)
    for _ in range(2):
        trial = old.ask()
        assert old.claim(trial)
        _train(old, trial, make.cfg, error="RuntimeError: boom")
    assert old.state().failures == 2
    oom = "torch.OutOfMemoryError: CUDA out of memory"
    rerun = make(n_trials=10, not_a_failure=lambda t: "out of memory" in t.user_attrs.get(st.Key.ERROR, ""))
    assert rerun.state().failures == 0  # a rerun starts from zero
    for error in ("RuntimeError: boom", oom):
        trial = rerun.ask()
        assert rerun.claim(trial)
        _train(rerun, trial, make.cfg, error=error)
    assert rerun.state().failures == 1  # the exclusion hook leaves the OOM out
    assert rerun.state().used == 4  # failures still use their slots


def test_close_fails_this_drivers_leftovers_at_once(make):
    ledger, other = make(n_trials=1), make(n_trials=1)
    trial = ledger.ask()
    assert ledger.claim(trial)
    ledger.close()
    left = _trial(make.study, trial.number)
    assert left.state == TrialState.FAIL and left.user_attrs[st.Key.INTERRUPTED]
    assert other.state().free == 1


def test_fault_hook_rejects_an_unknown_step(monkeypatch):
    monkeypatch.setenv("SKSEARCH_FAULT", "after_ask:2,mid_training")
    assert fault_plan() == {"after_ask": 2, "mid_training": 1}
    monkeypatch.setenv("SKSEARCH_FAULT", "after_tel")
    with pytest.raises(UserError, match="SKSEARCH_FAULT.*after_tel"):
        fault_plan()


def test_a_seed_confirmation_is_no_slot_and_does_not_block_other_drivers(make):
    # `run --confirm`: retraining a counted trial with another seed uses no slot, running or done, and is
    # no undecided claim that would hold another driver's last slot.
    a, b = make(n_trials=2), make(n_trials=2)
    original = a.ask()
    assert a.claim(original)
    _train(a, original, make.cfg)
    confirming = a.ask()
    st.record_confirmation(confirming, _trial(make.study, original.number), 1, a.run_id, 1)
    budget = b.state()
    assert (budget.used, budget.undecided, budget.free) == (1, 0, 1)
    _train(a, confirming, make.cfg)
    done = _trial(make.study, confirming.number)
    assert st.status(done) == "confirmation" and not counts_toward_budget(done)
    assert b.state().used == 1 and [t.number for t in make.study.best_trials] == [original.number]
    tb = b.ask()
    assert b.claim(tb)  # the last slot is still free



@pytest.mark.postgres
def test_heartbeats_that_cannot_be_written_are_said_once_and_their_return_once(postgres_url):
    # A database that refuses writes (made read-only, its sessions cut; a failover looks the same): the
    # heartbeat thread keeps retrying and says so once, then once more when beats are written again.
    import time
    import uuid

    url = sqlalchemy.engine.make_url(postgres_url)
    cfg = StudyConfig.model_validate({"name": f"beats-{uuid.uuid4().hex[:8]}", "search_space": "x.yaml",
                                      "output_dir": "unused"})
    storage = open_storage(postgres_url)
    study = load_or_create_study(cfg, storage, optuna.samplers.RandomSampler(seed=0))
    lines: list[str] = []
    ledger = Ledger(study, storage, 1, interval=0.2, grace=GRACE, backoff=(0, 0), log=lines.append)
    admin = sqlalchemy.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")

    def set_read_only(on: bool) -> None:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'ALTER DATABASE "{url.database}" SET default_transaction_read_only = '
                                         f'{"on" if on else "off"}'))
            conn.execute(sqlalchemy.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": url.database})

    def wait_for_line(text: str) -> None:
        deadline = time.monotonic() + 60
        while not any(text in line for line in lines):
            assert time.monotonic() < deadline, (text, lines)
            time.sleep(0.1)

    try:
        trial = ledger.ask()
        assert ledger.claim(trial)
        set_read_only(True)
        try:
            wait_for_line("heartbeats cannot be written")
        finally:
            set_read_only(False)
        wait_for_line("heartbeats are written again")
    finally:
        ledger.close()
        admin.dispose()
    assert sum("cannot be written" in line for line in lines) == 1
