"""Run a snippet in a fresh Python process: for checks that the test process's own history would hide
(a peak memory earlier tests already raised, a module another test already imported)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_fresh(code: str, *, env: dict[str, str] | None = None) -> str:
    """stdout of `python -c code` in the repository; the snippet's failure fails the caller with its stderr."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=env if env is not None else os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def peak_rss_growth_mib(code: str) -> float:
    """How far the process's peak resident memory rose over the snippet's lines after its `MEASURE` line."""
    before, after = code.split("MEASURE\n", 1)
    wrapped = (f"import resource, json\n{before}"
               "_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
               f"{after}"
               "print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _peak) / 1024))\n")
    return float(json.loads(run_fresh(wrapped).splitlines()[-1]))
