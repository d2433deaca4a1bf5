"""Where the test suite's time goes: wall, CPU and waiting, by folder (issue 21's table in BENCHMARKS.md).

Runs pytest with tests/timing.py's recorder on, then prints the suite's wall time (pytest's own figure) and,
per folder, the tests' summed wall, CPU (the test process, its reaped children and its live descendants) and
waiting (wall minus CPU). Under xdist the per-test sums exceed the suite's wall: they overlap.

    .venv/bin/python bench/test_time.py                 # the suite as `make test` runs it
    .venv/bin/python bench/test_time.py -- -p no:xdist  # serially (the baseline)
    .venv/bin/python bench/test_time.py --runs 3        # three runs, each on its own line
    .venv/bin/python bench/test_time.py --save rows.json  # also keep every test's row of the last run
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import machine_note, markdown_table  # noqa: E402


def folder(nodeid: str) -> str:
    parts = nodeid.split("::")[0].split("/")
    return "/".join(parts[:-1]) or parts[0]


def busy_cpu_seconds() -> float:
    """The machine's busy CPU time so far (all processes, /proc/stat): what the suite costs in all, the shared Ray
    head's trial workers included (they are not descendants of a test process, so the per-test CPU misses them)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def one_run(pytest_args: list[str]) -> tuple[float, list[dict], int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        times = Path(tmp) / "times.jsonl"
        env = {**os.environ, "SKSEARCH_TEST_TIMES": str(times)}
        t0, c0 = time.perf_counter(), busy_cpu_seconds()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", *pytest_args], cwd=REPO, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        print(f"machine busy CPU during the run: {busy_cpu_seconds() - c0:.0f} s on {os.cpu_count()} cores")
        rows = [json.loads(line) for line in times.read_text().splitlines()] if times.exists() else []
    summary = next((ln for ln in reversed(proc.stdout.splitlines()) if re.search(r"\d+ (passed|failed)", ln)), "")
    if proc.returncode:
        print(proc.stdout[-20000:], proc.stderr[-5000:], sep="\n")
    return wall, rows, proc.returncode, summary


def by_folder(rows: list[dict]) -> list[list]:
    sums: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for r in rows:
        s = sums[folder(r["test"])]
        s[0] += 1
        s[1] += r["wall"]
        s[2] += r["cpu"]
        s[3] += r["wait"]
    total = [sum(s[i] for s in sums.values()) for i in range(4)]
    out = [[f, int(s[0]), f"{s[1]:.0f}", f"{s[2]:.0f}", f"{s[3]:.0f}"] for f, s in sorted(sums.items())]
    out.append(["**all**", int(total[0]), f"{total[1]:.0f}", f"{total[2]:.0f}", f"{total[3]:.0f}"])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--slowest", type=int, default=10, help="list this many slowest tests of the last run")
    p.add_argument("--save", type=Path, help="write the last run's per-test rows (wall, CPU, waiting) to this JSON file")
    p.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = p.parse_args()
    # As `make test` runs it (Makefile: TEST_WORKERS) unless pytest arguments are given.
    pytest_args = args.pytest_args or ["-n", os.environ.get("TEST_WORKERS", "4"), "--dist", "worksteal"]
    print(machine_note())
    rc = 0
    for i in range(args.runs):
        wall, rows, code, summary = one_run(pytest_args)
        rc = rc or code
        print(f"\nrun {i + 1}: {wall:.0f} s wall for the suite ({summary.strip('= ')}), exit {code}")
        print(markdown_table(["folder", "tests", "wall s", "CPU s", "waiting s"], by_folder(rows)))
    if args.save:
        args.save.write_text(json.dumps(rows, indent=1))
    slow = sorted(rows, key=lambda r: -r["wall"])[:args.slowest]
    print("\nslowest tests of the last run:")
    print(markdown_table(["test", "wall s", "CPU s", "waiting s"],
                         [[r["test"], f"{r['wall']:.0f}", f"{r['cpu']:.0f}", f"{r['wait']:.0f}"] for r in slow]))
    return rc


if __name__ == "__main__":
    sys.exit(main())
