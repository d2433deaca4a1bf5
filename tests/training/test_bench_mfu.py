"""bench/bench_mfu.py compares the step against a peak of the same precision (issue 14 fault 5)."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench_mfu(monkeypatch):
    pytest.importorskip("timm")  # bench_train_throughput, which bench_mfu imports, builds timm's twin
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("bench_mfu")


def test_the_peak_is_timed_at_the_step_precision(bench_mfu):
    assert bench_mfu.peak_matmul_precision("cuda", conv_tf32=True) == "high"  # TF32 convs -> TF32 peak
    assert bench_mfu.peak_matmul_precision("cuda", conv_tf32=False) == "highest"
    assert bench_mfu.peak_matmul_precision("cpu", conv_tf32=True) == "highest"


def test_mfu_cannot_exceed_one(bench_mfu):
    assert bench_mfu.mfu(30.0, 60.0) == 0.5
    with pytest.raises(ValueError, match="lower precision"):
        bench_mfu.mfu(7.0, 1.0)
