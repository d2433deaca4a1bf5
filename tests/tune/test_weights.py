"""Kept weights (issue 12) end to end: real Ray, real Optuna artifacts, real torch.load(weights_only=True)."""
from __future__ import annotations

import io

import pytest
import torch
from optuna.trial import TrialState

from sksearch.config import load_study
from sksearch.export import main as export_main
from sksearch.models import build_model
from sksearch.search.tune import run_study
from sksearch.spec import ArchSpec
from sksearch.storage import records

from tests.tune.helpers import counted, load, write_study

ASHA = {"type": "asha", "grace_period": 1, "reduction_factor": 2}


def _load_into_its_spec(t, path) -> None:
    state = torch.load(path, weights_only=True)
    model = build_model(ArchSpec.from_dict(records.spec(t)))
    model.load_state_dict(state, strict=True)  # every tensor of the trial's network, and nothing else


def test_full_trials_keep_their_weights_pruned_ones_none_and_export_writes_them(tmp_path, capsys):
    # One at a time, so ASHA's verdicts do not depend on timing: later trials below the rung's median stop.
    path = write_study(tmp_path, n_trials=4, epochs=2, scheduler=ASHA, concurrent=1)
    cfg = load_study(path)
    assert run_study(cfg, out=io.StringIO()) == 0
    study = load(path)
    trials = counted(study)
    full = [t for t in trials if records.status(t) == "full"]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert full and pruned, [records.status(t) for t in trials]
    for t in pruned:
        assert records.weights_artifact(study, t) is None
    for t in full:
        artifact = records.weights_artifact(study, t)
        assert artifact is not None
        _load_into_its_spec(t, records.download_weights(cfg, artifact, tmp_path / f"w{t.number}.pt"))
    cached = records.cached_weights(cfg, artifact)  # the copy commands load: downloaded once
    assert records.cached_weights(cfg, artifact) == cached and cached.parent == cfg.out_dir() / "weights"
    _load_into_its_spec(t, cached)
    staging = records.staging_dir(cfg)
    assert not staging.exists() or not any(staging.iterdir())  # the driver removed what it kept

    # export --weights: the state dict beside the YAML, loadable into the spec the YAML's provenance names.
    out = tmp_path / "export" / "best.yaml"
    assert export_main([str(path), "--out", str(out), "--weights"]) == 0
    pt = out.with_suffix(".pt")
    import yaml

    prov = yaml.safe_load(out.read_text())["provenance"]
    chosen = next(t for t in full if t.number == prov["trial"])
    assert prov["weights"]["file"] == "best.pt" and prov["weights"]["spec"] == records.spec(chosen)
    _load_into_its_spec(chosen, pt)
    # An existing FILE.pt is kept unless told.
    before = pt.read_bytes()
    out.unlink()
    assert export_main([str(path), "--out", str(out), "--weights"]) == 2
    assert "--weights" in capsys.readouterr().err and not out.exists() and pt.read_bytes() == before
    assert export_main([str(path), "--out", str(out), "--weights", "--force"]) == 0
    _load_into_its_spec(chosen, pt)

    # `sksearch attention` loads a full trial's kept weights; a pruned trial's absence is named.
    from sksearch.attention import main as attention_main
    from sksearch.results.attention import has_attention

    seeing = [t for t in full if has_attention(ArchSpec.from_dict(records.spec(t)))]
    assert seeing, "the seeded sampler gives a full trial with M >= 2"
    assert attention_main([str(path), "--trial", str(seeing[0].number), "--scales", "1.0", "--images", "20",
                           "--device", "cpu", "--out", str(tmp_path / "att")]) == 0
    assert (tmp_path / "att" / "attention.json").exists()
    capsys.readouterr()
    assert attention_main([str(path), "--trial", str(pruned[0].number), "--device", "cpu"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_keep_weights_all_keeps_pruned_trials_weights_too_but_never_a_failed_ones(tmp_path, monkeypatch):
    path = write_study(tmp_path, n_trials=5, epochs=2, scheduler=ASHA, concurrent=1)
    text = path.read_text().replace("  max_failures: 3\n", "  max_failures: 3\n  keep_weights: all\n")
    path.write_text(text)
    cfg = load_study(path)
    assert cfg.tune.keep_weights == "all"
    monkeypatch.setenv("SKSEARCH_INJECT_FAULT", "4:nan")  # diverges in its first epoch: FAIL
    assert run_study(cfg, out=io.StringIO()) == 0
    study = load(path)
    failed = [t for t in counted(study) if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [4] and records.weights_artifact(study, failed[0]) is None
    trials = [t for t in counted(study) if t.state != TrialState.FAIL]
    assert any(t.state == TrialState.PRUNED for t in trials)  # the same trials and verdicts as above
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for t in trials:
        artifact = records.weights_artifact(study, t)
        assert artifact is not None, t.number
        _load_into_its_spec(t, records.download_weights(cfg, artifact, tmp_path / f"w{t.number}.pt"))
    assert not any(records.staging_dir(cfg).iterdir())  # every staged epoch was kept or replaced


def test_staging_saves_a_cpu_state_dict_whole_and_a_store_that_refuses_costs_only_the_weights(tmp_path, capsys):
    from sksearch.search.trial import keeps_weights, stage_weights

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    path = stage_weights(model, tmp_path / "staging" / "t0")
    again = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    again.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert [p.name for p in (tmp_path / "staging" / "t0").iterdir()] == [records.WEIGHTS_FILE]
    (tmp_path / "not-a-folder").write_text("")
    assert stage_weights(model, tmp_path / "not-a-folder" / "t1") is None
    assert "not staged" in capsys.readouterr().err
    assert [keeps_weights(k, e, 3) for k in ("full", "all", "none") for e in (1, 3)] == \
        [False, True, True, True, False, False]


def test_an_artifact_store_that_refuses_writes_costs_the_weights_not_the_results(tmp_path, capsys):
    """A store that cannot be written (here an immutable folder, which refuses even root; a full or read-only
    disk behaves alike): each trial's result is still recorded, one line says its weights were not kept and
    why, and the study goes on to its budget."""
    import subprocess

    path = write_study(tmp_path, n_trials=2, epochs=1, concurrent=1)
    cfg = load_study(path)
    store = cfg.artifact_dir()
    records.staging_dir(cfg).mkdir(parents=True)  # workers stage below it; the store itself takes nothing
    if subprocess.run(["chattr", "+i", str(store)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted on this machine")
    try:
        assert run_study(cfg, out=io.StringIO()) == 0
    finally:
        subprocess.run(["chattr", "-i", str(store)], check=True)
    err = capsys.readouterr().err
    study = load(path)
    trials = counted(study)
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert records.weights_artifact(study, t) is None
        lines = [line for line in err.splitlines() if line.startswith(f"trial {t.number}: its weights were not kept")]
        assert len(lines) == 1 and "Operation not permitted" in lines[0], err[-2000:]
    assert not any(records.staging_dir(cfg).rglob("*.pt"))  # nothing staged is left behind
