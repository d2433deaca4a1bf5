"""`sksearch run STUDY --confirm K` end to end (real Ray, Optuna, SQLite), and OOM failures that do not stop a
study: trials that ran out of device memory are FAIL with their reason but not counted toward max_failures."""
from __future__ import annotations

import io
import json

from optuna.trial import TrialState

from sksearch.config import load_study
from sksearch.search.tune import run_study
from sksearch.storage import records
from sksearch.storage.records import Key

from tests.tune.helpers import counted, load, write_study


def test_confirm_adds_k_per_front_member_off_the_budget_and_front_and_a_rerun_adds_none(tmp_path, capsys,
                                                                                         monkeypatch):
    from sksearch.run import main

    # (One Ray start less for the suite: the search also checks that an OOM trial does not stop a study
    # whose max_failures is 0.)
    monkeypatch.setenv("SKSEARCH_INJECT_FAULT", "0:oom")
    path = write_study(tmp_path, n_trials=3, epochs=1, concurrent=1)
    path.write_text(path.read_text().replace("max_failures: 3", "max_failures: 0"))
    cfg = load_study(path)
    assert main([str(path), "--confirm", "1"]) == 2  # no study yet: nothing to confirm, nothing written
    err = capsys.readouterr().err
    assert "no study" in err and "Traceback" not in err and not (tmp_path / "runs").exists()
    assert run_study(cfg, out=io.StringIO()) == 0
    study = load(path)
    oom = study.trials[0]
    assert oom.state == TrialState.FAIL and "out of memory" in oom.user_attrs[Key.ERROR]
    assert oom.user_attrs[Key.ERROR_KIND] == "oom" and records.is_oom(oom)
    assert [t.state for t in counted(study)] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    monkeypatch.delenv("SKSEARCH_INJECT_FAULT")  # confirmations get new numbers: none may hit the fault
    budget = sorted(t.number for t in counted(study))
    best = sorted(t.number for t in study.best_trials)
    assert main([str(path), "--confirm", "1", "--n-trials", "5"]) == 2
    assert "--n-trials" in capsys.readouterr().err

    out = io.StringIO()
    assert run_study(cfg, confirm=1, out=out) == 0
    study = load(path)
    assert sorted(t.number for t in counted(study)) == budget  # off the budget
    assert sorted(t.number for t in study.best_trials) == best  # off Optuna's front
    extra = [t for t in study.get_trials() if Key.CONFIRMS in t.user_attrs]
    assert sorted(t.user_attrs[Key.CONFIRMS] for t in extra) == best  # exactly K = 1 per front member
    by_number = {t.number: t for t in study.get_trials()}
    for t in extra:
        original = by_number[t.user_attrs[Key.CONFIRMS]]
        assert t.state == TrialState.COMPLETE and records.status(t) == "confirmation"
        assert records.seed(t) == cfg.train.seed + 1 and t.params == original.params
        assert t.user_attrs[Key.EPOCHS_DONE] == t.user_attrs[Key.MAX_EPOCHS] == 1
    text = out.getvalue()
    assert "+-" in text and "seed-to-seed SD of accuracy" in text, text
    summary = json.loads((cfg.out_dir() / "report" / "summary.json").read_text())
    assert isinstance(summary["seed_sd"], float) and summary["seed_sd_members"] == len(best)
    assert all(f["runs"] == 2 and f["accuracy_sd"] is not None for f in summary["front"])

    rerun = io.StringIO()
    assert run_study(cfg, confirm=1, out=rerun) == 0
    assert "has its 1 seed confirmation(s) already" in rerun.getvalue() and "+-" in rerun.getvalue()
    assert len(load(path).get_trials()) == len(study.get_trials())


