"""Fixtures for the main-job tests (helpers live in tests/tune/helpers.py; the database servers' fixtures in
tests/conftest.py)."""
from __future__ import annotations

import pytest

from tests.tune.helpers import forbid_ray_start


@pytest.fixture
def ray_must_not_start(monkeypatch):
    """For commands that must refuse before Ray starts: starting it fails the test, naming the call."""
    forbid_ray_start(monkeypatch)

