"""Fixtures for the main-job tests (helpers live in tests/tune/helpers.py)."""
from __future__ import annotations

import os

import pytest

from tests.tune.helpers import MYSQL_URL, PG_URL, reachable


@pytest.fixture(scope="session")
def postgres_url() -> str:
    problem = reachable(PG_URL)
    if problem:
        if os.environ.get("SKSEARCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (SKSEARCH_REQUIRE_POSTGRES=1) but {PG_URL} fails: {problem}")
        pytest.skip(f"no PostgreSQL at {PG_URL}: {problem}")
    return PG_URL


@pytest.fixture(scope="session")
def mysql_url() -> str:
    problem = reachable(MYSQL_URL)
    if problem:
        pytest.skip(f"no MySQL/MariaDB at {MYSQL_URL}: {problem}")
    return MYSQL_URL
