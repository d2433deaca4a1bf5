"""The fault matrix (issue 11): every step of a trial's life where a driver can die x {one driver, two drivers}
x {SQLite, PostgreSQL}. Real processes and real databases: drivers (tests/tune/ledger_driver.py, the real
Ledger with a sleep for training, each a process forked from a fork server) are killed by SKSEARCH_FAULT at the
step, then rerun. Every cell must end with exactly n_trials trained, nothing RUNNING, no hang (timeouts), and
few discarded claims.

Two-driver cells: the first driver dies at its first visit of the step and the second at its second (so it
lives on beside a dead one's trial for a while), then two healthy drivers rerun concurrently.
"""
from __future__ import annotations

import multiprocessing
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sksearch.storage import records as st
from sksearch.storage.open import load_or_create_study, open_storage
from sksearch.storage.ledger import FAULT_EXIT, FAULT_STEPS

from tests.tune import ledger_driver
from tests.tune.helpers import counted
from tests.tune.ledger_driver import config

N_TRIALS = 3
TIMEOUT = 60  # seconds per phase; a healthy phase takes a few


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/matrix.db"
    else:
        url = request.getfixturevalue("postgres_url")
    name = f"matrix-{uuid.uuid4().hex[:10]}"
    load_or_create_study(config(name), open_storage(url), optuna.samplers.RandomSampler(seed=0))
    yield url, name
    optuna.delete_study(study_name=name, storage=url)


def _fork_server() -> multiprocessing.context.BaseContext:
    """Drivers are forked from a process that has imported tests.tune.ledger_driver (Python's fork server, started
    once per test process): real processes with their own connections, which die at the step like any driver,
    without a second of imports each."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.tune.ledger_driver"])
    return ctx


def _drivers(url: str, name: str, faults: list[str | None], folder: Path) -> list[tuple[int, str]]:
    ctx = _fork_server()
    logs = [folder / f"driver-{uuid.uuid4().hex[:6]}.log" for _ in faults]
    procs = [ctx.Process(target=ledger_driver.forked, args=(url, name, N_TRIALS, fault, str(log)))
             for fault, log in zip(faults, logs)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + TIMEOUT
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    if any(p.exitcode is None for p in procs):
        for p in procs:
            p.kill()
            p.join()
        raise AssertionError(f"a driver hung for {TIMEOUT}s (faults {faults})")
    return [(p.exitcode, log.read_text()) for p, log in zip(procs, logs)]


@pytest.mark.parametrize("drivers", [1, 2])
@pytest.mark.parametrize("step", FAULT_STEPS)
def test_killed_at_step_then_rerun_trains_exactly_n_trials(store, step, drivers, tmp_path):
    url, name = store
    faults = [step] if drivers == 1 else [f"{step}:1", f"{step}:2"]
    first = _drivers(url, name, faults, tmp_path)
    assert first[0][0] == FAULT_EXIT, first[0][1]
    assert all(rc in (0, FAULT_EXIT) for rc, _ in first), first
    rerun = _drivers(url, name, [None] * drivers, tmp_path)
    assert [rc for rc, _ in rerun] == [0] * drivers, rerun

    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials()
    trained = {t.number for t in counted(study)}
    assert len(trained) == N_TRIALS, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert all(t.state == TrialState.COMPLETE and t.user_attrs[st.Key.FULL_FIDELITY]
               for t in trials if t.number in trained)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    discarded = sum(bool(t.user_attrs.get(st.Key.DISCARDED)) for t in trials)
    assert discarded <= N_TRIALS, f"{discarded} discarded claims"
    # The rest: what the killed drivers left behind, failed as interrupted (one per kill at most).
    left = [t for t in trials if t.number not in trained and not t.user_attrs.get(st.Key.DISCARDED)]
    assert len(left) <= drivers and all(t.state == TrialState.FAIL and t.user_attrs[st.Key.INTERRUPTED]
                                        for t in left), [(t.number, t.state.name, t.user_attrs) for t in left]
