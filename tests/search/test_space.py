"""Search spaces: shipped files load, define-by-run sampling is conditional on M, seeding repeats."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from sksearch.errors import UserError
from sksearch.search.space import SearchSpace
from sksearch.spec import ArchSpec

ROOT = Path(__file__).resolve().parents[2]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))

optuna.logging.set_verbosity(optuna.logging.WARNING)


def load(name: str) -> SearchSpace:
    return SearchSpace.load(ROOT / "search_spaces" / f"{name}.yaml")


def write_space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def sample_trials(space: SearchSpace, n: int, seed: int = 0) -> list[tuple[dict, dict]]:
    """(trial.params, spec dict) for n trials of a real in-memory Optuna study."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        spec = space.sample(trial)
        out.append((dict(trial.params), spec))
        study.tell(trial, 0.0)
    return out


def test_the_shipped_spaces_are_there() -> None:
    names = {p.stem for p in SPACES}
    assert {"sk_mgr", "sk_paths", "sk_full", "shufflenet_sk", "tiny_cifar"} <= names


def _groups_fit(spec: dict) -> bool:
    """ResNeXt's grouped 3x3 runs on each stage's width: G must divide every one (ShuffleNet has no G)."""
    return spec["backbone"] == "shufflenet_v2" or all(w % spec["sk"]["G"] == 0 for w in spec["widths"])


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_every_shipped_space_samples_the_specs_its_parameters_say(path: Path) -> None:
    space = SearchSpace.load(path)
    assert isinstance(space.base, ArchSpec)
    described = [line.split(":")[0] for line in space.describe()]
    for params, spec in sample_trials(space, 24):
        assert set(params) <= set(described), "describe() names every parameter a trial is asked"
        sk = spec["sk"]
        for key in ("G", "r", "L", "attention"):
            if key in params:
                assert sk[key] == params[key]
        if "M" in params:
            assert len(sk["branches"]) == params["M"]
        for name in ("widths", "depths"):
            if name in params:
                assert str(spec[name]) == params[name]
        for key, value in params.items():
            if key.startswith("path") and "." in key:
                index, field = key[4:].split(".")
                assert sk["branches"][int(index) - 1][field] == value
        # The one partial impossibility the shipped spaces allow: G not dividing a stage's width. A sample is
        # refused, with that key, exactly when it happens.
        if _groups_fit(spec):
            ArchSpec.from_dict(spec)
        else:
            with pytest.raises(UserError) as info:
                ArchSpec.from_dict(spec)
            assert info.value.key == "sk.G"


def test_paths_beyond_m_are_never_asked_for() -> None:
    space = load("sk_full")
    seen_m = set()
    for params, spec in sample_trials(space, 60):
        m = params["M"]
        seen_m.add(m)
        assert len(spec["sk"]["branches"]) == m
        for index in (1, 2, 3):
            asked = {k for k in params if k.startswith(f"path{index}.")}
            if index > m:
                assert not asked, f"M={m} but the trial was asked {asked}"
            else:
                assert f"path{index}.kernel" in asked
        # softmax over one path is degenerate: attention is asked only when M > 1, and M = 1 sums.
        assert ("attention" in params) == (m > 1)
        if m == 1:
            assert spec["sk"]["attention"] == "sum"
    assert seen_m == {1, 2, 3}


def test_dilation_is_asked_only_for_kernels_above_1x1() -> None:
    space = load("sk_full")
    for params, spec in sample_trials(space, 40):
        for index, branch in enumerate(spec["sk"]["branches"], start=1):
            assert branch["kernel"] == params[f"path{index}.kernel"]
            if branch["kernel"] == 1:
                assert f"path{index}.dilation" not in params and branch["dilation"] == 1
            else:
                assert branch["dilation"] == params[f"path{index}.dilation"]


def test_parameter_names_are_readable_and_lists_are_encoded() -> None:
    params, spec = sample_trials(load("sk_full"), 1)[0]
    assert {"M", "G", "r", "L", "depths", "widths", "path1.kernel", "path1.relu"} <= set(params)
    # Optuna categorical choices must be scalars: list choices are stored as JSON text and decoded.
    assert isinstance(params["depths"], str) and json.loads(params["depths"]) == spec["depths"]
    assert isinstance(spec["widths"], list) and spec["sk"]["G"] == params["G"]
    trial = optuna.create_study().ask()
    load("sk_full").sample(trial)
    assert trial.distributions["depths"].choices == ("[1, 1, 1]", "[2, 2, 2]", "[3, 3, 3]", "[2, 3, 2]")


def test_fixed_paths_ask_nothing_and_keep_their_values() -> None:
    space = load("sk_mgr")
    for params, spec in sample_trials(space, 20):
        assert set(params) <= {"M", "G", "r"}
        branches = spec["sk"]["branches"]
        assert branches[0]["kernel"] == 3 and branches[0]["dilation"] == 1
        if len(branches) > 1:
            assert branches[1]["kernel"] == 1  # SKNet-29's 1x1 second path


def test_seeded_sampling_repeats() -> None:
    space = load("sk_full")
    first = [p for p, _ in sample_trials(space, 15, seed=7)]
    again = [p for p, _ in sample_trials(space, 15, seed=7)]
    other = [p for p, _ in sample_trials(space, 15, seed=8)]
    assert first == again
    assert first != other


def test_seeded_tpe_sampling_repeats() -> None:
    # The tuner uses TPE by default: with the same seed and results it proposes the same specs.
    space = load("tiny_cifar")

    def run() -> list[dict]:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=3))
        seen = []
        for i in range(6):
            trial = study.ask()
            space.sample(trial)
            seen.append(dict(trial.params))
            study.tell(trial, float(i % 3))
        return seen

    assert run() == run()


