"""One identity per network (ArchSpec.identity): equal exactly when two specs build the same network up to the
order of their SK paths, and used by the searcher's twin check and the front, so that a network is trained
once and stands on the front once."""
from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from torch import nn

from sksearch.models import build_model
from sksearch.models.layers import SKConv
from sksearch.spec import ArchSpec

REPO = Path(__file__).resolve().parents[2]
SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))
TINY = {"backbone": "resnext_cifar", "depths": [1, 1, 1], "widths": [16, 32, 64], "out_channels": [32, 64, 128],
        "stem_channels": 16, "num_classes": 10, "input_size": [3, 32, 32]}


def spec(**sk: Any) -> ArchSpec:
    return ArchSpec.from_dict({**TINY, "sk": sk})


# -- the three cases of issue 22, by name ---------------------------------------------------------------------

def test_r_that_gives_the_same_attention_widths_is_the_same_network():
    # With L = 16, d = max(C // r, 16) is 16 at widths 16/32/64 for r = 4 and r = 8 alike (the demo's trials 6, 7).
    paths = [{"kernel": 3}, {"kernel": 3}, {"kernel": 3}]
    a, b = spec(G=8, r=4, L=16, branches=paths), spec(G=8, r=8, L=16, branches=paths)
    assert a.to_dict() != b.to_dict() and a.same_network(b)
    assert not a.same_network(spec(G=8, r=2, L=16, branches=paths))  # d = 32 at the 64-wide stage


def test_without_attention_r_and_l_build_nothing():
    one_path = [spec(G=8, r=r, L=L, attention="sum", branches=[{"kernel": 3}]) for r, L in [(2, 4), (16, 32)]]
    summed = [spec(G=8, r=r, L=L, attention="sum", branches=[{"kernel": 3}, {"kernel": 5}]) for r, L in [(2, 4), (8, 64)]]
    assert one_path[0].same_network(one_path[1]) and summed[0].same_network(summed[1])
    softmax = [spec(G=8, r=r, L=L, branches=[{"kernel": 3}, {"kernel": 5}]) for r, L in [(2, 4), (8, 64)]]
    assert not softmax[0].same_network(softmax[1])


def test_paths_in_another_order_are_the_same_unit():
    k3, k5 = {"kernel": 3, "dilation": 1}, {"kernel": 3, "dilation": 2}
    assert spec(G=8, branches=[k3, k5, k3]).same_network(spec(G=8, branches=[k3, k3, k5]))
    assert spec(G=8, branches=[k5, k3]).same_network(spec(G=8, branches=[k3, k5]))  # path 1 included
    assert not spec(G=8, branches=[k3, k5, k5]).same_network(spec(G=8, branches=[k3, k3, k5]))


def test_a_1x1_path_has_no_dilation():
    assert spec(G=8, branches=[{"kernel": 3}, {"kernel": 1, "dilation": 2}]).same_network(
        spec(G=8, branches=[{"kernel": 3}, {"kernel": 1}]))


# -- the property: identity equal <=> built structure equal ---------------------------------------------------

