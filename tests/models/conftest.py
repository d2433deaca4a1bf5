"""Fixtures for the model tests."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every model test runs on one torch thread (see tests/conftest.py)."""
