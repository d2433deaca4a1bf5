"""PostgreSQL storage for real (127.0.0.1:5432): a study, and two drivers sharing one study."""
from __future__ import annotations

import io
import subprocess
import sys
import os

import optuna
from optuna.trial import TrialState

from sksearch.config import load_study
from sksearch.search.tune import run_study

from tests.tune.helpers import REPO, counted, load, write_study


def test_tiny_study_on_postgres_never_prints_the_password(tmp_path, postgres_url):
    # Trust authentication accepts any password, which lets us check that none is ever printed.
    url = postgres_url.replace("postgres@", "postgres:s3cret-pw@")
    path = write_study(tmp_path, n_trials=2, epochs=1, concurrent=1, storage=url)
    out = io.StringIO()
    try:
        assert run_study(load_study(path), out=out) == 0
        assert "s3cret-pw" not in out.getvalue() and "***" in out.getvalue()
        study = load(path)
        trials = counted(study)
        assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
        assert all(t.user_attrs["full_fidelity"] for t in trials)
        assert "s3cret-pw" not in str(study.user_attrs) and "***" in study.user_attrs["config"]["storage"]
    finally:
        optuna.delete_study(study_name=load_study(path).name, storage=postgres_url)


def test_two_drivers_share_one_study_exactly(tmp_path, postgres_url):
    path = write_study(tmp_path, n_trials=5, epochs=1, concurrent=1, storage=postgres_url)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "sksearch.run", str(path)]
    try:
        drivers = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True) for _ in range(2)]
        logs = [d.communicate(timeout=400)[0] for d in drivers]
        assert [d.returncode for d in drivers] == [0, 0], "\n".join(logs)
        study = load(path)
        trials = counted(study)
        assert len(trials) == 5, [(t.number, t.state, t.user_attrs.get("run_id")) for t in study.get_trials()]
        assert all(t.state == TrialState.COMPLETE for t in trials)
        assert len({t.user_attrs["run_id"] for t in trials}) == 2, "both drivers trained trials"
        assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    finally:
        optuna.delete_study(study_name=load_study(path).name, storage=postgres_url)
