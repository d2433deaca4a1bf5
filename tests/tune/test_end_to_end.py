"""A tiny study end to end on SQLite: real Ray Tune, real Optuna, the synthetic data set."""
from __future__ import annotations

import io
import json

from optuna.trial import TrialState

from sksearch.config import load_study
from sksearch.results.attention import attention_pointer
from sksearch.search.tune import run_study
from sksearch.storage import records as st

from tests.tune.helpers import counted, forbid_ray_start, load, write_study

CONTRACT_ATTRS = {"spec", "params", "macs", "epochs_done", "max_epochs", "full_fidelity", "train_seconds",
                  "images_per_second"}


def test_tiny_study_records_the_contract_and_survives_a_failing_trial(tmp_path, monkeypatch):
    # Trial 1 raises after its first epoch: it must be FAIL with its error while the study completes.
    # One trial process at a time: what is checked does not need two (and a trial process costs ~5 CPU-s to start).
    monkeypatch.setenv("SKSEARCH_INJECT_FAULT", "1:raise")
    path = write_study(tmp_path, n_trials=4, epochs=2, concurrent=1)
    out = io.StringIO()
    assert run_study(load_study(path), out=out) == 0
    text = out.getvalue()

    study = load(path)
    assert study.metric_names == ["accuracy", "macs"]
    trials = counted(study)
    assert len(trials) == 4
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [1]
    assert "injected fault" in failed[0].user_attrs["error"]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3
    for t in done:
        assert CONTRACT_ATTRS <= set(t.user_attrs), set(t.user_attrs)
        a = t.user_attrs
        assert a["full_fidelity"] is True and a["epochs_done"] == a["max_epochs"] == 2
        assert isinstance(a["params"], int) and isinstance(a["macs"], int)
        assert t.values == [a["accuracy"], float(a["macs"])]
        assert 0.0 <= a["accuracy"] <= 1.0 and len(a["accuracy_history"]) == 2
        assert a["spec"]["num_classes"] == 10 and a["spec"]["input_size"] == [3, 32, 32]
        assert set(t.params) >= {"M", "G", "r"}  # readable Optuna parameter names
    # The printed front is the report's and Optuna's: same trials, same accuracies.
    printed = _printed_front(text)
    summary = json.loads((load_study(path).out_dir() / "report" / "summary.json").read_text())
    assert printed and set(printed) == {f["trial"] for f in summary["front"]} == {t.number for t in study.best_trials}
    for f in summary["front"]:
        assert printed[f["trial"]] == round(f["accuracy"], 4)
    # The run ends pointing at `sksearch attention` for its best trial with attention, when there is one.
    pointer = attention_pointer(study, load_study(path))
    assert ("look inside: sksearch attention" in text) == (pointer is not None)
    assert pointer is None or pointer in text

    # Rerunning the finished study trains nothing more and keeps every trial; a harmless edit is said.
    path.write_text(path.read_text().replace("max_concurrent: 1", "max_concurrent: 2"))
    forbid_ray_start(monkeypatch)  # nothing is left to train: Ray is not even started
    rerun = io.StringIO()
    assert run_study(load_study(path), out=rerun) == 0
    assert "tune.max_concurrent (1 -> 2)" in rerun.getvalue()
    assert [t.number for t in counted(load(path))] == [t.number for t in trials]


def _printed_front(text: str) -> dict[int, float]:
    """{trial: accuracy} from the front table run_study prints."""
    rows = text.split("Pareto front (full-fidelity trials):", 1)[1].splitlines()[3:]
    out = {}
    for row in rows:
        cells = row.split()
        if not cells or not cells[0].isdigit():
            break
        out[int(cells[0])] = float(next(c for c in cells[1:] if c.replace(".", "").isdigit() and "." in c))
    return out


def test_an_edited_recipe_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch):
    from sksearch.run import main

    path = write_study(tmp_path, n_trials=1, epochs=1, concurrent=1)
    assert run_study(load_study(path), out=io.StringIO()) == 0
    before = len(load(path).trials)
    path.write_text(path.read_text().replace("epochs: 1", "epochs: 2"))
    forbid_ray_start(monkeypatch)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "train.epochs" in err and "--fresh" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert len(load(path).trials) == before


def test_asha_stopped_trials_are_pruned_not_complete(tmp_path):
    path = write_study(tmp_path, n_trials=6, epochs=3, concurrent=1,
                       scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3})
    assert run_study(load_study(path), out=io.StringIO()) == 0
    trials = counted(load(path))
    assert len(trials) == 6
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "ASHA with reduction factor 3 over 6 trials stops some"
    for t in pruned:
        assert t.values is None  # partial results never look like finished ones
        assert t.user_attrs["full_fidelity"] is False
        assert t.user_attrs["epochs_done"] < t.user_attrs["max_epochs"]
        assert "accuracy" in t.user_attrs  # the last values are kept as user attributes
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["epochs_done"] == 3 and t.user_attrs["full_fidelity"] is True


def test_over_budget_specs_are_recorded_infeasible_and_never_trained(tmp_path):
    # Under 3M MACs, only the smallest networks of the micro space fit; the rest must be skipped, not trained.
    path = write_study(tmp_path, n_trials=2, epochs=1, concurrent=1, constraints={"max_macs": "3M"})
    assert run_study(load_study(path), out=io.StringIO()) == 0
    study = load(path)
    infeasible = [t for t in study.get_trials() if "infeasible" in t.user_attrs]
    assert infeasible, "the random sampler should hit over-budget specs"
    for t in infeasible:
        assert t.constraints and max(t.constraints.values()) > 0
        assert t.user_attrs["epochs_done"] == 0 and "train_seconds" not in t.user_attrs
        if t.constraints.get("valid", 0) > 0:  # structurally impossible (e.g. G vs a width): nothing to count
            assert t.state == TrialState.FAIL and "do not divide" in t.user_attrs["infeasible"]
        else:  # over budget: COMPLETE at the worst accuracy so that samplers learn to avoid it
            assert t.state == TrialState.COMPLETE and t.values[0] == 0.0
            assert "max_macs" in t.user_attrs["infeasible"]
    assert len(counted(study)) == 2
    assert all(t.user_attrs["macs"] <= 3_000_000 for t in counted(study))
    assert all(t.number not in {b.number for b in study.best_trials} for t in infeasible)


