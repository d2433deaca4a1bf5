"""A real small study in a real SQLite storage, written through the production writers (storage.open,
storage.records, search.feasibility.check_spec) as the driver would, covering every trial state that
production can leave: full, pruned, infeasible (over budget and structurally invalid), failed with an error,
interrupted (its driver stopped: FAIL without an error, as StudySearcher.close leaves it) and a repeated spec.

`make_results_study(root, dataset=...)` is importable by other tests:
    from tests.results.conftest import make_results_study   (or use the `results_study` fixture)
Trial numbers follow TRIALS' order: `trial_by_tag(cfg, tag)`.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from sksearch.config import StudyConfig, load_study
from sksearch.search.feasibility import check_spec, invalid
from sksearch.spec import load_spec
from sksearch.storage import records
from sksearch.storage.open import load_or_create_study, open_storage

MAX_MACS = 6_000_000_000
MAX_EPOCHS = 3

# tag -> (preset, overrides, outcome, accuracy, epochs trained, error)
TRIALS: list[tuple[str, str, list[str], str, float, int, str | None]] = [
    ("resnext29", "resnext29_16x32d", [], "full", 0.900, MAX_EPOCHS, None),
    ("sknet29", "sknet29", [], "full", 0.930, MAX_EPOCHS, None),
    ("sknet29_r16", "sknet29", ["sk.r=16"], "full", 0.925, MAX_EPOCHS, None),
    ("small_g16", "sknet29", ["widths=[128,256,512]"], "full", 0.880, MAX_EPOCHS, None),
    ("tiny_g8", "sknet29", ["widths=[64,128,256]", "sk.G=8"], "full", 0.840, MAX_EPOCHS, None),
    ("small_k1", "sknet29", ["widths=[128,256,512]", "sk.G=32", "sk.r=8"], "full", 0.800, MAX_EPOCHS, None),
    ("g40", "sknet29", ["widths=[160,320,640]", "sk.G=40", "sk.branches.1={kernel: 3, dilation: 2}"], "full",
     0.910, MAX_EPOCHS, None),
    ("pruned_m3", "sknet29", ["widths=[128,256,512]", "sk.r=8", "sk.branches=[{kernel: 3}, {kernel: 3, dilation: 2}, "
                                        "{kernel: 3, dilation: 3}]"], "pruned", 0.600, 1, None),
    ("pruned_small", "sknet29", ["widths=[128,256,512]", "sk.L=16"], "pruned", 0.500, 1, None),
    ("over_budget", "resnext29_16x64d", [], "infeasible", 0.0, 0, None),
    ("crashed", "sknet29", ["widths=[128,256,512]", "sk.attention=sum"], "failed", 0.300, 1,
     "Traceback (most recent call last):\nRuntimeError: CUDA out of memory"),
    ("invalid", "", [], "invalid", 0.0, 0, None),
    ("interrupted", "sknet29", ["widths=[64,128,256]", "sk.G=8", "sk.r=8"], "interrupted", 0.200, 1, None),
    ("repeat_of_sknet29", "sknet29", [], "duplicate", 0.0, 0, None),
]
TAGS = [t[0] for t in TRIALS]

DIST = {
    "G": CategoricalDistribution([8, 16, 32, 40, 48]),
    "r": CategoricalDistribution([8, 16, 32]),
    "L": CategoricalDistribution([16, 32]),
    "M": IntDistribution(1, 3),
    "attention": CategoricalDistribution(["softmax", "sum"]),
}
PATH_DIST = {"kernel": CategoricalDistribution([1, 3, 5]), "dilation": IntDistribution(1, 3),
             "relu": CategoricalDistribution([True, False])}


def _write_study_file(root: Path, name: str, dataset: str) -> Path:
    (root / "space.yaml").write_text("# the fixture's trials are written directly; this file is not read\n{}\n")
    out = root / "runs" / name
    path = root / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nsearch_space: space.yaml\ndataset: {{name: {dataset}}}\n"
        f"objectives:\n  - {{metric: accuracy, direction: maximize}}\n  - {{metric: macs, direction: minimize}}\n"
        f"constraints: {{max_macs: 6G}}\ntrain: {{epochs: {MAX_EPOCHS}}}\noutput_dir: {out}\n")
    return path


def _ask(study: optuna.Study, spec_params: dict[str, Any]) -> optuna.Trial:
    study.enqueue_trial(spec_params)
    trial = study.ask()
    for key, dist in DIST.items():
        if key in spec_params:
            if isinstance(dist, IntDistribution):
                trial.suggest_int(key, dist.low, dist.high)
            else:
                trial.suggest_categorical(key, dist.choices)
    for key in spec_params:  # pathN.*: conditional, present only when the path exists
        if key.startswith("path"):
            dist = PATH_DIST[key.split(".", 1)[1]]
            if isinstance(dist, IntDistribution):
                trial.suggest_int(key, dist.low, dist.high)
            else:
                trial.suggest_categorical(key, dist.choices)
    return trial


def make_results_study(root: Path, *, dataset: str = "cifar10", name: str = "results-fixture") -> StudyConfig:
    """Write <root>/<name>.yaml and its SQLite study (every trial state); returns the loaded study config."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = load_study(_write_study_file(root, name, dataset))
    storage = open_storage(cfg.storage_url())
    study = load_or_create_study(cfg, storage, optuna.samplers.RandomSampler(seed=0))
    num_classes, input_size = cfg.geometry()
    full: dict[str, optuna.trial.FrozenTrial] = {}
    for k, (tag, preset, overrides, outcome, acc, epochs, error) in enumerate(TRIALS):
        if outcome == "invalid":  # structurally invalid: never counted, FAIL with the reason
            trial = _ask(study, {"G": 48, "r": 16, "L": 32, "M": 2, "attention": "softmax"})
            feas = invalid("sk.G: 48 groups do not divide the SK width 512", cfg.constraints)
            records.set_constraints(trial, feas.constraints)
            records.record_sampled(trial, {}, "invalid", None, None, None, MAX_EPOCHS)
            records.record_infeasible(study, trial, cfg, feas.reason, None, None)
            continue
        feas = check_spec(load_spec(preset, overrides).to_dict(), cfg.constraints, num_classes=num_classes,
                          input_size=input_size)
        spec = feas.spec
        params = {"G": spec.sk.G, "r": spec.sk.r, "L": spec.sk.L, "M": spec.M, "attention": spec.sk.attention}
        for i, b in enumerate(spec.sk.branches, 1):
            params[f"path{i}.kernel"], params[f"path{i}.dilation"], params[f"path{i}.relu"] = \
                b.kernel, b.dilation, b.relu
        trial = _ask(study, params)
        twin = full.get(tag.removeprefix("repeat_of_")) if outcome == "duplicate" else None
        records.set_constraints(trial, feas.constraints, repeated=twin is not None)
        records.record_sampled(trial, spec.to_dict(), spec.sk.label(), feas.params, feas.macs, feas.select_macs,
                               MAX_EPOCHS)
        if outcome == "infeasible":
            assert not feas.feasible
            records.record_infeasible(study, trial, cfg, feas.reason, feas.params, feas.macs)
            continue
        assert feas.feasible, (tag, feas.reason)
        if twin is not None:
            records.record_duplicate(study, trial, twin)
            continue
        history = [round(acc * (e + 1) / epochs, 4) for e in range(epochs)]
        for e in range(1, epochs + 1):
            records.record_epoch(study._storage, trial._trial_id, epoch=e, accuracy=history[e - 1],
                                 history=history[:e], train_seconds=(10.0 + k) * e / epochs, images_per_second=500.0)
        if outcome == "interrupted":  # what StudySearcher.close leaves for a trial its driver was training
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            continue
        state = records.record_end(study, trial, cfg, epochs_done=epochs, max_epochs=MAX_EPOCHS, accuracy=acc,
                                   params=feas.params, macs=feas.macs, error=error)
        assert state.name.lower().startswith({"full": "complete", "pruned": "pruned", "failed": "fail"}[outcome])
        if outcome == "full":
            full[tag] = study.trials[-1]
    return cfg


