from __future__ import annotations

import json
import re

import plotly
import pytest

from sksearch.report import main
from sksearch.results.paper import reference_models
from sksearch.results.pareto import front_trials
from sksearch.results.report import write_report
from sksearch.storage.open import open_study

from .conftest import plotly_figures, tag_of


@pytest.fixture(scope="module")
def report(results_study, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    path = write_report(results_study, out_dir=out, quiet=True)
    return path, plotly_figures(path.read_text()), json.loads((out / "summary.json").read_text())


def _trace(fig, prefix):
    return next(t for t in fig["data"] if (t.get("name") or "").startswith(prefix))


def test_report_draws_the_front_as_a_staircase(report, results_study):
    path, figs, summary = report
    assert set(figs) == {"accuracy_vs_macs", "accuracy_vs_params", "hypervolume", "importance", "sk_settings"}
    text = path.read_text()
    # plotly.js itself is embedded (its banner names the bundled version), so the page works offline.
    bundled = re.search(r"plotly\.js v(\d+\.\d+\.\d+)", text)
    assert bundled and len(text) > 1_000_000
    assert 'src="https://cdn.plot.ly' not in text and "<script src=" not in text
    study, _ = open_study(results_study)
    front = front_trials(study)
    line = _trace(figs["accuracy_vs_macs"], "Pareto front")
    assert line["line"]["shape"] == "hv" and "lines" in line["mode"]
    assert line["customdata"] == [t.number for t in front]
    assert line["x"] == [t.user_attrs["macs"] for t in front]
    assert line["y"] == pytest.approx([t.values[0] for t in front])
    assert "SK[2, 8, 32], L=32" in line["hovertext"][0] and "attention: softmax" in line["hovertext"][0]
    # Pruned, infeasible and failed trials are separate traces with their own markers.
    names = [t["name"] for t in figs["accuracy_vs_macs"]["data"]]
    for kind in ("pruned", "infeasible", "failed", "interrupted", "repeated"):
        assert any(n.startswith(kind) for n in names), kind
    symbols = {t["name"].split(" ")[0]: t["marker"]["symbol"] for t in figs["accuracy_vs_macs"]["data"]}
    kinds = ("pruned", "infeasible", "failed", "full", "interrupted", "repeated")
    assert len({symbols[k] for k in kinds}) == len(kinds)
    assert [f["trial"] for f in summary["front"]] == [t.number for t in front]
    assert {f["trial"] for f in summary["front"]} == {t.number for t in study.best_trials}  # one front
    assert summary["front"][0]["label"] and summary["front"][0]["macs"] == front[0].values[1]


def test_every_trial_is_drawn_once_where_its_record_puts_it(report, results_study):
    _, figs, _ = report
    study, _ = open_study(results_study)
    drawn = {}
    for trace in figs["accuracy_vs_macs"]["data"]:
        if trace["name"].startswith("paper-reported"):
            continue
        for n, x, y in zip(trace["customdata"], trace["x"], trace["y"]):
            assert n not in drawn or trace["name"].startswith("Pareto"), f"trial {n} drawn twice"
            drawn.setdefault(n, (trace["name"].split(" ")[0], x, y))
    by_tag = {tag_of(n): v for n, v in drawn.items()}
    # The invalid spec has no size and is not drawn; every other trial is, in its own trace.
    assert set(by_tag) == {t for t in map(tag_of, range(len(study.trials))) if t != "invalid"}
    assert by_tag["over_budget"][0] == "infeasible" and by_tag["over_budget"][2] == 0.0
    assert by_tag["over_budget"][1] > 6e9  # drawn at its measured MACs, over the budget
    assert by_tag["pruned_m3"][0] == "pruned" and by_tag["pruned_m3"][2] == pytest.approx(0.6)
    assert by_tag["crashed"][0] == "failed" and by_tag["interrupted"][0] == "interrupted"
    assert by_tag["repeat_of_sknet29"][0] == "repeated" and by_tag["sknet29"][0] == "Pareto"
    assert by_tag["repeat_of_sknet29"][1:] == pytest.approx(by_tag["sknet29"][1:])
    for t in study.trials:
        if tag_of(t.number) in ("resnext29", "small_k1"):  # dominated full-fidelity trials
            assert drawn[t.number] == ("full", t.values[1], pytest.approx(t.values[0]))


def test_report_shows_paper_reference_points_for_cifar(report):
    _, figs, _ = report
    macs_ref = _trace(figs["accuracy_vs_macs"], "paper-reported")
    params_ref = _trace(figs["accuracy_vs_params"], "paper-reported")
    assert "SKNet-29" in macs_ref["text"] and "SENet-29" not in macs_ref["text"]  # no MACs for SENet-29
    assert "SENet-29" in params_ref["text"]
    i = params_ref["text"].index("SKNet-29")
    assert params_ref["y"][i] == pytest.approx(1 - 0.0347) and params_ref["x"][i] == 27_700_000
    assert "MACs counted by sksearch" in macs_ref["hovertext"][macs_ref["text"].index("SKNet-29")]
    assert reference_models("synthetic") == () and len(reference_models("imagenet_subset")) == 6


def test_report_hypervolume_against_trials_and_compute(report):
    _, figs, summary = report
    hv = figs["hypervolume"]
    by_trial, by_compute = hv["data"]
    assert by_trial["y"] == sorted(by_trial["y"]) and by_trial["y"][-1] == pytest.approx(summary["hypervolume"])
    assert by_compute["x"] == sorted(by_compute["x"]) and by_compute["x"][-1] > 0
    assert "reference point" in hv["layout"]["title"]["text"]
    importance = summary["importance"]
    assert set(importance) == {"accuracy", "macs"} and "G" in importance["accuracy"]
    dims = [d["label"] for d in figs["sk_settings"]["data"][0]["dimensions"]]
    assert dims[:5] == ["M", "G", "r", "L", "attention"] and "accuracy" in dims


def test_report_cli_missing_storage_exits_2(tmp_path, capsys):
    from .conftest import _write_study_file

    rc = main([str(_write_study_file(tmp_path, "nothing", "cifar10")), "--out", str(tmp_path / "r")])
    assert rc == 2 and "no study storage" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Query string argument")
def test_report_and_summary_never_show_a_password(results_study, tmp_path):
    url = results_study.storage_url() + "?password=hunter2"  # SQLite ignores the query; we must not print it
    path = write_report(results_study, storage_url=url, out_dir=tmp_path, quiet=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["storage"].endswith("?password=***")
    assert "hunter2" not in path.read_text() and "hunter2" not in json.dumps(summary)
