"""Seed confirmations (`sksearch run --confirm K`) as the report reads them: off the budget and off both fronts,
the pooled seed SD, error bars on the confirmed front points, and the within-noise marks."""
from __future__ import annotations

import json
import math
import statistics

import optuna
import pytest

from sksearch.results.figures import accuracy_data, draw_accuracy
from sksearch.results.pareto import NOISE_FACTOR, front_noise, front_trials
from sksearch.results.report import write_report
from sksearch.search.progress import front_table
from sksearch.results.pareto import noisy_front_row
from sksearch.storage import records
from sksearch.storage.ledger import counts_toward_budget
from sksearch.storage.records import Key

from tests.results.conftest import MAX_EPOCHS, make_results_study, plotly_figures, trial_by_tag

# front of the fixture: tiny_g8 0.84, small_g16 0.88, g40 0.91, sknet29 0.93; two of them retrained
CONFIRM = {"g40": [0.90, 0.93], "sknet29": [0.92]}


def _confirm(cfg, tag: str, accuracies: list[float]) -> None:
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    original = trial_by_tag(cfg, tag)
    for seed, acc in enumerate(accuracies, cfg.train.seed + 1):
        trial = study.ask()
        records.record_confirmation(trial, original, seed, "test-run", MAX_EPOCHS)
        records.record_end(study, trial, cfg, epochs_done=MAX_EPOCHS, max_epochs=MAX_EPOCHS, accuracy=acc,
                           params=int(original.user_attrs[Key.PARAMS]), macs=int(original.user_attrs[Key.MACS]),
                           error=None)


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory):
    cfg = make_results_study(tmp_path_factory.mktemp("noise"), name="noise-fixture")
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    before = {"best": sorted(t.number for t in study.best_trials), "front": [t.number for t in front_trials(study)],
              "counted": sum(counts_toward_budget(t) for t in study.trials),
              "data": accuracy_data(study.trials, Key.MACS, ["accuracy", "macs"], "cifar10",
                                    {t.number for t in front_trials(study)})}
    for tag, accs in CONFIRM.items():
        _confirm(cfg, tag, accs)
    return cfg, before


def test_confirmations_stay_off_the_budget_and_both_fronts(confirmed):
    cfg, before = confirmed
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    extra = [t for t in study.trials if Key.CONFIRMS in t.user_attrs]
    assert len(extra) == 3 and all(records.status(t) == "confirmation" for t in extra)
    assert sorted(t.number for t in study.best_trials) == before["best"]
    assert [t.number for t in front_trials(study)] == before["front"]
    assert sum(counts_toward_budget(t) for t in study.trials) == before["counted"]
    g40 = trial_by_tag(cfg, "g40")
    mine = [t for t in extra if t.user_attrs[Key.CONFIRMS] == g40.number]
    assert [records.seed(t) for t in mine] == [1, 2] and all(t.params == g40.params for t in mine)
    assert "retrained with seed 1" in records.explain(mine[0])


def test_pooled_sd_and_within_noise_marks(confirmed):
    cfg, _ = confirmed
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    front = front_trials(study)
    noise = front_noise(front, study.trials, ["accuracy", "macs"])
    g40, sk = trial_by_tag(cfg, "g40"), trial_by_tag(cfg, "sknet29")
    runs = {g40.number: [0.91, *CONFIRM["g40"]], sk.number: [0.93, *CONFIRM["sknet29"]]}
    pooled = math.sqrt(sum((len(a) - 1) * statistics.variance(a) for a in runs.values())
                       / sum(len(a) - 1 for a in runs.values()))
    assert noise.pooled_sd == pytest.approx(pooled) and noise.members == 2
    assert noise.runs[g40.number] == pytest.approx(runs[g40.number])
    # g40 (mean 0.913) and sknet29 (0.925) differ by less than 2 SD (0.026); 0.84 / 0.88 / 0.913 do not
    assert noise.close[g40.number] == [sk.number] and noise.close[sk.number] == [g40.number]
    assert not noise.close[trial_by_tag(cfg, "tiny_g8").number]
    rows = [noisy_front_row(t, noise, ["accuracy", "macs"]) for t in front]
    table = front_table(rows, noise.pooled_sd, noise.threshold)
    g40_line = next(line for line in table.splitlines() if line.split()[0] == str(g40.number))
    assert f"+- {statistics.stdev(runs[g40.number]):.4f} (3)" in g40_line and f"~{sk.number}" in g40_line
    assert f"seed-to-seed SD of accuracy: {pooled:.4f}" in table
    assert NOISE_FACTOR == 2


def test_report_draws_error_bars_and_keeps_the_other_points(confirmed):
    cfg, before = confirmed
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    front = front_trials(study)
    names = ["accuracy", "macs"]
    data = accuracy_data(study.trials, Key.MACS, names, "cifar10", {t.number for t in front},
                         front_noise(front, study.trials, names))
    g40 = trial_by_tag(cfg, "g40")
    assert {p.trial for p in data.spread} == {g40.number, trial_by_tag(cfg, "sknet29").number}
    # every trial without confirmations is drawn exactly as before; the confirmations get their own marker
    assert data.front == before["data"].front
    drop = lambda by: {k: v for k, v in by.items() if k != "confirmation"}  # noqa: E731
    assert drop(data.by_status) == drop(before["data"].by_status)
    assert len(data.by_status["confirmation"]) == 3
    bars = [t for t in draw_accuracy(data).data if t.error_y is not None and t.error_y.array is not None]
    assert len(bars) == 1 and sorted(bars[0].error_y.array) == pytest.approx(
        sorted([statistics.stdev([0.91, 0.90, 0.93]), statistics.stdev([0.93, 0.92])]))

    html_path = write_report(cfg, quiet=True)
    summary = json.loads((html_path.parent / "summary.json").read_text())
    assert summary["seed_sd"] == pytest.approx(front_noise(front, study.trials, names).pooled_sd)
    row = next(f for f in summary["front"] if f["trial"] == g40.number)
    assert row["runs"] == 3 and row["accuracy"] == pytest.approx(0.91)
    assert row["accuracy_sd"] == pytest.approx(statistics.stdev([0.91, 0.90, 0.93]))
    figs = plotly_figures(html_path.read_text())
    traces = [t for t in figs["accuracy_vs_macs"]["data"] if "error_y" in t and t["error_y"].get("array")]
    assert len(traces) == 1 and g40.number in traces[0]["customdata"]
