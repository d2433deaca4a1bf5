"""Helpers for the main-job tests: a tiny study on the synthetic data, real Ray, real Optuna."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import yaml

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("SKSEARCH_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MICRO_SPACE = Path(__file__).with_name("micro_cifar.yaml")
MYSQL_URL = os.environ.get("SKSEARCH_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")


def write_study(folder: Path, *, name: str | None = None, n_trials: int = 4, epochs: int = 2,
                scheduler: dict | None = None, concurrent: int = 2, storage: str | None = None,
                constraints: dict | None = None, **extra: Any) -> Path:
    """A study small enough for a test: 320 synthetic images, the micro space (the quick start's at half width),
    1 CPU per trial. A trial's epoch is a few tenths of a second: what the tests check is the orchestration."""
    name = name or f"t{uuid.uuid4().hex[:8]}"
    study = {
        "name": name,
        "search_space": str(MICRO_SPACE),
        "dataset": {"name": "synthetic", "train_size": 320, "test_size": 20, "seed": 0},
        "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "macs", "direction": "minimize"}],
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.05},
        "tune": {"n_trials": n_trials, "max_concurrent": concurrent, "resources_per_trial": {"cpu": 1},
                 "scheduler": scheduler or {"type": "fifo"}, "sampler": {"type": "random", "seed": 1},
                 "max_failures": 3},
        "output_dir": str(folder / "runs" / name),
    }
    if storage:
        study["storage"] = storage
    if constraints:
        study["constraints"] = constraints
    for key, value in extra.items():
        study[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def run_cli(args: list[str], *, env: dict | None = None, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sksearch.run", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=kw.pop("cwd", REPO), **kw)


_SERVER_STORAGES: dict[str, Any] = {}


def _read_storage(url: str) -> Any:
    """Read-only: a test that polls while the driver creates the database must not create tables itself. One per
    database server URL for the process: a poll every 0.2 s would otherwise fork a PostgreSQL backend each time.
    A SQLite file is opened afresh (a test may delete it and make it again)."""
    from sksearch.storage.open import open_storage, sqlite_path

    if sqlite_path(url) is not None:
        return open_storage(url, read_only=True)
    if url not in _SERVER_STORAGES:
        _SERVER_STORAGES[url] = open_storage(url, read_only=True)
    return _SERVER_STORAGES[url]


def load(path: Path, storage: str | None = None) -> optuna.Study:
    from sksearch.config import load_study

    cfg = load_study(path)
    return optuna.load_study(study_name=cfg.name, storage=_read_storage(cfg.storage_url(storage)))


def load_if_created(path: Path, storage: str | None = None) -> optuna.Study | None:
    """The study, or None while the driver has not created its storage, tables or study yet (any other
    error is a failure, not a reason to keep polling)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from sksearch.errors import UserError

    try:
        return load(path, storage)
    except (UserError, KeyError, OperationalError, ProgrammingError):
        return None


def wait_for(condition, *, timeout: float, what: str, alive=None, poll: float = 0.2):
    """Poll `condition()` until it returns something truthy (returned) or `timeout` seconds pass (AssertionError
    naming `what`). `alive()`, if given, is checked each round: it raises when the process being watched died."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(poll)


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    from sksearch.storage.ledger import counts_toward_budget

    return [t for t in study.get_trials() if counts_toward_budget(t)]


def forbid_ray_start(monkeypatch) -> None:
    """From here on, starting Ray in this process fails the test (sksearch starts it only through ray.init)."""
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError(f"ray.init(*{args}, **{kwargs}) was called: the refusal should come before Ray starts")

    monkeypatch.setattr(ray, "init", refuse)


def reachable(url: str) -> str | None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # no server, no driver, no database
        return str(exc).splitlines()[0]