def test_width_mult_sets_the_shufflenet_widths() -> None:
    space = load("shufflenet_sk")
    widths = {}
    for params, spec in sample_trials(space, 20):
        built = ArchSpec.from_dict(spec)
        widths[params["width_mult"]] = built.widths
        assert built.sk.G == "depthwise"
    assert widths[0.5] == [48, 96, 192] and widths[1.0] == [116, 232, 464]


def test_inline_base_set_and_numeric_ranges(tmp_path: Path) -> None:
    path = write_space(tmp_path, """
base:
  backbone: resnext_cifar
  depths: [1, 1, 1]
  widths: [32, 64, 128]
  out_channels: [64, 128, 256]
set:
  stem_channels: 16
  sk.G: 8
search:
  sk.L: {int: [16, 64], step: 16}
  sk.r: {int: [2, 32], log: true}
  stem_channels: {choices: [16, 32]}
paths:
  M: 2
  kernel: 3
  path2: {dilation: {int: [1, 3]}}
""")
    space = SearchSpace.load(path)
    assert space.base.stem_channels == 16 and space.base.sk.G == 8
    for params, spec in sample_trials(space, 20):
        assert set(params) == {"L", "r", "stem_channels", "path2.dilation"}
        assert params["L"] in (16, 32, 48, 64) and 2 <= params["r"] <= 32
        built = ArchSpec.from_dict(spec)
        assert built.M == 2 and built.sk.branches[1].dilation == params["path2.dilation"]
    assert "r: int [2, 32] log" in space.describe()


def test_a_g_that_divides_only_some_widths_is_legal_at_load(tmp_path: Path) -> None:
    # 24 divides [48, 96, 192] but not [32, 64, 128]: the space loads; sampling decides per trial.
    path = write_space(tmp_path, """
base: sknet29
search:
  widths: {choices: [[32, 64, 128], [48, 96, 192]]}
  sk.G: {choices: [8, 24]}
""")
    assert SearchSpace.load(path).describe()[1] == "G: {8, 24}"


@pytest.mark.parametrize("text, key, words", [
    ("base: sknet29\nsearch:\n  sk.G: {choices: [24]}\n", "search.sk.G", "divide no reachable"),
    ("base: sknet29\npaths:\n  M: 2\n  path2: {groups: {choices: [16, 7]}}\n", "paths.path2.groups", "7 groups"),
    ("base: sknet29\npaths:\n  kernel: {choices: [3, 4]}\n", "paths.kernel", "odd"),
    ("base: sknet29\npaths:\n  kernel: {int: [1, 5]}\n", "paths.kernel", "odd"),
    ("base: sknet29\npaths:\n  M: {int: [0, 2]}\n", "paths.M", "at least one path"),
    ("base: sknet29\nsearch:\n  depths: {choices: [[1, 1, 1, 1]]}\n", "search.depths", "4 stages"),
    ("base: sknet29\nsearch:\n  sk.r: {float: [4, 8]}\n", "search.sk.r", "integer"),
    ("base: sknet29\nsearch:\n  sk.attention: {choices: [softmax, max]}\n", "search.sk.attention", "max"),
    ("base: sknet29\nsearch:\n  sk.r: 8\n", "search.sk.r", "fixed values go under `set`"),
    ("base: sknet29\nsearch:\n  sk.r: {choices: [4, 4]}\n", "search.sk.r.choices", "duplicate"),
    ("base: sknet29\nsearch:\n  sk.L: {int: [16, 64], step: 5}\n", "search.sk.L.step", "multiple of step"),
    ("base: sknet29\nsearch:\n  sk.branches: {choices: [1]}\n", "search.sk.branches", "under `paths`"),
    ("base: sknet29\nsearch:\n  width_mult: {choices: [0.75]}\n", "search.width_mult", "width_mult must be one of"),
    ("base: sknet29\npaths:\n  M: 1\n  path2: {kernel: 3}\n", "paths.path2", "numbered 1 to 1"),
    ("base: sknet29\npaths:\n  kernel: [1, 3]\n", "paths.kernel", "{choices: [1, 3]}"),
    ("base: sknet29\nsearch:\n  sk.attention: {choices: [softmax, sum]}\npaths: {M: 1}\n", "search.sk.attention",
     "M is always 1"),
    ("base: sknet29\nsearch:\n  num_classes: {choices: [10, 100]}\n", "search.num_classes", "data set"),
])
def test_load_time_impossibilities_name_file_and_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    path = write_space(tmp_path, text)
    with pytest.raises(UserError) as err:
        SearchSpace.load(path)
    assert err.value.file == str(path)
    assert err.value.key == key
    assert words in str(err.value)


def test_a_base_only_space_is_one_fixed_spec(tmp_path: Path) -> None:
    space = SearchSpace.load(write_space(tmp_path, "description: a baseline\nbase: sknet29\n"))
    assert space.fixed and space.dimensions() == []
    assert space.describe() == ["nothing searched: every trial is the base spec (a baseline)"]
    sampled = sample_trials(space, 3)
    assert all(params == {} for params, _ in sampled)  # the trial is asked nothing
    assert all(ArchSpec.from_dict(spec) == space.base for _, spec in sampled)
    one_value = SearchSpace.load(write_space(tmp_path, "base: sknet29\nsearch:\n  sk.r: {choices: [8]}\n"))
    assert one_value.fixed
    assert not load("sk_mgr").fixed and not load("sk_paths").fixed
