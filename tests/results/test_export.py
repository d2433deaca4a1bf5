from __future__ import annotations

import pytest
import yaml

from sksearch.complexity import count
from sksearch.export import main
from sksearch.results.export import nearest_divisor
from sksearch.models import build_model
from sksearch.spec import load_spec

from .conftest import trial_by_tag


def _export(cfg, tmp_path, *args):
    out = tmp_path / "exported.yaml"
    rc = main([cfg.source, "--out", str(out), *args])
    return rc, (yaml.safe_load(out.read_text()) if rc == 0 else None), out


def test_export_best_builds_the_recorded_model(results_study, tmp_path, capsys):
    rc, doc, out = _export(results_study, tmp_path)
    assert rc == 0
    best = trial_by_tag(results_study, "sknet29")
    prov = doc["provenance"]
    assert prov["trial"] == best.number and prov["source"]["accuracy"] == pytest.approx(0.93)
    assert prov["source"]["macs"] == best.values[1] and "***" not in prov["storage"]
    spec = load_spec(out)  # the training config is also a spec file
    assert spec.depths == [3, 4, 6, 3] and spec.num_classes == 1000 and spec.input_size == [3, 224, 224]
    assert spec.sk.model_dump() == load_spec("sknet29").sk.model_dump()  # SK block carried over whole
    model = build_model(spec, init=False)
    assert sum(p.numel() for p in model.parameters()) == prov["target"]["params"] == count(spec).params
    r = doc["recipe"]
    assert (r["lr"], r["lr_batch"], r["momentum"], r["weight_decay"], r["epochs"]) == (0.1, 256, 0.9, 1e-4, 100)
    assert (r["step_epochs"], r["step_gamma"], r["label_smoothing"], r["batch_size"]) == (30, 0.1, 0.1, 256)
    assert "torchrun --nproc_per_node=8 -m sksearch.train" in capsys.readouterr().out


def test_max_macs_selects_a_cheaper_trial(results_study, tmp_path):
    rc, doc, _ = _export(results_study, tmp_path, "--max-macs", "900M", "--depth", "26")
    assert rc == 0
    assert doc["provenance"]["trial"] == trial_by_tag(results_study, "small_g16").number
    assert doc["provenance"]["source"]["macs"] <= 900e6 and doc["spec"]["depths"] == [2, 2, 2, 2]


def test_group_count_that_does_not_transfer_exits_2_with_a_suggestion(results_study, tmp_path, capsys):
    n = trial_by_tag(results_study, "g40").number
    rc, _, out = _export(results_study, tmp_path, "--trial", str(n))
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "sk.G" in err and "40 groups do not divide" in err and "--set sk.G=32" in err
    assert nearest_divisor(48, [128, 256]) == [32, 64]
    rc, doc, _ = _export(results_study, tmp_path, "--trial", str(n), "--set", "sk.G=32")
    assert rc == 0 and doc["spec"]["sk"]["G"] == 32 and doc["provenance"]["overrides"] == ["sk.G=32"]


@pytest.mark.parametrize("tag, words", [("pruned_m3", "pruned after 1 of 3 epochs"),
                                        ("over_budget", "infeasible"), ("crashed", "CUDA out of memory"),
                                        ("interrupted", "interrupted"), ("repeat_of_sknet29", "same network as trial")])
def test_unusable_trials_are_refused(results_study, tmp_path, capsys, tag, words):
    rc, _, _ = _export(results_study, tmp_path, "--trial", str(trial_by_tag(results_study, tag).number))
    assert rc == 2 and words in capsys.readouterr().err


def test_existing_out_is_refused_unless_forced(results_study, tmp_path, capsys):
    out = tmp_path / "exported.yaml"
    out.write_text("mine\n")
    assert main([results_study.source, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "--force" in err and "Traceback" not in err and out.read_text() == "mine\n"
    # The study file itself is never replaced by accident.
    study_text = open(results_study.source).read()
    assert main([results_study.source, "--out", results_study.source]) == 2
    assert open(results_study.source).read() == study_text
    assert main([results_study.source, "--out", str(out), "--force"]) == 0
    assert "spec" in yaml.safe_load(out.read_text())


@pytest.mark.parametrize("value, words", [("0", "positive integer"), ("abc", "positive integer"),
                                          ("-4", "positive integer")])
def test_bad_group_override_is_one_line_naming_the_key(results_study, tmp_path, capsys, value, words):
    rc, _, out = _export(results_study, tmp_path, "--set", f"sk.G={value}")
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "sk.G" in err and words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.filterwarnings("ignore:Query string argument")
def test_export_provenance_never_holds_a_password(results_study, tmp_path):
    url = results_study.storage_url() + "?password=hunter2"
    rc, doc, out = _export(results_study, tmp_path, "--storage", url)
    assert rc == 0 and doc["provenance"]["storage"].endswith("?password=***") and "hunter2" not in out.read_text()


def test_weights_of_a_trial_that_kept_none_exit_2_naming_one_that_did(tmp_path, capsys):
    import optuna

    from sksearch.storage import records
    from sksearch.storage.open import open_storage

    from .conftest import make_results_study

    cfg = make_results_study(tmp_path / "study", name="export-weights")
    full = trial_by_tag(cfg, "sknet29").number
    rc, _, out = _export(cfg, tmp_path, "--trial", str(full), "--weights")
    err = capsys.readouterr().err
    assert rc == 2 and f"trial {full} kept no weights" in err and "no trial of this study kept weights" in err
    assert "--weights" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not out.with_suffix(".pt").exists()

    # Once a trial has kept weights (through the driver's writer), the message names it.
    study = optuna.load_study(study_name=cfg.name, storage=open_storage(cfg.storage_url()))
    trial = study.ask()
    staged = records.staging_dir(cfg) / "t" / records.WEIGHTS_FILE
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"weights")
    records.record_weights(trial, cfg, staged)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert main([cfg.source, "--out", str(out), "--trial", str(full), "--weights"]) == 2
    assert f"trials that kept weights: #{trial.number}" in capsys.readouterr().err
    assert not out.exists()
