"""A database that goes away mid-study (issue 19): a PostgreSQL server this test starts itself (initdb in a
temporary folder, a free port, trust auth; never the machine's own server), stopped while trials train and
started again. Real Ray, real Optuna, real PostgreSQL."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sksearch.storage import records
from tests.tune.helpers import REPO, counted, load, load_if_created, wait_for, write_study

PG_BIN = Path("/usr/lib/postgresql/15/bin")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (PG_BIN / "initdb").exists() or shutil.which("su") is None or os.geteuid() != 0,
                                 reason="needs PostgreSQL's initdb/pg_ctl and root to run them as postgres")]


class OwnPostgres:
    """A throwaway PostgreSQL server owned by this test."""

    def __init__(self, folder: Path):
        self.data = folder / "pgdata"
        shutil.chown(folder, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._as_postgres(f"{PG_BIN}/initdb -D {self.data} -A trust -U postgres --no-sync")
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, command: str) -> None:
        subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", command], check=True, capture_output=True,
                       timeout=120)

    def start(self) -> None:
        self._as_postgres(f"{PG_BIN}/pg_ctl -D {self.data} -w -l {self.data}/log "
                          f"-o \"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off\" start")

    def stop(self) -> None:
        self._as_postgres(f"{PG_BIN}/pg_ctl -D {self.data} -w -m fast stop")


@pytest.fixture
def own_postgres():
    # Not under tmp_path: pytest's folder is root's alone (0700), and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="sksearch-pg-"))
    server = OwnPostgres(folder)
    server.start()
    yield server
    try:
        server.stop()
    except subprocess.CalledProcessError:
        pass  # already stopped by the test
    shutil.rmtree(folder, ignore_errors=True)


def test_the_retrying_storage_waits_for_a_restarted_server_and_says_so(own_postgres):
    from sksearch.storage.open import open_storage

    lines: list[str] = []
    storage = open_storage(own_postgres.url, retry_seconds=60)
    storage._log = lines.append
    assert storage.get_all_studies() == [] and storage.connected_for() == float("inf")
    own_postgres.stop()
    result: list = []
    reader = threading.Thread(target=lambda: result.append(storage.get_all_studies()))
    reader.start()
    wait_for(lambda: lines, timeout=30, what="the outage line")
    assert reader.is_alive() and "is not answering" in lines[0] and "retrying for up to 60 s" in lines[0]
    own_postgres.start()
    reader.join(timeout=60)
    assert result == [[]], "the call returned once the server was back"
    assert len(lines) == 2 and "is back after" in lines[1]
    assert storage.connected_for() < 60


def test_the_ledgers_heartbeat_query_waits_for_a_restarted_server_too(own_postgres):
    """The stale-trial check reads heartbeats with a query of its own (outside Optuna's storage API): a server
    that goes away between Optuna's calls and that one is waited for, not a crash (a driver once died so)."""
    import optuna

    from sksearch.storage.ledger import stale_trials
    from sksearch.storage.open import open_storage

    lines: list[str] = []
    storage = open_storage(own_postgres.url, retry_seconds=60)
    storage._log = lines.append
    study = optuna.create_study(storage=storage)
    study.ask()
    running = study.get_trials(deepcopy=False)
    own_postgres.stop()
    result: list = []
    reader = threading.Thread(target=lambda: result.append(stale_trials(storage, running, grace=3600)))
    reader.start()
    wait_for(lambda: lines, timeout=30, what="the outage line")
    assert reader.is_alive() and "is not answering" in lines[0]
    own_postgres.start()
    reader.join(timeout=60)
    assert result == [[]], "the query returned once the server was back (the trial started just now: not stale)"
    assert "is back after" in lines[-1]


def test_an_outage_longer_than_the_window_is_one_line_and_exit_1(own_postgres):
    from sksearch.errors import StorageUnavailable
    from sksearch.storage.open import open_storage

    storage = open_storage(own_postgres.url, retry_seconds=1)
    storage._log = lambda line: None
    own_postgres.stop()
    with pytest.raises(StorageUnavailable) as info:
        storage.get_all_studies()
    text = str(info.value)
    assert f"127.0.0.1:{own_postgres.port}" in text and "has not answered for 1 s" in text
    assert "\n" not in text


def _driver(path: Path, log: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SKSEARCH_HEARTBEAT": "1", **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "sksearch.run", str(path)], cwd=REPO, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("drivers", [1, 2])
def test_a_study_rides_out_a_database_restart(tmp_path, own_postgres, drivers):
    """Stopped for longer than the heartbeat grace period (4 s here) while trials train, then started again:
    every driver waits, goes on, and the study ends with exactly n_trials, nothing RUNNING, no trial failed
    for the outage, no traceback."""
    # One driver: two trials in flight through the outage. Two drivers: one each (what matters there is that
    # neither fails the other's trials as stale).
    path = write_study(tmp_path, n_trials=3, epochs=2, concurrent=3 - drivers,
                       storage={"url": own_postgres.url, "retry_seconds": 120})
    logs = [tmp_path / f"driver{i}.log" for i in range(drivers)]
    procs = [_driver(path, log) for log in logs]
    try:
        wait_for(lambda: (s := load_if_created(path)) is not None
                 and any(records.epochs_done(t) >= 1 for t in s.get_trials()),
                 timeout=240, what="an epoch recorded", alive=lambda: _alive(procs, logs))
        own_postgres.stop()
        down = time.monotonic()
        wait_for(lambda: all("is not answering" in log.read_text() for log in logs), timeout=60,
                 what="every driver noticing the outage", alive=lambda: _alive(procs, logs))
        # The fault's length, not a wait for an event: beyond the 4 s grace, so every heartbeat is stale.
        time.sleep(max(0.0, down + 8 - time.monotonic()))
        own_postgres.start()
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outputs = [log.read_text() for log in logs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
        assert "Traceback" not in out and "is back after" in out, out[-3000:]
    study = load(path)
    trials = study.get_trials()
    assert len(counted(study)) == 3
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t.number for t in trials if t.user_attrs.get(records.Key.INTERRUPTED)]
    assert not interrupted, f"failed for the outage: {interrupted}\n" + "\n---\n".join(o[-2500:] for o in outputs)


def _alive(procs: list[subprocess.Popen], logs: list[Path]) -> None:
    for p, log in zip(procs, logs):
        if p.poll() is not None:
            raise AssertionError(f"a driver ended early ({p.returncode}): {log.read_text()[-3000:]}")


def test_an_outage_longer_than_the_window_ends_the_run_and_a_rerun_resumes_exactly(tmp_path, own_postgres):
    # One trial at a time: what is checked is the run's end and the rerun, not trials side by side.
    path = write_study(tmp_path, n_trials=3, epochs=2, concurrent=1,
                       storage={"url": own_postgres.url, "retry_seconds": 3})
    log = tmp_path / "driver.log"
    proc = _driver(path, log)
    try:
        wait_for(lambda: (s := load_if_created(path)) is not None
                 and any(records.epochs_done(t) >= 1 for t in s.get_trials()),
                 timeout=240, what="an epoch recorded", alive=lambda: _alive([proc], [log]))
        own_postgres.stop()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("error: storage postgresql") and "has not answered for 3 s" in last, out[-3000:]

    own_postgres.start()
    rerun = _driver(path, tmp_path / "rerun.log")
    assert rerun.wait(timeout=300) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    study = load(path)
    assert len(counted(study)) == 3
    assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]