def test_gpu_request_on_a_gpu_less_machine_is_refused_within_seconds(tmp_path, capsys):
    from sksearch.run import main

    path = write_study(tmp_path, n_trials=1, epochs=1)
    text = path.read_text().replace("resources_per_trial:\n    cpu: 1", "resources_per_trial:\n    cpu: 1\n    gpu: 1")
    path.write_text(text)
    assert main([str(path)]) == 2  # Ray starts to see the nodes' GPUs; it must not wait for one for ever
    err = capsys.readouterr().err
    assert "tune.resources_per_trial.gpu" in err and "GPU" in err and "Traceback" not in err
    import ray

    assert not ray.is_initialized()  # the refusal leaves no Ray behind
    assert _stored_studies(path) == []  # and writes nothing to the storage


def _stored_studies(path) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(load_study(path).storage_url())]


def test_an_address_where_nothing_listens_is_refused_within_seconds(tmp_path, capsys):
    import socket

    from sksearch.run import main

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_study(tmp_path, n_trials=1, epochs=1)
    assert main([str(path), "--address", f"127.0.0.1:{port}"]) == 2  # Ray would retry it for ever
    err = capsys.readouterr().err
    assert "--address" in err and "nothing answers" in err and "Traceback" not in err
    assert _stored_studies(path) == []


def test_a_repeated_spec_is_not_trained_again_and_an_exhausted_space_ends_the_study(tmp_path):
    # A space of four specs and two networks (r builds nothing without attention): each network trains
    # once, every later sample repeats one of them.
    space = tmp_path / "two_points.yaml"
    space.write_text("base:\n  backbone: resnext_cifar\n  depths: [1, 1, 1]\n  widths: [16, 32, 64]\n"
                     "  out_channels: [32, 64, 128]\n  stem_channels: 16\n"
                     "  sk: {G: 8, r: 8, L: 16, attention: sum, branches: [{kernel: 3}]}\n"
                     "search:\n  sk.G: {choices: [4, 8]}\n  sk.r: {choices: [4, 8]}\n")
    path = write_study(tmp_path, n_trials=3, epochs=1, concurrent=1)
    path.write_text(path.read_text().replace(str(load_study(path).space_path()), str(space)))
    out = io.StringIO()
    assert run_study(load_study(path), out=out) == 0
    study = load(path)
    trained = {t.number: t for t in counted(study)}
    assert len(trained) == 2 and all(t.state == TrialState.COMPLETE for t in trained.values())
    assert {t.user_attrs["spec"]["sk"]["G"] for t in trained.values()} == {4, 8}  # the two networks
    copies = [t for t in study.get_trials() if "duplicate_of" in t.user_attrs]
    assert copies and all(t.values == trained[t.user_attrs["duplicate_of"]].values
                          and not t.user_attrs["full_fidelity"] for t in copies)
    assert "exhausted" in out.getvalue()
    assert "look inside" not in out.getvalue()  # M = 1, attention: sum: nothing to look inside
    # One front: Optuna's (optuna-dashboard's) holds the trained model once, as the report does.
    summary = json.loads((load_study(path).out_dir() / "report" / "summary.json").read_text())
    front = {f["trial"] for f in summary["front"]}
    assert {t.number for t in study.best_trials} == front and front and front <= set(trained)
    assert not front & {t.number for t in copies}  # every copy has a twin's values, none is on a front


def test_missing_cifar_stops_before_anything_starts(tmp_path, capsys, ray_must_not_start):
    from sksearch.run import main

    path = write_study(tmp_path, n_trials=1, epochs=1,
                       dataset={"name": "cifar10", "root": str(tmp_path / "nowhere")})
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py" / "data_batch_1") in err
    assert "dataset.root" in err and "download: true" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("optuna.db"))


def test_the_ehvi_sampler_proposes_untried_networks_after_its_random_start(tmp_path):
    # tune.sampler.type ehvi: two random trials, then each slot's spec is the proposer's (its prediction
    # recorded on the trial), trained as an ordinary define-by-run trial, never a network already trained.
    import yaml

    path = write_study(tmp_path, n_trials=5, epochs=2, concurrent=2)
    data = yaml.safe_load(path.read_text())
    data["tune"]["sampler"] = {"type": "ehvi", "seed": 0, "n_startup_trials": 2, "pool_size": 32}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run_study(load_study(path), out=io.StringIO()) == 0
    study = load(path)
    trained = sorted(counted(study), key=lambda t: t.number)
    assert len(trained) == 5 and all(t.state == TrialState.COMPLETE for t in trained)
    proposed = [t for t in trained if "proposal" in t.user_attrs]
    assert len(proposed) >= 2  # slots after the first two observations
    assert all(0 <= t.user_attrs["proposal"]["predicted_accuracy"] <= 1 for t in proposed)
    assert all(t.params for t in proposed)  # the space's parameters, as any define-by-run trial has
    identities = [st.identity(t) for t in trained]
    assert len(set(identities)) == len(identities)
