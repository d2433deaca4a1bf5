"""`sksearch run STUDY.yaml --dry-run N`: a seeded table of sampled specs; the study's storage is never touched."""
from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest

from sksearch.config import load_study
from sksearch.search.dryrun import dry_run, sample_specs
from sksearch.run import main as run_main

ROOT = Path(__file__).resolve().parents[1]
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
