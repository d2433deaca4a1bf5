"""Fixtures shared by the whole suite."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Small tensors on a shared 2-core box: intra-op threads only spin-wait (a forward pass ran up to 20x
    slower), and one thread is deterministic. Restored afterwards for the rest of the suite."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
