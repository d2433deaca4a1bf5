"""Fixtures for the main-job tests (helpers live in tests/tune/helpers.py; the database servers' fixtures in
tests/conftest.py)."""
from __future__ import annotations

import pytest

from tests.tune.helpers import forbid_ray_start


@pytest.fixture
def ray_must_not_start(monkeypatch):
    """For commands that must refuse before Ray starts: starting it fails the test, naming the call."""
    forbid_ray_start(monkeypatch)


@pytest.fixture
def local_ray(monkeypatch):
    """This test's study starts a local Ray of its own, as a user's first run does, instead of joining the
    suite's shared head (tests/conftest.py)."""
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(key, raising=False)
