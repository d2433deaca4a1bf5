"""Nothing is lost: a driver killed mid-study resumes to exactly its budget; crashes are recorded FAIL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from sksearch.config import load_study
from sksearch.storage import records
from sksearch.storage.ledger import FAULT_EXIT

from tests.ray_nodes import use_local_ray
from tests.tune.helpers import REPO, counted, load, load_if_created, run_cli, wait_for, write_study


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # nothing left in the group (and no masking of the test's own failure)
        pass


def _finished(study) -> list:
    return [t for t in counted(study) if t.state != TrialState.RUNNING]


def test_sigkilled_driver_resumes_to_exactly_n_trials(tmp_path):
    path = write_study(tmp_path, n_trials=5, epochs=2, concurrent=2)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SKSEARCH_HEARTBEAT": "1"}
    log = open(tmp_path / "first.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "sksearch.run", str(path)], cwd=REPO, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def still_running() -> None:
        assert driver.poll() is None, (tmp_path / "first.log").read_text()

    try:
        wait_for(lambda: (study := load_if_created(path)) is not None and len(_finished(study)) >= 2,
                 timeout=240, what="two trials finished", alive=still_running)
    finally:
        _kill_group(driver.pid)  # the driver and the Ray it started, without warning
        driver.wait()
    before = {t.number: (t.state, t.values) for t in _finished(load(path))}
    assert 2 <= len(before) < 5
    # What a worker of a killed trial staged (weights, a paused state) is left behind; the rerun removes it.
    killed = next(t.number for t in load(path).get_trials() if t.state == TrialState.RUNNING)
    leftover = records.staging_folder(load_study(path), killed)
    leftover.mkdir(parents=True)
    (leftover / records.WEIGHTS_FILE).write_bytes(b"weights")

    rerun = run_cli([str(path)], env={"SKSEARCH_HEARTBEAT": "1"})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resuming" in rerun.stdout
    assert not leftover.exists() and "staging folder(s) of trials that no longer run" in rerun.stdout
    study = load(path)
    trials = counted(study)
    assert len(trials) == 5 and all(t.state != TrialState.RUNNING for t in trials)
    after = {t.number: (t.state, t.values) for t in trials}
    assert all(after[n] == v for n, v in before.items()), "every trial finished before the kill is kept as it was"
    assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]


def test_crashed_process_and_nan_are_failures_and_max_failures_stops_the_study(tmp_path, monkeypatch):
    # A local Ray of the driver's own, as a user's first run (the other tests join the suite's shared head).
    # Trial 0's process dies outright (as an OOM kill would); trial 1 diverges; max_failures 1 then stops.
    path = write_study(tmp_path, n_trials=6, epochs=1, concurrent=1)
    path.write_text(path.read_text().replace("max_failures: 3", "max_failures: 1"))
    shared = {k: os.environ[k] for k in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN") if k in os.environ}
    use_local_ray(monkeypatch)
    run = run_cli([str(path)], env={"SKSEARCH_INJECT_FAULT": "0:exit,1:nan"})
    assert run.returncode == 1, run.stdout + run.stderr
    # The study stops when failures EXCEED max_failures: trial 0's failure alone (1 of 1) did not stop it.
    assert "2 trials failed in this run (tune.max_failures is 1)" in run.stderr and "Traceback" not in run.stderr
    study = load(path)
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[0].state == TrialState.FAIL and by_number[0].user_attrs["error"]
    assert by_number[1].state == TrialState.FAIL and "nan" in by_number[1].user_attrs["error"].lower()
    assert len(counted(study)) == 2  # it stopped instead of training the rest
    # max_failures applies to the current run: a rerun starts from zero instead of stopping at once (on the
    # suite's shared head where there is one: what it checks is not where Ray runs).
    rerun = run_cli([str(path), "--n-trials", "3"], env=shared)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(counted(load(path))) == 3


@pytest.mark.parametrize("db, step", [("sqlite", "after_ask"), ("postgres", "mid_training")])
def test_sksearch_run_killed_at_a_step_then_rerun_trains_exactly_n_trials(tmp_path, request, db, step):
    # after_ask leaves a RUNNING trial without a heartbeat row: it used to hang every later driver.
    url = request.getfixturevalue("postgres_url") if db == "postgres" else None
    path = write_study(tmp_path, n_trials=2, epochs=1, concurrent=1, storage=url)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SKSEARCH_HEARTBEAT": "1", "SKSEARCH_FAULT": step}
    try:
        first = subprocess.Popen([sys.executable, "-m", "sksearch.run", str(path)], cwd=REPO, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            log = first.communicate(timeout=240)[0]
        finally:
            _kill_group(first.pid)  # the Ray processes the dead driver left behind
        assert first.returncode == FAULT_EXIT, log
        assert f"killing the driver at {step}" in log
        rerun = run_cli([str(path)], env={"SKSEARCH_HEARTBEAT": "1"}, timeout=240)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        study = load(path)
        trials = counted(study)
        assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
        assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    finally:
        if url:
            optuna.delete_study(study_name=load(path).study_name, storage=url)


def test_sigterm_ends_a_run_like_ctrl_c_with_143_and_a_rerun_trains_the_rest(tmp_path):
    # What SLURM, Kubernetes and systemd send before they kill: one line, this run's trials recorded as
    # interrupted, Ray shut down (no native stack dump), exit 143; a rerun trains exactly the rest.
    path = write_study(tmp_path, n_trials=3, epochs=2, concurrent=2)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "sksearch.run", str(path)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def training() -> bool:  # a trial has reported an epoch and is still RUNNING
        study = load_if_created(path)
        return study is not None and any(t.state == TrialState.RUNNING and t.user_attrs.get("epochs_done")
                                          for t in study.get_trials())

    try:
        wait_for(training, timeout=240, what="a trial mid-training",
                 alive=lambda: driver.poll() is None or pytest.fail(driver.communicate()[1]))
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=120)
    finally:
        _kill_group(driver.pid)
    assert driver.returncode == 143, err
    assert err.count("terminated (SIGTERM)") == 1 and "SIGTERM received" not in err and "Traceback" not in err, err
    study = load(path)
    assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    assert any(t.state == TrialState.FAIL and "error" not in t.user_attrs for t in study.get_trials())  # interrupted
    rerun = run_cli([str(path)])
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(counted(load(path))) == 3
