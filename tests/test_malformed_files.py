"""Malformed study and search-space files: exit status 2 and one message naming the file and key (or line).

Most cases run `sksearch.run.main` in-process (it returns the exit status); two run the real command in a
subprocess to prove the process exit status and the absence of a traceback.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sksearch.run import main as run_main

ROOT = Path(__file__).resolve().parents[1]

GOOD_SPACE = "base: sknet29\nsearch:\n  sk.r: {choices: [8, 16]}\n"
GOOD_STUDY = "name: bad\nsearch_space: space.yaml\n"


def study(extra: str) -> str:
    return GOOD_STUDY + extra


# (id, study text, space text, the file the message names, the key or line it names, words it contains)
CASES = [
    # -- study files --------------------------------------------------------------------------------------
    ("study unknown key", study("trian: {epochs: 3}\n"), GOOD_SPACE, "study", "trian", "unknown key"),
    ("study wrong type", study("train: {epochs: ten}\n"), GOOD_SPACE, "study", "train.epochs", "integer"),
    ("study negative budget", study("constraints: {max_macs: -5}\n"), GOOD_SPACE, "study", "constraints.max_macs",
     "greater than 0"),
    ("study unreadable budget", study("constraints: {max_params: lots}\n"), GOOD_SPACE, "study",
     "constraints.max_params", "300M"),
    ("study missing space file", "name: bad\nsearch_space: nowhere.yaml\n", None, "study", "search_space",
     "not found"),
    ("study yaml syntax", study("train: {epochs: 3\n"), GOOD_SPACE, "study", "line ", "YAML syntax error"),
    ("study duplicated objectives", study("objectives: [{metric: macs, direction: minimize}, "
                                          "{metric: macs, direction: minimize}]\n"), GOOD_SPACE, "study",
     "objectives", "once"),
    ("study not a mapping", "- name: bad\n", GOOD_SPACE, "study", "", "must be a mapping"),
    ("study max_epochs over epochs", study("train: {epochs: 5}\ntune: {scheduler: {type: asha, max_epochs: 9}}\n"),
     GOOD_SPACE, "study", "tune.scheduler.max_epochs", "exceeds train.epochs"),
    ("study missing name", "search_space: space.yaml\n", GOOD_SPACE, "study", "name", "required"),
    ("study unknown dataset", study("dataset: {name: mnist}\n"), GOOD_SPACE, "study", "dataset.name", "mnist"),
    ("study unknown objective direction", study("objectives: [{metric: accuracy, direction: up}]\n"), GOOD_SPACE,
     "study", "objectives[0].direction", "maximize"),
    ("study missing class list", study("dataset: {name: imagenet_subset, classes_file: c.txt}\n"), GOOD_SPACE,
     "study", "dataset.classes_file", "not found"),
    # -- search-space files (reached through --dry-run, which loads the space) -------------------------------
    ("space empty choices", GOOD_STUDY, "base: sknet29\nsearch:\n  sk.G: {choices: []}\n", "space",
     "search.sk.G.choices", "non-empty"),
    ("space low above high", GOOD_STUDY, "base: sknet29\nsearch:\n  sk.r: {int: [32, 4]}\n", "space",
     "search.sk.r.int", "low 32 > high 4"),
    ("space even kernel", GOOD_STUDY, "base: sknet29\npaths:\n  kernel: {choices: [3, 4]}\n", "space",
     "paths.kernel", "odd"),
    ("space G divides no width", GOOD_STUDY, "base: sknet29\nsearch:\n  sk.G: {choices: [16, 48]}\n", "space",
     "search.sk.G", "48 groups divide no reachable"),
    ("space unknown preset", GOOD_STUDY, "base: sknet30\n", "space", "base", "unknown preset 'sknet30'"),
    ("space bad dotted key", GOOD_STUDY, "base: sknet29\nsearch:\n  sk.ratio: {choices: [4]}\n", "space",
     "search.sk.ratio", "not an ArchSpec field"),
    ("space unknown distribution", GOOD_STUDY, "base: sknet29\nsearch:\n  sk.r: {uniform: [4, 32]}\n", "space",
     "search.sk.r", "unknown distribution kind 'uniform'"),
    ("space M below 1", GOOD_STUDY, "base: sknet29\npaths:\n  M: {choices: [0, 1, 2]}\n", "space", "paths.M",
     "at least one path"),
    ("space yaml syntax", GOOD_STUDY, "base: sknet29\nsearch:\n  sk.r: {choices: [4, 8}\n", "space", "line ",
     "YAML syntax error"),
    ("space not a mapping", GOOD_STUDY, "[sknet29]\n", "space", "", "must be a mapping"),
    ("space unknown top-level key", GOOD_STUDY, "base: sknet29\nsearh: {}\n", "space", "searh", "unknown key"),
    ("space wrong choice type", GOOD_STUDY, "base: sknet29\nsearch:\n  sk.r: {choices: [8, big]}\n", "space",
     "search.sk.r", "\"big\" can never be valid"),
    ("space path groups never divide", GOOD_STUDY, "base: sknet29\npaths:\n  M: 2\n  path2: {groups: 7}\n",
     "space", "paths.path2.groups", "7 groups"),
    ("space invalid base", GOOD_STUDY, "base: {backbone: resnext_cifar, depths: [1], widths: [32, 64]}\n", "space",
     "base.widths", "2 entries for 1 stages"),
]


def _write(tmp_path: Path, study_text: str, space_text: str | None) -> tuple[Path, Path]:
    study_path, space_path = tmp_path / "study.yaml", tmp_path / "space.yaml"
    study_path.write_text(study_text)
    if space_text is not None:
        space_path.write_text(space_text)
    return study_path, space_path


def test_there_are_at_least_15_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_file_exits_2_naming_file_and_key(case: tuple, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, study_text, space_text, which, key, words = case
    study_path, space_path = _write(tmp_path, study_text, space_text)
    status = run_main([str(study_path), "--dry-run", "1"])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert status == 2, captured.out + err
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err
    named = study_path if which == "study" else space_path
    assert f"error: {named}" in err, err
    if key:
        assert key in err, err
    assert words in err, err
    assert captured.out == ""  # no table, nothing sampled


@pytest.mark.parametrize("case_id", ["study unknown key", "space G divides no width"])
def test_the_real_command_exits_2_without_a_traceback(case_id: str, tmp_path: Path) -> None:
    _, study_text, space_text, which, key, words = next(c for c in CASES if c[0] == case_id)
    study_path, space_path = _write(tmp_path, study_text, space_text)
    proc = subprocess.run([sys.executable, "-m", "sksearch.run", str(study_path), "--dry-run", "1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    named = study_path if which == "study" else space_path
    assert proc.stderr.startswith(f"error: {named}: {key}") and words in proc.stderr
