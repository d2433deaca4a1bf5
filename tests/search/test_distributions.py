"""Distribution syntax of space files: each kind validated by its pydantic model, errors naming file and key."""
from __future__ import annotations

import optuna
import pytest

from sksearch.errors import UserError
from sksearch.search.distributions import ENUMERATE_LIMIT, parse_distribution


def parse(raw: object):
    return parse_distribution(raw, name="r", key="sk.r", file="space.yaml", where="search.sk.r")


def test_each_kind_becomes_a_dimension_that_optuna_samples() -> None:
    dims = [parse({"choices": [[1, 1], [2, 2]]}), parse({"int": [2, 32], "log": True}),
            parse({"int": [16, 64], "step": 16}), parse({"float": [0.5, 2], "step": 0.25}),
            parse({"float": [1e-3, 1], "log": True})]
    assert [d.kind for d in dims] == ["choices", "int", "int", "float", "float"]
    assert dims[2].values() == [16, 32, 48, 64] and dims[3].values() is None
    assert [d.describe() for d in dims] == ['r: {[1, 1], [2, 2]}', "r: int [2, 32] log", "r: int [16, 64] step 16",
                                            "r: float [0.5, 2] step 0.25", "r: float [0.001, 1] log"]
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    assert dims[0].suggest(trial) in ([1, 1], [2, 2])  # lists are Optuna choices as JSON text, decoded back
    assert trial.params["r"] in ("[1, 1]", "[2, 2]")


def test_a_long_int_range_is_not_enumerated() -> None:
    assert parse({"int": [0, ENUMERATE_LIMIT * 2]}).values() is None
    assert parse({"int": [0, ENUMERATE_LIMIT * 2]}).bounds() == [0, ENUMERATE_LIMIT * 2]


@pytest.mark.parametrize("raw, key, words", [
    ({"int": [1, 8], "base": 2}, "search.sk.r.base", "allowed: int, log, step"),
    ({"choices": [1], "log": True}, "search.sk.r.log", "allowed: choices"),
    ({"int": [0, 8], "log": True}, "search.sk.r.log", "low > 0"),
    ({"float": [0.1, 1], "log": True, "step": 0.1}, "search.sk.r.step", "cannot be combined"),
    ({"int": [True, 8]}, "search.sk.r.int", "valid integer"),
    ({"int": [1, 2, 3]}, "search.sk.r.int", "at most 2"),
    ({"int": [1.5, 8]}, "search.sk.r.int", "valid integer"),
    ({"float": ["a", 8]}, "search.sk.r.float", "valid number"),
    ({"float": [0, 1], "step": 0.3}, "search.sk.r.step", "not a multiple of step 0.3"),
    ({"int": [1, 8], "step": 0}, "search.sk.r.step", "greater than 0"),
    ({"int": [1, 8], "log": "yes"}, "search.sk.r.log", "valid boolean"),
    ({"choices": [[1, 2], [1, 2]]}, "search.sk.r.choices", "duplicate"),
    ({"choices": "abc"}, "search.sk.r.choices", "valid list"),
    ({"choices": [1], "int": [1, 2]}, "search.sk.r", "one distribution kind per key"),
])
def test_bad_distributions_name_the_key(raw: object, key: str, words: str) -> None:
    with pytest.raises(UserError) as err:
        parse(raw)
    assert err.value.file == "space.yaml" and err.value.key == key, str(err.value)
    assert words in str(err.value)
