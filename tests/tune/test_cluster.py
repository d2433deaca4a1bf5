"""A study through a real multi-node Ray cluster: `ray start` head and worker on free ports."""
from __future__ import annotations

import contextlib
import os
import signal
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import yaml
from optuna.trial import TrialState

from tests.ray_nodes import free_port, start_node, stop_node, temp_dir, token_env
from tests.tune.helpers import counted, load, load_if_created, run_cli, wait_for, write_study

# Every process that talks to these clusters carries their token (tests/ray_nodes.py).
TOKEN = token_env()
# A dead node is declared after a few missed health checks: seconds here, not Ray's default half a minute.
FAST_HEALTH = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
               "RAY_health_check_failure_threshold": "3"}
# Trials 0 and 1 wait after their first epoch until the test creates the release file: the node is killed under
# a trial known to be mid-training (sksearch.search.trial.injected_fault).
HOLD = {"SKSEARCH_INJECT_FAULT": "0:hold,1:hold"}
ENV = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **TOKEN, **FAST_HEALTH}


@contextlib.contextmanager
def two_node_cluster(head_cpus: int = 1) -> Iterator[tuple[str, subprocess.Popen]]:
    """A head and a worker node on free ports, one CPU each (the head `head_cpus`): (address, the worker's
    `ray start` process)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    ray_tmp = temp_dir()
    head = worker = None
    try:
        head = start_node(["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", ray_tmp,
                           "--num-cpus", str(head_cpus)], ENV, Path(ray_tmp) / "head.log")
        worker = start_node(["--address", address, "--num-cpus", "1"], ENV, Path(ray_tmp) / "worker.log")
        yield address, worker
    finally:
        for proc in (worker, head):
            stop_node(proc)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_study_runs_on_a_local_two_node_cluster(tmp_path):
    with two_node_cluster() as (address, _):
        path = write_study(tmp_path, n_trials=2, epochs=1, concurrent=2)
        run = run_cli([str(path), "--address", address], env=TOKEN)
        assert run.returncode == 0, run.stdout + run.stderr
        trials = counted(load(path))
        assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
        # One CPU per node and two concurrent trials: each node ran one.
        assert len({t.user_attrs["node"] for t in trials}) == 2, [t.user_attrs.get("node") for t in trials]


def _kill_worker_mid_trial(path: Path, address: str, worker: subprocess.Popen, log: Path, *, nodes: int) -> int:
    """Run the study as a subprocess driver, SIGKILL the worker node's process group (its raylet and its
    workers) once held trials (HOLD) train on `nodes` nodes, release the survivors once the loss is recorded (or
    the driver has ended), and return the driver's exit status."""
    release = path.parent / "release"
    driver = subprocess.Popen([os.sys.executable, "-m", "sksearch.run", str(path), "--address", address],
                              env={**ENV, **HOLD, "SKSEARCH_RELEASE": str(release), "PYTHONUNBUFFERED": "1"},
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        def training_on_enough_nodes():
            if driver.poll() is not None:
                raise AssertionError(f"the driver ended early: {log.read_text()[-3000:]}")
            study = load_if_created(path)
            running = {t.user_attrs.get("node") for t in study.get_trials()
                       if t.state == TrialState.RUNNING and t.user_attrs.get("node")} if study else set()
            return len(running) >= nodes

        wait_for(training_on_enough_nodes, timeout=240, what=f"trials training on {nodes} node(s)")
        os.killpg(worker.pid, signal.SIGKILL)

        def loss_recorded():
            study = load_if_created(path)
            return driver.poll() is not None or study is not None and any(
                t.user_attrs.get("error_kind") == "node_lost" for t in study.get_trials())

        wait_for(loss_recorded, timeout=240, what="the lost trial recorded")
        release.touch()  # the held trial on the head (if any) goes on
        return driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()


def test_a_node_that_dies_mid_trial_costs_its_trial_not_the_study(tmp_path):
    """The worker node is killed (SIGKILL to its raylet and its workers: the process group the test started)
    while both nodes train: its trial is recorded FAIL with error_kind node_lost, not counted toward
    max_failures (0 here), and replaced; the study ends with exactly n_trials on the head node."""
    with two_node_cluster() as (address, worker):
        # Two epochs: the kill lands after the first (a trial's node is recorded with it), while the trial is held.
        path = write_study(tmp_path, n_trials=2, epochs=2, concurrent=2)
        data = yaml.safe_load(path.read_text())
        data["tune"]["max_failures"] = 0  # a lost node is no failure of the trial's
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        log = tmp_path / "driver.log"
        assert _kill_worker_mid_trial(path, address, worker, log, nodes=2) == 0, log.read_text()[-3000:]
        study = load(path)
        lost = [t for t in study.get_trials() if t.state == TrialState.FAIL]
        assert len(lost) == 1 and lost[0].user_attrs["error_kind"] == "node_lost", \
            [(t.number, t.user_attrs.get("error")) for t in lost]
        trials = counted(study)
        assert len(trials) == 2 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        assert "Traceback" not in log.read_text()


def test_when_no_node_left_can_hold_a_trial_one_line_says_so(tmp_path):
    """Only the worker has CPUs (the head has none); it dies mid-trial: no node can hold a trial any more,
    so the run stops with one line and exit 1 instead of Ray waiting for ever; the trial is node_lost."""
    with two_node_cluster(head_cpus=0) as (address, worker):
        path = write_study(tmp_path, n_trials=2, epochs=2, concurrent=1)
        log = tmp_path / "driver.log"
        assert _kill_worker_mid_trial(path, address, worker, log, nodes=1) == 1, log.read_text()[-3000:]
        out = log.read_text()
        stops = [line for line in out.splitlines() if line.startswith("stopped: ")]
        assert len(stops) == 1 and "no node left can hold a trial" in stops[0], out[-3000:]
        assert "Traceback" not in out, out[-3000:]
        lost = [t for t in load(path).get_trials() if t.state == TrialState.FAIL]
        assert [t.user_attrs["error_kind"] for t in lost] == ["node_lost"]