def _leaf(m: nn.Module) -> tuple:
    if isinstance(m, nn.Conv2d):
        # A 1x1 convolution computes the same whatever its dilation: the structure ignores it there.
        dilation = m.dilation if m.kernel_size != (1, 1) else (1, 1)
        return ("Conv2d", m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, dilation, m.groups,
                m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return ("BatchNorm2d", m.num_features)
    if isinstance(m, nn.Linear):
        return ("Linear", m.in_features, m.out_features, m.bias is not None)
    return (type(m).__name__,)


def structure(m: nn.Module) -> tuple:
    """Module types, shapes and conv hyperparameters, in order, except that an SK unit's paths are a multiset."""
    children = list(m.named_children())
    if not children:
        return _leaf(m)
    parts = []
    for name, child in children:
        if isinstance(m, SKConv) and name == "paths":
            parts.append(("paths", tuple(sorted((structure(p) for p in child), key=repr))))
        else:
            parts.append((name, structure(child)))
    return (type(m).__name__, tuple(parts))


def _built(s: ArchSpec) -> tuple:
    with torch.device("meta"):
        return structure(build_model(s, init=False))


def _samples(space_file: Path, n: int, seed: int) -> list[ArchSpec]:
    from sksearch.search.space import SearchSpace

    space = SearchSpace.load(space_file)
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(20 * n):
        data = space.sample(scratch.ask())
        data.setdefault("num_classes", 10)
        try:
            out.append(ArchSpec.from_dict(data))
        except Exception:  # an invalid sample (groups that do not divide a width): nothing to compare
            continue
        if len(out) == n:
            break
    return out


def _variant(s: ArchSpec, rng: random.Random) -> ArchSpec:
    """A spec near s that may or may not build the same network: paths shuffled, r or L changed."""
    data = copy.deepcopy(s.to_dict())
    sk = data["sk"]
    rng.shuffle(sk["branches"])
    change = rng.choice(["none", "r", "L", "both"])
    if change in ("r", "both"):
        sk["r"] = rng.choice([1, 2, 4, 8, 16, 32])
    if change in ("L", "both"):
        sk["L"] = rng.choice([4, 8, 16, 32, 64])
    return ArchSpec.from_dict(data)


@pytest.mark.parametrize("space_file", SPACES, ids=[p.stem for p in SPACES])
def test_equal_identity_exactly_when_the_built_networks_have_the_same_structure(space_file: Path):
    rng = random.Random(space_file.stem)
    specs = _samples(space_file, 12, seed=0)
    assert len(specs) >= 6, f"{space_file.name}: too few valid samples"
    pairs = [(a, b) for a, b in zip(specs, specs[1:])]                      # random pairs: mostly different
    pairs += [(a, _variant(a, rng)) for a in specs for _ in range(3)]      # near pairs: often the same network
    built: dict[str, tuple] = {}
    same = 0
    for a, b in pairs:
        sa, sb = (built.setdefault(s.key(), _built(s)) for s in (a, b))
        assert (a.identity() == b.identity()) == (sa == sb), (space_file.name, a.to_dict(), b.to_dict())
        same += sa == sb
    assert 0 < same < len(pairs), "both kinds of pair were compared"


# -- wired in: the twin check and the front ---------------------------------------------------------------------

@pytest.mark.slow
def test_the_searcher_trains_each_network_of_the_quick_start_space_once(tmp_path: Path):
    """The searcher alone (no Ray) on the quick start's space with a real SQLite storage: every sample it
    hands out is a new network; a repeat is recorded as a copy of its twin; the front holds each network once."""
    import yaml

    from sksearch.config import load_study
    from sksearch.results.pareto import front_trials
    from sksearch.search.searcher import StudySearcher
    from sksearch.search.space import SearchSpace
    from sksearch.storage import records as st
    from sksearch.storage.open import load_or_create_study, open_storage

    study_file = yaml.safe_load((REPO / "studies" / "quickstart.yaml").read_text())
    study_file.update(search_space=str(REPO / "search_spaces" / "quickstart.yaml"), output_dir=str(tmp_path / "out"),
                      storage=f"sqlite:///{tmp_path}/optuna.db")
    study_file["tune"].update(n_trials=30, sampler={"type": "random", "seed": 0})
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study_file))
    cfg = load_study(tmp_path / "study.yaml")
    store = open_storage(cfg.storage_url())
    study = load_or_create_study(cfg, store, optuna.samplers.RandomSampler(seed=0))
    searcher = StudySearcher(cfg, SearchSpace.load(cfg.space_path()), study, store, n_trials=30)
    epochs = cfg.max_epochs()
    try:
        for i in range(30):
            config = searcher.suggest(f"t{i}")
            if not isinstance(config, dict):
                break
            # A made-up but deterministic result per network: twins would get equal values.
            acc = 0.5 + (hash(ArchSpec.from_dict(config["spec"]).identity()) % 1000) / 4000
            for e in range(1, epochs + 1):
                searcher.on_trial_result(f"t{i}", {"accuracy": acc, "epoch": e})
            searcher.on_trial_complete(f"t{i}", {"accuracy": acc, "epoch": epochs})
    finally:
        searcher.close()
    trials = study.get_trials()
    trained = [t for t in trials if st.status(t) == "full"]
    copies = [t for t in trials if st.status(t) == "duplicate"]
    identities = [st.identity(t) for t in trained]
    assert len(trained) >= 5 and len(set(identities)) == len(identities)
    assert copies, "the quick start's space repeats networks under other r (seed 0 draws some)"
    for c in copies:
        assert st.identity(c) == st.identity(study.trials[c.user_attrs[st.Key.DUPLICATE_OF]])
    front = front_trials(study)
    assert front and len({st.identity(t) for t in front}) == len(front)
    assert {t.number for t in study.best_trials} == {t.number for t in front}
