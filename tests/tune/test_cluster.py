"""A study through a real multi-node Ray cluster: `ray start` head and worker on free ports."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import shutil
import subprocess
import tempfile
from pathlib import Path

from optuna.trial import TrialState

from tests.tune.helpers import counted, load, run_cli, wait_for, write_study

RAY = Path(os.sys.executable).parent / "ray"
# `ray start` clusters use token authentication since Ray 2.5x; every process that talks to the cluster must
# say so and carry the token. A token of our own: a fresh machine has no ~/.ray/auth_token.
TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
ENV = {**os.environ, **TOKEN}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodes_alive(address: str) -> int:
    out = subprocess.run([str(RAY), "status", "--address", address], capture_output=True, text=True, timeout=60,
                         env=ENV)
    lines = out.stdout.splitlines()
    try:
        start = lines.index("Active:") + 1
    except ValueError:
        return 0
    n = 0
    for line in lines[start:]:
        if not line.strip().startswith("1 node_"):
            break
        n += 1
    return n


def test_study_runs_on_a_local_two_node_cluster(tmp_path):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--disable-usage-stats", "--block"]
    # --block keeps each node in the foreground, so killing its process group stops exactly this cluster
    # (`ray stop` would stop every Ray on the machine). A temp folder of its own keeps the head's address
    # file (ray_current_cluster) out of /tmp/ray, where a plain ray.init() would find it afterwards; a short
    # path, since Ray's socket paths must fit in 107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="skray", dir="/tmp")
    head = subprocess.Popen([str(RAY), "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                             "--include-dashboard", "false", "--temp-dir", ray_tmp, *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=ENV)
    worker = None
    try:
        wait_for(lambda: _nodes_alive(address) >= 1, timeout=90, what="the head node is up", poll=0.5)
        worker = subprocess.Popen([str(RAY), "start", "--address", address, "--node-ip-address", "127.0.0.1",
                                   *common], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True, env=ENV)
        wait_for(lambda: _nodes_alive(address) == 2, timeout=90, what="the worker node joined", poll=0.5)

        path = write_study(tmp_path, n_trials=2, epochs=1, concurrent=2)
        run = run_cli([str(path), "--address", address], env=TOKEN)
        assert run.returncode == 0, run.stdout + run.stderr
        trials = counted(load(path))
        assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
        # One CPU per node and two concurrent trials: each node ran one.
        assert len({t.user_attrs["node"] for t in trials}) == 2, [t.user_attrs.get("node") for t in trials]
    finally:
        for proc in (worker, head):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (worker, head):
            if proc is not None:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
