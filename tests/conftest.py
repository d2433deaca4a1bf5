"""Fixtures shared by the whole suite."""
from __future__ import annotations

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


@pytest.fixture(scope="session", autouse=True)
def _shared_ray_head(request: pytest.FixtureRequest) -> Iterator[None]:
    """One Ray head per test process (each xdist worker), with 2 CPUs like a local Ray on these machines, that
    every study of the tests joins through RAY_ADDRESS (in process and as subprocess drivers): starting and
    stopping Ray's daemons costs a study 4-5 s of CPU and 4-6 s of wall time, and the suite runs about 80 of them.
    Started only where slow tests (the real runs) were collected; SKSEARCH_TEST_RAY=local gives every study a
    local Ray of its own, as a user's first run has (tests/tune/test_faults.py checks that path too, in a subprocess:
    in Ray 2.x a process that ran a local Ray cannot run actors on another cluster afterwards)."""
    wanted = os.environ.get("SKSEARCH_TEST_RAY", "shared") != "local" and \
        any(item.get_closest_marker("slow") for item in request.session.items)
    if not wanted or os.environ.get("RAY_ADDRESS"):
        yield
        return
    with ray_head(num_cpus=4) as (_, join):
        saved = {k: os.environ.get(k) for k in join}
        os.environ.update(join)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test of tests/tune/ runs the main job for real (Ray, subprocess drivers, databases): all are slow.
    Slow tests elsewhere carry @pytest.mark.slow themselves. `make test-fast` runs the rest."""
    for item in items:
        if "/tests/tune/" in str(item.path):
            item.add_marker(pytest.mark.slow)