def tag_of(number: int) -> str:
    return TAGS[number]


def trial_by_tag(cfg: StudyConfig, tag: str) -> optuna.trial.FrozenTrial:
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    return study.trials[TAGS.index(tag)]


@pytest.fixture(scope="session")
def results_study(tmp_path_factory: pytest.TempPathFactory) -> StudyConfig:
    """A cifar10 study (built once per session; tests must not write to it)."""
    return make_results_study(tmp_path_factory.mktemp("results"))


# -- reading a report's figures back ---------------------------------------------------------------------------

def _decode(obj: Any) -> Any:
    # plotly may write arrays as {"dtype", "bdata"} (base64); turn them back into lists.
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            return arr.reshape(obj["shape"]).tolist() if "shape" in obj else arr.tolist()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def plotly_figures(html_text: str) -> dict[str, dict[str, Any]]:
    """{div id: {"data": [...], "layout": {...}}} from every Plotly.newPlot(...) call in a page."""
    dec = json.JSONDecoder()
    out = {}
    for m in re.finditer(r"Plotly\.newPlot\(\s*", html_text):
        pos = m.end()
        args = []
        for _ in range(3):
            value, end = dec.raw_decode(html_text, pos)
            args.append(value)
            pos = re.compile(r"\s*,\s*").match(html_text, end).end()
        out[args[0]] = {"data": _decode(args[1]), "layout": _decode(args[2])}
    return out
