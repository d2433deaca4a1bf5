"""Ray nodes that a test starts itself with `ray start` (a head, a worker), and stops by the process group it
started: `ray stop` would stop every Ray on the machine.

Used by the two-node cluster tests and by the suite's shared head (tests/conftest.py): one head for the run,
joined through RAY_ADDRESS by every study the tests run, so that a study does not pay for starting and stopping
Ray's daemons (4-5 s of CPU each time on these machines).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

RAY = Path(sys.executable).parent / "ray"


def use_local_ray(monkeypatch) -> None:
    """From here on this test's studies start a local Ray of their own, as a user's first run does, instead
    of joining the suite's shared head (tests/conftest.py)."""
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(key, raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_env() -> dict[str, str]:
    """`ray start` clusters use token authentication since Ray 2.5x; every process that talks to the cluster must
    say so and carry the token. A token of our own: a fresh machine has no ~/.ray/auth_token."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


# What `ray start` prints once the node's raylet has registered with the GCS (ray._private.node.Node waits for
# that before it returns): the node is up and a driver can join it.
STARTED = "Ray runtime started."


def start_node(args: list[str], env: dict[str, str], log: Path, timeout: float = 120) -> subprocess.Popen:
    """`ray start ARGS --block`, its output in `log`, returned once the node is up (STARTED in `log`). --block keeps
    the node in the foreground, in a process group of its own, so that stop_node stops exactly this node."""
    with log.open("w") as out:
        proc = subprocess.Popen([str(RAY), "start", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                                 "--block", *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)
    deadline = time.monotonic() + timeout
    while STARTED not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_node(proc)
            raise RuntimeError(f"`ray start {' '.join(args)}` did not start within {timeout:g} s (exit {proc.returncode}): "
                               f"{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return proc


def stop_node(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # `ray start --block` stops its daemons on Ctrl-C in a second or two;
    try:                                    # after SIGTERM it waited 30 s
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def temp_dir() -> str:
    """A Ray temp folder of the node's own: it keeps the head's address file (ray_current_cluster) out of
    /tmp/ray, where a plain ray.init() would find it afterwards; a short path, since Ray's socket paths must fit
    in 107 bytes."""
    return tempfile.mkdtemp(prefix="skray", dir="/tmp")


@contextlib.contextmanager
def ray_head(num_cpus: int) -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head on a free port with `num_cpus` CPUs and no token (a driver that already imported Ray reads the
    token mode only once): (its address, the environment a process needs to join it)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    join = {"RAY_ADDRESS": address, "RAY_AUTH_MODE": "disabled"}
    env = {**os.environ, **join}
    env.pop("RAY_ADDRESS")  # `ray start --head` with RAY_ADDRESS set would try to join it
    folder = temp_dir()
    # no dashboard and no log monitor (the studies do not send workers' logs to the driver): less CPU idling
    try:
        head = start_node(["--head", "--port", str(port), "--include-dashboard", "false", "--include-log-monitor",
                           "false", "--temp-dir", folder, "--num-cpus", str(num_cpus)], env, Path(folder) / "start.log")
        try:
            yield address, join
        finally:
            stop_node(head)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
