"""Where the suite's time goes: wall, CPU and waiting per test (a pytest plugin, loaded by tests/conftest.py).

With SKSEARCH_TEST_TIMES=FILE set, each test appends one JSON line to FILE:
{"test": nodeid, "wall": s, "cpu": s, "wait": wall - cpu, "start": unix time, "worker": xdist worker}. CPU is this process's own user + system time, its
reaped children's (subprocess runs) and the growth of its live descendants' and of the children they reaped
(Ray's raylet and workers), read with psutil. A process that dies unreaped is missed, so waiting is an upper
bound. Each xdist worker appends its own lines; bench/test_time.py runs the suite and sums them by folder.
"""
from __future__ import annotations

import json
import os
import time

import psutil
import pytest


def _descendants_cpu() -> dict[int, float]:
    out = {}
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()  # its children's too: Ray's raylet reaps the workers it stops
            out[child.pid] = t.user + t.system + t.children_user + t.children_system
        except psutil.Error:  # it ended between the listing and the read
            pass
    return out


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    target = os.environ.get("SKSEARCH_TEST_TIMES")
    if not target:
        yield
        return
    start, wall0, own0, live0 = time.time(), time.perf_counter(), _own_cpu(), _descendants_cpu()
    yield
    wall, own, live = time.perf_counter() - wall0, _own_cpu() - own0, _descendants_cpu()
    # A descendant alive at both ends grew by the difference; one born during the test counts from zero.
    cpu = own + sum(c - live0.get(pid, 0.0) for pid, c in live.items())
    line = {"test": item.nodeid, "wall": round(wall, 3), "cpu": round(cpu, 3), "wait": round(max(wall - cpu, 0.0), 3),
            "start": round(start, 3), "worker": os.environ.get("PYTEST_XDIST_WORKER", "")}
    with open(target, "a") as f:  # one short write per line: safe with several xdist workers
        f.write(json.dumps(line) + "\n")
