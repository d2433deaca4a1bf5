"""Fixtures for the model tests."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # These tensors are tiny: intra-op threads buy nothing, and on a busy CI box their spin-waiting
    # made a forward pass 20x slower. Restored afterwards for the rest of the suite.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
