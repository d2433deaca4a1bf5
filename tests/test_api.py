"""The Python API (`import sksearch`): real builders and counters, a real study's storage, and the notebook
page run end to end on a tiny study (real Ray, Optuna, SQLite)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import sksearch
from sksearch.complexity import count as measure
from sksearch.errors import UserError
from sksearch.results.pareto import front_trials
from sksearch.storage import records
from tests.results.conftest import make_results_study, results_study  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"backbone": "resnext_cifar", "depths": [1, 1, 1], "widths": [16, 32, 64], "out_channels": [32, 64, 128],
        "num_classes": 10, "input_size": [3, 32, 32],
        "sk": {"G": 4, "r": 4, "L": 8, "branches": [{"kernel": 3}, {"kernel": 3, "dilation": 2}]}}


def test_create_model_takes_a_preset_a_mapping_a_file_or_a_spec_with_dotted_overrides(tmp_path, one_torch_thread):
    model = sksearch.create_model(TINY, **{"sk.r": 8, "num_classes": 7})
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    spec = sksearch.ArchSpec.from_dict(TINY)
    (tmp_path / "tiny.yaml").write_text(__import__("yaml").safe_dump(TINY))
    for source in (spec, tmp_path / "tiny.yaml", str(tmp_path / "tiny.yaml")):
        built = sksearch.create_model(source)
        assert sum(p.numel() for p in built.parameters()) == sksearch.count(TINY).params
    assert sksearch.create_model("sknet26", **{"sk.r": 8}) is not None
    with pytest.raises(UserError, match="sk.G"):
        sksearch.create_model(TINY, **{"sk.G": 5})
    with pytest.raises(TypeError):
        sksearch.create_model(42)


def test_count_is_the_meta_device_count():
    c = sksearch.count("sknet50")
    assert c == (27_479_784, 4_462_710_784, 5_519_360)
    full = measure(sksearch.ArchSpec.from_dict(TINY).replace(**{"sk.r": 8}))
    assert sksearch.count(TINY, **{"sk.r": 8}) == (full.params, full.macs, full.select_macs)


def test_load_study_tables_follow_the_storages_read_view(results_study):
    study = sksearch.load_study(results_study.source)
    optuna_trials = study.optuna.get_trials()
    table = study.trials()
    assert list(table["number"]) == [t.number for t in optuna_trials]
    assert list(table["status"]) == [records.status(t) for t in optuna_trials]
    assert {"duplicate", "infeasible", "pruned", "full", "failed", "interrupted"} <= set(table["status"])
    front = study.front()
    assert sorted(front["number"]) == sorted(t.number for t in front_trials(study.optuna))
    assert list(front["macs"]) == sorted(front["macs"]) and front["on_front"].all()
    best = study.best_trial()
    assert best == int(front.loc[front["accuracy"].idxmax(), "number"])
    row = table.set_index("number").loc[best]
    spec = study.spec(best)
    assert (row["M"], row["G"], row["r"], row["paths"]) == (spec.M, spec.sk.G, spec.sk.r,
                                                            "+".join(b.name for b in spec.sk.branches))
    with pytest.raises(KeyError, match="no trial 99"):
        study.spec(99)
    with pytest.raises(UserError):  # the fixture's trials kept no weights: the message names that
        study.weights(best)
    assert "results-fixture" in repr(study)


def test_load_study_never_creates_a_storage(tmp_path):
    cfg = make_results_study(tmp_path / "a", name="exists")
    other = Path(cfg.source).with_name("missing.yaml")
    other.write_text(Path(cfg.source).read_text().replace("name: exists", "name: missing")
                     .replace("runs/exists", "runs/missing"))
    with pytest.raises(UserError, match="no study named 'missing'"):
        sksearch.load_study(other, storage=cfg.storage_url())
    before = sorted(p.name for p in (tmp_path / "a").rglob("*"))
    with pytest.raises(UserError):
        sksearch.load_study(other)  # its own default storage does not exist: not created either
    assert sorted(p.name for p in (tmp_path / "a").rglob("*")) == before


def notebook_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "docs" / "notebook.md").read_text(), flags=re.S | re.M)


@pytest.mark.slow
def test_the_notebook_page_runs_on_a_tiny_study(tmp_path, capsys):
    from tests.tune.helpers import write_study

    path = write_study(tmp_path, n_trials=3, epochs=1, concurrent=1)  # one trial process: the page is what is tested
    namespace: dict = {}
    blocks = notebook_blocks()
    assert 'sksearch.run_study("studies/quickstart.yaml")' in blocks[0]
    for block in blocks:
        exec(compile(block.replace("studies/quickstart.yaml", str(path)), "docs/notebook.md", "exec"), namespace)
    study = namespace["study"]
    assert isinstance(study, sksearch.Study) and len(study.trials()) >= 3
    assert len(namespace["front"]) >= 1 and namespace["fig"].data
    best = namespace["best"]
    assert namespace["logits"].shape == (8, 10)
    weights = study.weights(best)
    model = sksearch.create_model(study.spec(best))
    model.load_state_dict(weights, strict=True)  # the kept weights are exactly the trial's network's
    assert study.spec(best).label() in capsys.readouterr().out
    again = sksearch.run_study(path, out=__import__("io").StringIO())  # a rerun only reads the finished study
    assert list(again.trials()["number"]) == list(study.trials()["number"])
