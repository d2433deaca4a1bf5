"""SIGTERM in every command (errors.cli_entry): unwound like Ctrl-C, exit 143; a second signal leaves at once.
The commands' own runs are in tests/tune/test_faults.py (run), tests/training/test_ddp.py (train) and
tests/test_dashboard.py (dashboard)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

SLOW_SHUTDOWN = """
import time
from sksearch.errors import cli_entry

@cli_entry
def main(argv):
    try:
        print("working", flush=True)
        while True:
            time.sleep(0.05)
    finally:
        print("cleaning up", flush=True)  # what a run does: close the ledger, shut Ray down
        time.sleep(60)

raise SystemExit(main([]))
"""


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        line = proc.stdout.readline()
        if text in line:
            return
        assert line or proc.poll() is None, "the process ended early"
        assert time.monotonic() < deadline, f"no line {text!r}"


def test_sigterm_unwinds_like_ctrl_c_and_a_second_one_exits_at_once():
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SHUTDOWN], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        _wait_for_line(proc, "working")
        proc.send_signal(signal.SIGTERM)
        _wait_for_line(proc, "cleaning up")  # the first signal unwinds through the command's cleanup
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143  # the second does not wait for the 60 s cleanup
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in proc.stderr.read()
