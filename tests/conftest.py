"""Fixtures shared by the whole suite."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import pytest
import torch

from tests.ray_nodes import ray_head
from tests.tune.helpers import MYSQL_URL, PG_URL, reachable

# The suite's time recorder (bench/test_time.py) and its check that a run leaves nothing behind.
pytest_plugins = ["tests.timing", "tests.leftovers"]


@pytest.fixture(scope="session", autouse=True)
def _latency_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Latency tables (sksearch.latency) go to a folder of this run, not the user's ~/.cache, and subprocesses
    the tests start inherit it."""
    before = os.environ.get("SKSEARCH_CACHE")
    os.environ["SKSEARCH_CACHE"] = str(tmp_path_factory.mktemp("sksearch-cache"))
    yield
    if before is None:
        os.environ.pop("SKSEARCH_CACHE", None)
    else:
        os.environ["SKSEARCH_CACHE"] = before


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Small tensors on a shared 2-core box: intra-op threads only spin-wait (a forward pass ran up to 20x
    slower), and one thread is deterministic. Restored afterwards for the rest of the suite."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _worker_database(url: str) -> str:
    """Under pytest-xdist, a database of this worker's own on the same server (created if missing), so that
    workers never share tables: the same URL otherwise."""
    import sqlalchemy

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = sqlalchemy.engine.make_url(url)
    name = f"{base.database}_{worker}"
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if base.get_backend_name() == "postgresql":
                if not conn.execute(sqlalchemy.text("select 1 from pg_database where datname = :n"), {"n": name}).scalar():
                    conn.execute(sqlalchemy.text(f'create database "{name}"'))
            else:
                conn.execute(sqlalchemy.text(f"create database if not exists `{name}`"))
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL test server (127.0.0.1:5432 unless SKSEARCH_TEST_POSTGRES says), this worker's database."""
    problem = reachable(PG_URL)
    if problem:
        if os.environ.get("SKSEARCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (SKSEARCH_REQUIRE_POSTGRES=1) but {PG_URL} fails: {problem}")
        pytest.skip(f"no PostgreSQL at {PG_URL}: {problem}")
    return _worker_database(PG_URL)


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """The MySQL/MariaDB test server (127.0.0.1:3306 unless SKSEARCH_TEST_MYSQL says), this worker's database."""
    problem = reachable(MYSQL_URL)
    if problem:
        pytest.skip(f"no MySQL/MariaDB at {MYSQL_URL}: {problem}")
    return _worker_database(MYSQL_URL)


_RAY_HEAD = pytest.StashKey[contextlib.ExitStack]()


@pytest.hookimpl(trylast=True)  # after tests/leftovers.py has tagged the run: the head's processes carry the tag
def pytest_configure(config: pytest.Config) -> None:
    """One Ray head for the whole run (`ray start`, 8 CPUs, a temp folder of its own; started by the xdist
    controller, whose workers inherit RAY_ADDRESS), which every study of the tests joins, in process and as
    subprocess drivers: starting and stopping Ray's daemons costs a study 4-5 s of CPU and wall time, and one head
    idles at 0.035 of a core. Not for `make test-fast` (-m "not slow": no real runs); SKSEARCH_TEST_RAY=local gives
    every study a local Ray of its own, as a user's first run has (tests/tune/test_faults.py checks that path too,
    in a subprocess driver: in Ray 2.x a process that ran a local Ray cannot run actors on another cluster
    afterwards, so no in-process test starts one)."""
    mode = os.environ.get("SKSEARCH_TEST_RAY", "shared")
    if mode not in ("shared", "local"):
        raise pytest.UsageError(f"SKSEARCH_TEST_RAY={mode!r}: use shared (the default) or local")
    if hasattr(config, "workerinput") or os.environ.get("RAY_ADDRESS") or mode == "local" \
            or "not slow" in (config.option.markexpr or "") or config.option.collectonly:
        return
    stack = contextlib.ExitStack()
    _, join = stack.enter_context(ray_head(num_cpus=8))
    stack.callback(_restore_env, {k: os.environ.get(k) for k in join})
    os.environ.update(join)
    config.stash[_RAY_HEAD] = stack


def _restore_env(before: dict[str, str | None]) -> None:
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stops the head after the last test (and before tests/leftovers.py looks for what was left behind)."""
    stack = session.config.stash.get(_RAY_HEAD, None)
    if stack is not None:
        stack.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test of tests/tune/ runs the main job for real (Ray, subprocess drivers, databases): all are slow.
    Slow tests elsewhere carry @pytest.mark.slow themselves. `make test-fast` runs the rest."""
    for item in items:
        if "/tests/tune/" in str(item.path):
            item.add_marker(pytest.mark.slow)
