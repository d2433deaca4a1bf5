"""A real small study in a real SQLite storage, written through Optuna's API as the tuner would
(the storage contract in ../../../shared/design/architecture.md section 4), covering every trial state.

`make_results_study(root, dataset=...)` is importable by other tests:
    from tests.results.conftest import make_results_study   (or use the `results_study` fixture)
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

from sksearch.complexity import count
from sksearch.config import StudyConfig, load_study
from sksearch.spec import load_spec

MAX_MACS = 6_000_000_000
MAX_EPOCHS = 3

# name -> (preset, overrides, outcome, accuracy, extra user attrs)
TRIALS: list[tuple[str, str, list[str], str, float, dict[str, Any]]] = [
    ("resnext29", "resnext29_16x32d", [], "full", 0.900, {}),
    ("sknet29", "sknet29", [], "full", 0.930, {}),
    ("sknet29_r16", "sknet29", ["sk.r=16"], "full", 0.925, {}),
    ("small_g16", "sknet29", ["widths=[128,256,512]"], "full", 0.880, {}),
    ("tiny_g8", "sknet29", ["widths=[64,128,256]", "sk.G=8"], "full", 0.840, {}),
    ("small_k1", "sknet29", ["widths=[128,256,512]", "sk.G=32", "sk.r=8"], "full", 0.800, {}),
    ("g40", "sknet29", ["widths=[160,320,640]", "sk.G=40", "sk.branches.1={kernel: 3, dilation: 2}"], "full",
     0.910, {}),
    ("pruned_m3", "sknet29", ["widths=[128,256,512]", "sk.r=8", "sk.branches=[{kernel: 3}, {kernel: 3, dilation: 2}, "
                                        "{kernel: 3, dilation: 3}]"], "pruned", 0.600, {"epochs_done": 1}),
    ("pruned_small", "sknet29", ["widths=[128,256,512]", "sk.L=16"], "pruned", 0.500, {"epochs_done": 1}),
    ("over_budget", "resnext29_16x64d", [], "infeasible", 0.0, {}),
    ("crashed", "sknet29", ["widths=[128,256,512]", "sk.attention=sum"], "failed", 0.300,
     {"epochs_done": 1, "error": "RuntimeError: CUDA out of memory"}),
    ("invalid", "", [], "invalid", 0.0, {}),
    ("interrupted", "sknet29", ["widths=[64,128,256]", "sk.G=8", "sk.r=8"], "interrupted", 0.200,
     {"epochs_done": 1}),
]

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
    url = cfg.storage_url()
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_metric_names(["accuracy", "macs"])
    study.set_user_attr("config", cfg.model_dump(mode="json"))
    for k, (tag, preset, overrides, outcome, acc, extra) in enumerate(TRIALS):
        if outcome == "invalid":  # structurally invalid: never counted, FAIL with the reason
            trial = _ask(study, {"G": 48, "r": 16, "L": 32, "M": 2, "attention": "softmax"})
            trial.set_user_attr("infeasible", "sk.G: 48 groups do not divide the SK width 512")
            study.tell(trial, state=TrialState.FAIL)
            continue
        spec = load_spec(preset, overrides)
        c = count(spec)
        params = {"G": spec.sk.G, "r": spec.sk.r, "L": spec.sk.L, "M": spec.M, "attention": spec.sk.attention}
        for i, b in enumerate(spec.sk.branches, 1):
            params[f"path{i}.kernel"], params[f"path{i}.dilation"], params[f"path{i}.relu"] = \
                b.kernel, b.dilation, b.relu
        trial = _ask(study, params)
        attrs: dict[str, Any] = {
            "spec": spec.to_dict(), "label": spec.sk.label(), "params": c.params, "macs": c.macs,
            "select_macs": c.select_macs, "max_epochs": MAX_EPOCHS, "epochs_done": MAX_EPOCHS,
            "full_fidelity": outcome == "full", "accuracy": acc, "fixture_tag": tag,
            "train_seconds": 10.0 + k, "images_per_second": 500.0,
        }
        attrs.update(extra)
        attrs["accuracy_history"] = [round(acc * (e + 1) / attrs["epochs_done"], 4)
                                     for e in range(attrs["epochs_done"])]
        if outcome == "infeasible":
            attrs.update(infeasible=f"macs {c.macs} over constraints.max_macs {MAX_MACS}", epochs_done=0,
                         train_seconds=0.0, accuracy_history=[])
            del attrs["accuracy"]
        if outcome == "interrupted":
            attrs["interrupted"] = True
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        trial.set_constraint("max_macs", float(c.macs - MAX_MACS))
        if outcome in ("full", "infeasible"):
            study.tell(trial, [acc, float(c.macs)])
        elif outcome == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)
    return cfg


def trial_by_tag(cfg: StudyConfig, tag: str) -> optuna.trial.FrozenTrial:
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    return next(t for t in study.trials if t.user_attrs.get("fixture_tag") == tag)


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
