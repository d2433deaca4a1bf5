"""Budget checks: counts on the meta device, reasons in one line, Optuna constraint values, never real weights."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sksearch.complexity import count
from sksearch.config import Constraints, load_study
from sksearch.search.feasibility import check_spec, sample_feasibility
from sksearch.units import format_count
from sksearch.models import preset_dict
from sksearch.search.space import SearchSpace
from sksearch.spec import ArchSpec

from tests.fresh import peak_rss_growth_mib

ROOT = Path(__file__).resolve().parents[2]
CIFAR = {"num_classes": 10, "input_size": [3, 32, 32]}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sknet29(**changes) -> dict:
    data = preset_dict("sknet29")
    for key, value in changes.items():
        if key.startswith("sk_"):
            data["sk"][key[3:]] = value
        else:
            data[key] = value
    return data


def test_a_spec_within_budget_is_feasible_with_negative_constraints() -> None:
    feas = check_spec(sknet29(), Constraints(max_macs="10G", max_params="40M"), **CIFAR)
    assert feas.feasible and feas.reason is None
    assert isinstance(feas.spec, ArchSpec) and feas.spec.num_classes == 10
    c = count(feas.spec)
    assert (feas.params, feas.macs) == (c.params, c.macs)
    assert list(feas.constraints) == ["valid", "max_macs", "max_params"]
    assert feas.constraints["valid"] == 0.0
    assert feas.constraints["max_macs"] == pytest.approx(c.macs / 10e9 - 1) and feas.constraints["max_macs"] < 0


def test_the_dataset_geometry_is_fitted_into_the_spec() -> None:
    feas = check_spec(sknet29(num_classes=1000, input_size=[3, 224, 224]), Constraints(), num_classes=100,
                      input_size=[3, 32, 32])
    assert feas.spec.num_classes == 100 and feas.spec.input_size == [3, 32, 32]
    assert feas.constraints == {"valid": 0.0}


def test_over_budget_names_the_budget_and_is_still_measured() -> None:
    feas = check_spec(sknet29(), Constraints(max_macs="500M", max_params="1G"), **CIFAR)
    assert not feas.feasible
    assert feas.reason == f"macs {format_count(feas.macs)} > max_macs 500M"
    assert "\n" not in feas.reason
    assert feas.spec is not None and feas.constraints["max_macs"] > 0 and feas.constraints["max_params"] < 0


def test_both_budgets_exceeded_gives_one_line() -> None:
    feas = check_spec(sknet29(), Constraints(max_macs="1M", max_params="1M"), **CIFAR)
    assert feas.reason.startswith("macs ") and "; params " in feas.reason and "\n" not in feas.reason


def test_an_invalid_combination_is_infeasible_with_the_key() -> None:
    feas = check_spec(sknet29(widths=[32, 64, 128], sk_G=24), Constraints(max_macs="1G"), **CIFAR)
    assert feas.spec is None and feas.params is None and feas.macs is None
    assert feas.reason.startswith("sk.G: 24 groups do not divide")
    # Same entries, same order as a valid spec: Optuna's GP sampler requires it.
    assert feas.constraints == {"valid": 1.0, "max_macs": 0.0}


def test_softmax_with_one_path_is_reported_not_built() -> None:
    feas = check_spec(sknet29(sk_branches=[{"kernel": 3}]), Constraints(), **CIFAR)
    assert not feas.feasible and feas.reason.startswith("sk.attention:")


def test_a_huge_spec_is_checked_without_allocating_weights() -> None:
    # SKNet-29 with widths x16: ~7 billion parameters, 28 GB of float32 weights if they were ever allocated.
    huge = sknet29(widths=[512 * 16, 1024 * 16, 2048 * 16], out_channels=[4096, 8192, 16384])
    feas = check_spec(huge, Constraints(max_params="100M"), **CIFAR)
    assert not feas.feasible and feas.params > 5e9 and feas.reason.startswith("params ")
    # Feasibility carries counts and the spec, never a module.
    assert {type(v).__name__ for v in vars(feas).values()} <= {"ArchSpec", "int", "str", "dict", "NoneType"}
    # Memory in a fresh process: this one's peak was raised by earlier tests, which would hide any growth.
    growth = peak_rss_growth_mib(
        "from sksearch.config import Constraints\n"
        "from sksearch.search.feasibility import check_spec\n"
        "from sksearch.models import preset_dict\n"
        "cifar = {'num_classes': 10, 'input_size': [3, 32, 32]}\n"
        "check_spec(preset_dict('sknet29'), Constraints(), **cifar)  # warm the counter's code paths\n"
        f"huge = {huge!r}\n"
        "MEASURE\n"
        "assert check_spec(huge, Constraints(max_params='100M'), **cifar).params > 5e9\n")
    assert growth < 200, f"{growth:.0f} MiB"  # the weights alone would be ~28000 MiB


def test_sample_feasibility_uses_the_study_budget_and_geometry() -> None:
    study = load_study(ROOT / "studies" / "quickstart.yaml")
    space = SearchSpace.load(study.space_path())
    sampled = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    reasons = set()
    for _ in range(30):
        trial = sampled.ask()
        feas = sample_feasibility(space, trial, study)
        assert list(feas.constraints) == ["valid", "max_macs"]
        if feas.spec is not None:
            assert feas.spec.num_classes == 10 and feas.spec.input_size == [3, 32, 32]
            assert feas.feasible == (feas.macs <= study.constraints.max_macs)
        if feas.reason:
            reasons.add(feas.reason.split(" ")[0])
        # the tuner's recording path, on a real Optuna study
        for name, value in feas.constraints.items():
            trial.set_constraint(name, value)
        sampled.tell(trial, 0.0 if not feas.feasible else 1.0)
    assert {"sk.G:", "macs"} <= reasons  # tiny_cifar reaches both kinds of infeasibility
    assert all(t.constraints for t in sampled.trials)
