"""`sksearch run STUDY.yaml --dry-run N`: a seeded table of sampled specs; the study's storage is never touched."""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sksearch.config import load_study
from sksearch.search.dryrun import dry_run, sample_specs
from sksearch.run import main as run_main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "studies" / "quickstart.yaml"


def table(n: int, seed: int | None = None, study_path: Path = QUICKSTART) -> list[str]:
    out = io.StringIO()
    assert dry_run(load_study(study_path), n, seed=seed, out=out) == 0
    return out.getvalue().splitlines()


def test_the_table_has_one_row_per_spec_and_a_summary() -> None:
    lines = table(12, seed=0)
    assert lines[0].startswith("study quickstart: 12 specs") and "max_macs 20M" in lines[0]
    assert lines[1].split()[:4] == ["#", "params", "MACs", "feasible"]
    rows = lines[2:-1]
    assert [int(r.split()[0]) for r in rows] == list(range(12))
    for row in rows:
        assert " yes " in row or " no " in row
        if " no " in row:
            assert re.search(r"\[(macs .* > max_macs .*|sk\.G: .*)\]$", row), row
        else:
            assert "SK[" in row
    assert re.match(r"^\d+/12 feasible \(\d+ invalid, \d+ over budget\); feasible params .*-.*, MACs .*-.*", lines[-1])


def test_a_seed_repeats_and_another_seed_differs() -> None:
    def rows(seed: int) -> list[str]:
        return table(8, seed=seed)[2:-1]

    assert rows(5) == rows(5)
    assert rows(5) != rows(6)


def test_the_study_sampler_seed_is_the_default() -> None:
    study = load_study(QUICKSTART)
    default = [p for p, _ in sample_specs(study, 6)]
    explicit = [p for p, _ in sample_specs(study, 6, seed=study.tune.sampler.seed)]
    assert default == explicit


def test_the_dry_run_never_touches_the_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "studies"
    shutil.copytree(ROOT / "studies", folder)
    shutil.copytree(ROOT / "search_spaces", tmp_path / "search_spaces")
    db = tmp_path / "elsewhere.db"
    monkeypatch.setenv("SKSEARCH_STORAGE", f"sqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    assert run_main([str(folder / "quickstart.yaml"), "--dry-run", "4", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 4 + 3
    assert not db.exists() and not (tmp_path / "runs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search_spaces", "studies"]


def test_a_space_of_invalid_and_over_budget_specs_is_summarised(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(
        "base: sknet29\nsearch:\n  widths: {choices: [[32, 64, 128], [48, 96, 192]]}\n  sk.G: {choices: [16, 24]}\n")
    (tmp_path / "study.yaml").write_text("name: mixed\nsearch_space: space.yaml\nconstraints: {max_macs: 100M}\n")
    rows = sample_specs(load_study(tmp_path / "study.yaml"), 12, seed=0)
    reasons = {f.reason.split(":")[0].split(" ")[0] for _, f in rows if f.reason}
    assert reasons == {"sk.G", "macs"}
    assert all(f.spec is None for _, f in rows if f.reason and f.reason.startswith("sk.G"))


def _imagenet_home(home: Path, wnids: list[str]) -> None:
    """~/inet/{train,val}/<wnid>/*.JPEG (as tests/data writes them) and ~/classes.txt naming the subset."""
    from PIL import Image

    for split in ("train", "val"):
        for c, wnid in enumerate(wnids):
            (home / "inet" / split / wnid).mkdir(parents=True)
            Image.new("RGB", (40, 48), (60 * c, 90, 30)).save(home / "inet" / split / wnid / f"{wnid}_0.JPEG")
    (home / "classes.txt").write_text("# the subset\n" + "\n".join(wnids[:2]) + "\n")


def test_a_dry_run_of_an_imagenet_subset_under_home(tmp_path: Path) -> None:
    """dataset.root and classes_file that start with ~ (it once failed: 'cannot read .../~/classes.txt')."""
    home = tmp_path / "home"
    _imagenet_home(home, ["n01", "n02", "n03"])
    (tmp_path / "space.yaml").write_text("base: shufflenet_v2_x0_5_sk\nsearch:\n  sk.r: {choices: [4, 8]}\n")
    (tmp_path / "study.yaml").write_text(
        "name: inet_home\nsearch_space: space.yaml\n"
        "dataset: {name: imagenet_subset, root: ~/inet, classes_file: ~/classes.txt, resolution: 64}\n")
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "sksearch.run", str(tmp_path / "study.yaml"), "--dry-run", "3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()[2:-1]
    assert len(rows) == 3 and all(" yes " in r for r in rows), done.stdout
    assert done.stdout.splitlines()[-1].startswith("3/3 feasible")


def test_the_class_list_is_read_once_per_load_not_per_sample(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text("base: shufflenet_v2_x0_5_sk\nsearch:\n  sk.r: {int: [2, 16]}\n")
    (tmp_path / "classes.txt").write_text("n01\nn02\nn03\nn04\n")
    (tmp_path / "study.yaml").write_text(
        "name: inet_once\nsearch_space: space.yaml\n"
        "dataset: {name: imagenet_subset, root: nowhere, classes_file: classes.txt, resolution: 32}\n")
    study = load_study(tmp_path / "study.yaml")
    (tmp_path / "classes.txt").unlink()  # a second read anywhere would now fail
    rows = sample_specs(study, 50, seed=0)
    assert len(rows) == 50
    assert {(f.spec.num_classes, tuple(f.spec.input_size)) for _, f in rows} == {(4, (3, 32, 32))}


def test_a_base_only_space_is_a_baseline(tmp_path: Path) -> None:
    """A space with nothing to search samples its one spec every time."""
    (tmp_path / "space.yaml").write_text("description: the baseline\nbase: sknet29\n")
    (tmp_path / "study.yaml").write_text("name: baseline\nsearch_space: space.yaml\n")
    lines = table(5, seed=0, study_path=tmp_path / "study.yaml")
    assert len(lines) == 2 + 5 + 1
    assert len({row.split(None, 1)[1] for row in lines[2:-1]}) == 1  # five times the same row
    assert re.match(r"^5/5 feasible .*; 1 distinct networks;", lines[-1]), lines[-1]
