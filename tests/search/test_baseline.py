"""A space file with only `base:` is a baseline: the one spec trains once, and the study ends normally."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from tests.tune.helpers import counted, load, run_cli, write_study

BASE_ONLY = ("description: the baseline\nbase:\n  backbone: resnext_cifar\n  depths: [1, 1, 1]\n"
             "  widths: [16, 32, 64]\n  out_channels: [32, 64, 128]\n  stem_channels: 16\n"
             "  sk: {G: 8, r: 8, L: 16, attention: softmax, branches: [{kernel: 3}, {kernel: 1}]}\n")


@pytest.mark.slow
def test_sksearch_run_on_a_base_only_space_trains_it_once(tmp_path: Path, one_torch_thread: None) -> None:
    import torch

    from sksearch.config import load_study
    from sksearch.search.feasibility import check_spec
    from sksearch.search.space import SearchSpace
    from sksearch.search.trial import train_as_trial
    from sksearch.storage.records import Key

    (tmp_path / "base.yaml").write_text(BASE_ONLY)
    # Two free slots and four trials asked for: still one training, never two copies side by side.
    path = write_study(tmp_path, n_trials=4, epochs=1, concurrent=2, search_space=str(tmp_path / "base.yaml"))
    study_file = yaml.safe_load(path.read_text())
    study_file["train"]["seed"] = 3  # a row of bench/tables/sk_bench.json is retrained with its own seed
    path.write_text(yaml.safe_dump(study_file, sort_keys=False))
    done = run_cli([str(path)], timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "nothing searched" in done.stdout and "the space holds one spec" in done.stdout
    study = load(path)
    trained = counted(study)
    assert [t.state for t in trained] == [TrialState.COMPLETE] and trained[0].user_attrs["full_fidelity"]
    assert len(study.get_trials()) == 1  # no pile of copies either
    assert len(study.best_trials) == 1
    # The curve is the one train_as_trial gives outside Ray, which is how bench/sk_table.py records its rows.
    cfg = load_study(path)
    num_classes, input_size = cfg.geometry()
    spec = check_spec(SearchSpace.load(cfg.space_path()).base.to_dict(), cfg.constraints,
                      num_classes=num_classes, input_size=input_size).spec
    result = train_as_trial(cfg, spec, seed=3, epochs=1, device=torch.device("cpu"))
    assert [round(r.val_accuracy, 6) for r in result.history] == trained[0].user_attrs[Key.ACCURACY_HISTORY]


def test_an_over_budget_baseline_stops_after_one_sample(tmp_path: Path) -> None:
    # The searcher alone, on a real SQLite storage: no Ray cluster is needed to ask it for a trial.
    import optuna
    from ray.tune.search import Searcher

    from sksearch.config import load_study
    from sksearch.search.searcher import StudySearcher
    from sksearch.search.space import SearchSpace
    from sksearch.storage import records as st
    from sksearch.storage.open import load_or_create_study, open_storage

    (tmp_path / "base.yaml").write_text(BASE_ONLY)
    cfg = load_study(write_study(tmp_path, n_trials=2, search_space=str(tmp_path / "base.yaml"),
                                 constraints={"max_macs": "1M"}))
    store = open_storage(cfg.storage_url())
    study = load_or_create_study(cfg, store, optuna.samplers.RandomSampler(seed=0))
    searcher = StudySearcher(cfg, SearchSpace.load(cfg.space_path()), study, store, n_trials=2)
    try:
        assert searcher.suggest("a") == Searcher.FINISHED  # not 500 samples of the same spec
    finally:
        searcher.close()
    assert "infeasible" in (searcher.stop_reason or "")
    trials = study.get_trials()
    assert len(trials) == 1 and "macs" in trials[0].user_attrs[st.Key.INFEASIBLE]
