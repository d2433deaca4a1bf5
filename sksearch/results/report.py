"""The study report as a library: one self-contained HTML page and summary.json (`sksearch report` and the
end of every `sksearch run` call write_report).

Accuracy vs MACs and vs params (full-fidelity front as a staircase; pruned, infeasible and failed trials drawn
differently; the paper's models as labelled reference points when the data set matches), hypervolume against
trials and against compute, parameter importance per objective, and the SK settings in parallel coordinates.
plotly.js is embedded, so the file works offline. `summary.json` beside it lists the front
(rows of results.pareto.noisy_front_row) and `seed_sd`. Front trials retrained with other seeds (`sksearch run
--confirm K`) get error bars (mean +- SD over seeds), and neighbours within noise of each other are marked.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from sksearch.config import StudyConfig
from sksearch.results.figures import (accuracy_data, draw_accuracy, draw_hypervolume, draw_importance,
                                      draw_parallel, importance_data, parallel_data)
from sksearch.results.pareto import NOISE_FACTOR, Normaliser, front_noise, front_trials, hypervolume_history, noisy_front_row
from sksearch.storage import records
from sksearch.storage.open import metric_names, open_study, redact_url
from sksearch.storage.records import Key
from sksearch.units import format_count

PNG_HINT = "PNG copies skipped: `pip install kaleido` and `apt-get install chromium` (kaleido v1 needs Chrome/Chromium)"


def _png_copies(figs: dict[str, go.Figure], out: Path) -> str | None:
    """Write <name>.png for each figure; None when done, else the one line to print."""
    try:
        import kaleido  # noqa: F401  (only to know whether PNG export can work)
    except ImportError:
        return PNG_HINT
    try:
        for name, fig in figs.items():
            fig.write_image(out / f"{name}.png", width=1100, height=fig.layout.height or 500)
    except Exception as exc:  # kaleido present but no Chrome/Chromium, or it failed to start
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{PNG_HINT} ({first[:120]})"
    return None


def write_report(study_cfg: StudyConfig, storage_url: str | None = None, out_dir: str | Path | None = None,
                 *, quiet: bool = False) -> Path:
    """Build report.html and summary.json for a study; returns the HTML's path. The tuner calls this at the
    end of every run."""
    study, url = open_study(study_cfg, storage_url)
    names = metric_names(study, study_cfg)
    trials = study.get_trials(deepcopy=False)
    out = Path(out_dir) if out_dir is not None else study_cfg.out_dir() / "report"
    out.mkdir(parents=True, exist_ok=True)

    norm = Normaliser.for_study(study, names, study_cfg)
    front = front_trials(study, trials)
    front_numbers = {t.number for t in front}
    noise = front_noise(front, trials, names)
    dataset = study_cfg.dataset.name
    figs: dict[str, go.Figure] = {}
    axes = [Key.MACS, Key.PARAMS] + ([Key.LATENCY_MS] if any(records.cost(t, Key.LATENCY_MS) is not None
                                                             for t in trials) else [])
    for axis in axes:
        figs[f"accuracy_vs_{axis}"] = draw_accuracy(accuracy_data(trials, axis, names, dataset, front_numbers, noise))
    figs["hypervolume"] = draw_hypervolume(study, norm)
    importance, n_eligible = importance_data(study, names)
    figs["importance"] = draw_importance(importance, n_eligible)
    figs["sk_settings"] = draw_parallel(parallel_data(trials, names), names)

    counts: dict[str, int] = {}
    for t in trials:
        s = records.status(t)
        counts[s] = counts.get(s, 0) + 1
    history = hypervolume_history(study, norm)
    summary = {
        "study": study_cfg.name, "storage": redact_url(url), "dataset": dataset, "objectives": names,
        "directions": [d.name.lower() for d in study.directions], "trials": len(trials), "by_status": counts,
        "front": [noisy_front_row(t, noise, names) for t in front],
        # seed-to-seed SD of accuracy pooled over the front members retrained by `run --confirm` (None: none)
        "seed_sd": noise.pooled_sd, "seed_sd_members": noise.members, "noise_threshold": noise.threshold,
        "hypervolume": history[-1].hypervolume if history else 0.0,
        "hypervolume_reference": norm.describe(),
        "importance": importance,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    html_path = out / "report.html"
    html_path.write_text(_page(study_cfg, url, summary, figs))
    if not quiet:
        print(f"report: {html_path}  ({len(trials)} trials, {len(front)} on the front, "
              f"hypervolume {summary['hypervolume']:.4f})")
    hint = _png_copies(figs, out)
    if hint and not quiet:
        print(hint)
    return html_path


def _page(cfg: StudyConfig, url: str, summary: dict[str, Any], figs: dict[str, go.Figure]) -> str:
    timed = any(f.get("latency_ms") is not None for f in summary["front"])
    rows = "".join(
        f"<tr><td>{f['trial']}</td><td>{html.escape(str(f['label']))}</td><td>{_pct(f['accuracy'])}</td>"
        f"<td>{_spread(f)}</td><td>{format_count(f['macs'])}</td><td>{format_count(f['params'])}</td>"
        + (f"<td>{f['latency_ms']:.3g}</td>" if timed and f.get("latency_ms") is not None else "<td>-</td>" * timed)
        + "</tr>"
        for f in summary["front"])
    status = ", ".join(f"{v} {k}" for k, v in sorted(summary["by_status"].items()))
    parts = [f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>sksearch report: {html.escape(cfg.name)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px}}</style></head><body>
<h1>Study {html.escape(cfg.name)}</h1>
<p>data set: {html.escape(summary['dataset'])}; objectives: {html.escape(', '.join(summary['objectives']))};
storage: {html.escape(redact_url(url))}; trials: {summary['trials']} ({html.escape(status)}).
The front holds full-fidelity, feasible trials only; pruned trials are shown at their last accuracy.</p>
<h2>Pareto front</h2><table><tr><th>trial</th><th>SK settings</th><th>accuracy</th>
<th>over seeds: mean &plusmn; SD (runs)</th><th>MACs</th><th>params</th>{"<th>latency (ms)</th>" * timed}</tr>
{rows}</table><p>{_noise_text(summary)}</p>"""]
    for i, (name, fig) in enumerate(figs.items()):
        parts.append(f'<h2 id="{name}">{name.replace("_", " ")}</h2>')
        # default_height is "100%" of the viewport: size each div to its figure instead.
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=name,
                                 default_height=f"{fig.layout.height or 500}px"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _spread(f: dict[str, Any]) -> str:
    if f.get("accuracy_sd") is None:
        return "one run"
    mark = "".join(f" ~{n}" for n in f.get("within_noise_of") or [])
    return f"{_pct(f['accuracy_mean'])} &plusmn; {_pct(f['accuracy_sd'])} ({f['runs']}){mark}"


def _noise_text(summary: dict[str, Any]) -> str:
    if summary.get("seed_sd") is None:
        return ("Each front point is one training run: <code>sksearch run STUDY.yaml --confirm K</code> retrains "
                "the front with K other seeds, to show how much of its order is noise.")
    return (f"Seed-to-seed standard deviation of accuracy: {_pct(summary['seed_sd'])}, pooled over "
            f"{summary['seed_sd_members']} front trials retrained with other seeds. ~N marks a front trial whose "
            f"mean accuracy is within {NOISE_FACTOR:g} SD ({_pct(summary['noise_threshold'])}) of its neighbour "
            "N's: their order is within noise.")


def _pct(v: Any) -> str:
    return f"{v:.2%}" if isinstance(v, (int, float)) else "-"
