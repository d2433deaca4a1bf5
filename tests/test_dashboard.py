"""`sksearch dashboard`: the real optuna-dashboard on a study's storage, on 127.0.0.1."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.results.conftest import make_results_study


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    # optuna-dashboard answers 500 for its bundle to clients that send no Accept-Encoding: send one.
    req = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.read()


def _keep_a_file(cfg) -> tuple[int, int, str, bytes]:
    """A trial that kept `weights.pt`, through the driver's writer: (study_id, trial_id, artifact id, bytes)."""
    import optuna

    from sksearch.storage import records
    from sksearch.storage.open import open_storage

    study = optuna.load_study(study_name=cfg.name, storage=open_storage(cfg.storage_url()))
    trial = study.ask()
    staged = records.staging_dir(cfg) / "dash" / records.WEIGHTS_FILE
    staged.parent.mkdir(parents=True)
    data = b"kept weights"
    staged.write_bytes(data)
    artifact = records.record_weights(trial, cfg, staged)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert not staged.exists()
    return study._study_id, trial._trial_id, artifact, data


@pytest.mark.slow
def test_dashboard_serves_the_study_on_loopback(tmp_path):
    cfg = make_results_study(tmp_path, name="dash-study")
    study_id, trial_id, artifact, data = _keep_a_file(cfg)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sksearch.dashboard", cfg.source, "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.time() + 60
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/api/studies")
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.time() < deadline, "the dashboard did not answer"
                time.sleep(0.5)
        assert status == 200
        studies = json.loads(body)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["dash-study"]
        assert _get(f"http://127.0.0.1:{port}/dashboard")[0] == 200
        # Opened with the study's artifact store: the kept weights are served from the trial's page.
        assert json.loads(_get(f"http://127.0.0.1:{port}/api/meta")[1])["artifact_is_available"] is True
        assert _get(f"http://127.0.0.1:{port}/artifacts/{study_id}/{trial_id}/{artifact}") == (200, data)
        proc.terminate()  # SIGTERM, as systemd stops a service: a clean stop, one line, exit 143
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 143 and "terminated (SIGTERM)" in out and "Traceback" not in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_dashboard_before_any_run_is_a_clear_error(tmp_path, capsys):
    from sksearch.dashboard import main

    study = tmp_path / "s.yaml"
    (tmp_path / "space.yaml").write_text("base: sknet29\n")
    study.write_text(f"name: never-run\nsearch_space: space.yaml\noutput_dir: {tmp_path / 'runs'}\n")
    assert main([str(study)]) == 2
    err = capsys.readouterr().err
    assert "sksearch run" in err and "Traceback" not in err


def test_a_taken_port_is_one_line_naming_the_flag(tmp_path, capsys):
    import socket as _socket

    from sksearch.dashboard import main

    cfg = make_results_study(tmp_path, name="dash-busy")
    with _socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main([cfg.source, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "--port" in err and str(port) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
