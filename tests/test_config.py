"""Study files: the shipped ones load with their spaces; counts, paths and storage resolve as documented."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pydantic import ValidationError

from sksearch.config import StudyConfig, TrainConfig, display_path, load_study, parse_count
from sksearch.storage.open import redact_url
from sksearch.errors import UserError
from sksearch.search.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "studies").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    (tmp_path / "space.yaml").write_text("base: sknet29\n")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_studies_are_there() -> None:
    assert {"quickstart", "cifar_mgr", "cifar100_paths", "imagenet100_sk"} <= {p.stem for p in STUDIES}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_shipped_study_loads_with_its_space(path: Path) -> None:
    study = load_study(path)
    assert study.name == path.stem
    SearchSpace.load(study.space_path())
    num_classes, input_size = study.geometry()
    assert num_classes >= 10 and input_size[0] == 3
    assert study.objectives[0].metric == "accuracy"
    assert study.constraints.max_macs or study.constraints.max_params


def test_quickstart_is_sized_for_two_cpu_cores() -> None:
    study = load_study(ROOT / "studies" / "quickstart.yaml")
    assert study.dataset.name == "synthetic"
    assert study.tune.max_concurrent == 2 and study.tune.resources_per_trial.cpu == 1
    assert study.tune.resources_per_trial.gpu == 0 and 8 <= study.tune.n_trials <= 10
    assert [o.metric for o in study.objectives] == ["accuracy", "macs"]


def test_imagenet100_uses_the_shipped_class_list() -> None:
    study = load_study(ROOT / "studies" / "imagenet100_sk.yaml")
    assert study.dataset.classes_file == str(ROOT / "studies" / "imagenet100_classes.txt")
    wnids = study.dataset.class_names()
    assert len(wnids) == len(set(wnids)) == 100 and all(w.startswith("n") and len(w) == 9 for w in wnids)
    assert study.geometry() == (100, [3, 112, 112])


@pytest.mark.parametrize("text, value", [("300M", 300_000_000), ("1.5G", 1_500_000_000), ("2e9", 2_000_000_000),
                                         (4_000_000, 4_000_000), ("25k", 25_000), (3e6, 3_000_000)])
def test_counts_accept_suffixes(text: object, value: int) -> None:
    assert parse_count(text) == value


def test_paths_resolve_against_the_study_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "name: s1\nsearch_space: space.yaml\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    study = load_study(Path("..") / "study.yaml")
    assert study.space_path() == tmp_path / "space.yaml"
    assert study.dataset.root == str(tmp_path / "data")  # the default root: beside the study file
    assert study.out_dir() == elsewhere / "runs" / "s1"  # the output folder: under the working directory
    # Messages show paths below the working directory relative to it, others in full.
    assert display_path(study.out_dir()) == "runs/s1" and display_path(study.space_path()) == study.search_space
    monkeypatch.delenv("SKSEARCH_STORAGE", raising=False)
    assert study.storage_url() == f"sqlite:///{elsewhere}/runs/s1/optuna.db"


def test_tilde_and_relative_paths_are_absolute_after_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "inet").mkdir(parents=True)
    (home / "classes.txt").write_text("n01\nn02  # comment\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "name: s5\nsearch_space: ./sub/../space.yaml\noutput_dir: out\n"
                           "dataset: {name: imagenet_subset, root: ~/inet, classes_file: ~/classes.txt, resolution: 32}\n")
    study = load_study(path)
    assert study.search_space == str(tmp_path / "space.yaml")
    assert study.dataset.root == str(home / "inet") and study.dataset.classes_file == str(home / "classes.txt")
    assert study.output_dir == str(tmp_path / "out")
    assert study.geometry() == (2, [3, 32, 32])
    # What travels to a Ray worker (a dict, validated again there, elsewhere) keeps the same paths.
    again = StudyConfig.model_validate(study.model_dump(mode="json"))
    assert (again.search_space, again.dataset.root, again.output_dir) == (study.search_space, study.dataset.root,
                                                                           study.output_dir)


def test_the_class_list_is_read_once_at_load(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("n01\nn02\nn03\n")
    path = write(tmp_path, "name: s6\nsearch_space: space.yaml\n"
                           "dataset: {name: imagenet_subset, classes_file: classes.txt, resolution: 24}\n")
    study = load_study(path)
    (tmp_path / "classes.txt").unlink()  # whatever reads it later would fail
    assert study.geometry() == (3, [3, 24, 24]) and study.dataset.class_names() == ["n01", "n02", "n03"]
    # A copy with another resolution gets its own geometry, from the list already read.
    assert study.dataset.model_copy(update={"resolution": 48}).geometry() == (3, [3, 48, 48])


def test_storage_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = load_study(write(tmp_path, "name: s2\nsearch_space: space.yaml\nstorage: sqlite:///file.db\n"))
    monkeypatch.delenv("SKSEARCH_STORAGE", raising=False)
    assert study.storage_url() == "sqlite:///file.db"
    monkeypatch.setenv("SKSEARCH_STORAGE", "sqlite:///env.db")
    assert study.storage_url() == "sqlite:///env.db"
    assert study.storage_url("sqlite:///flag.db") == "sqlite:///flag.db"
    assert redact_url("postgresql://me:secret@db/x") == "postgresql://me:***@db/x"


def test_storage_is_a_url_or_a_block_and_a_bad_block_names_its_key(tmp_path: Path) -> None:
    short = load_study(write(tmp_path, "name: s5\nsearch_space: space.yaml\nstorage: sqlite:///a.db\n"))
    block = load_study(write(tmp_path, "name: s5\nsearch_space: space.yaml\n"
                                       "storage: {url: 'sqlite:///a.db', retry_seconds: 7}\n"))
    assert (short.storage.url, short.storage_retry_seconds()) == ("sqlite:///a.db", 300)
    assert (block.storage.url, block.storage_retry_seconds()) == ("sqlite:///a.db", 7)
    path = write(tmp_path, "name: s5\nsearch_space: space.yaml\nstorage: {url: 'sqlite:///a.db', retry_seconds: -1}\n")
    with pytest.raises(UserError) as err:
        load_study(path)
    assert err.value.key == "storage.retry_seconds" and err.value.file == str(path)
    assert "more problem" not in str(err.value)


def test_grace_period_longer_than_training_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "name: s3\nsearch_space: space.yaml\ntrain: {epochs: 3}\n"
                           "tune: {scheduler: {type: asha, grace_period: 5}}\n")
    with pytest.raises(UserError) as err:
        load_study(path)
    assert err.value.key == "tune.scheduler.grace_period" and err.value.file == str(path)


@pytest.mark.parametrize("tune", ["{scheduler: {type: asha, pause: true}, sampler: {type: ehvi}}",
                                  "{scheduler: {type: pareto_asha, pause: true}, sampler: {type: tpe}}"])
def test_pause_needs_pareto_asha_and_the_ehvi_sampler(tmp_path: Path, tune: str) -> None:
    path = write(tmp_path, f"name: s6\nsearch_space: space.yaml\ntune: {tune}\n")
    with pytest.raises(UserError) as err:
        load_study(path)
    assert err.value.key == "tune.scheduler.pause" and err.value.file == str(path)
    ok = write(tmp_path, "name: s7\nsearch_space: space.yaml\n"
                         "tune: {scheduler: {type: pareto_asha, pause: true}, sampler: {type: ehvi}}\n")
    assert load_study(ok).tune.scheduler.pause


def test_a_missing_class_list_is_named_at_load(tmp_path: Path) -> None:
    path = write(tmp_path, "name: s4\nsearch_space: space.yaml\n"
                           "dataset: {name: imagenet_subset, classes_file: nowhere.txt}\n")
    with pytest.raises(UserError) as err:
        load_study(path)
    assert err.value.key == "dataset.classes_file" and "nowhere.txt" in str(err.value)


def test_defaults_are_a_valid_study() -> None:
    study = StudyConfig(name="x", search_space="s.yaml")
    assert study.max_epochs() == study.train.epochs
    assert [o.direction for o in study.objectives] == ["maximize", "minimize"]


def test_the_artifact_store_defaults_beside_the_study_and_resolves_like_output_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    study = load_study(write(tmp_path, "name: s6\nsearch_space: space.yaml\noutput_dir: out\n"))
    assert study.artifact_dir() == tmp_path / "out" / "artifacts" and study.tune.keep_weights == "full"
    shared = load_study(write(tmp_path, "name: s6\nsearch_space: space.yaml\nartifacts: ~/../shared/store\n"
                                        "tune: {keep_weights: all}\n"))
    assert shared.artifact_dir() == Path(os.path.abspath(Path.home() / ".." / "shared" / "store"))
    assert shared.tune.keep_weights == "all"
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path / "out")  # relative to the working directory at load, absolute after
    rel = load_study(write(tmp_path, "name: s6\nsearch_space: space.yaml\nartifacts: store\n"))
    assert rel.artifact_dir() == tmp_path / "out" / "store"
    assert StudyConfig.model_validate(rel.model_dump(mode="json")).artifact_dir() == rel.artifact_dir()


def test_keep_weights_is_one_of_full_all_none(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load_study(write(tmp_path, "name: s7\nsearch_space: space.yaml\ntune: {keep_weights: best}\n"))
    assert err.value.key == "tune.keep_weights"


def test_where_weights_are_kept_does_not_alter_results(tmp_path: Path) -> None:
    from sksearch.storage.open import config_changes, stored_config

    before = load_study(write(tmp_path, "name: s8\nsearch_space: space.yaml\n"))
    after = load_study(write(tmp_path, "name: s8\nsearch_space: space.yaml\nartifacts: /elsewhere\n"
                                       "tune: {keep_weights: none}\n"))
    assert config_changes(stored_config(before), stored_config(after)) == ([], ["artifacts", "tune.keep_weights"])
    # A study stored before these keys existed resumes too.
    old = {k: v for k, v in stored_config(before).items() if k != "artifacts"}
    old["tune"] = {k: v for k, v in old["tune"].items() if k != "keep_weights"}
    assert config_changes(old, stored_config(after))[0] == []


def test_a_bad_compile_mode_names_the_choices():
    with pytest.raises(ValidationError) as err:
        TrainConfig(compile="fast")
    assert "reduce-overhead" in str(err.value) and "fast" in str(err.value)
    assert TrainConfig(compile="reduce-overhead").compile == "reduce-overhead" and TrainConfig(compile=True).compile
