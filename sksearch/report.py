"""`sksearch report STUDY.yaml [--out DIR] [--storage URL]`: one self-contained HTML report of a study.

Accuracy vs MACs and vs params (full-fidelity front as a staircase; pruned, infeasible and failed trials drawn
differently; the paper's models as labelled reference points when the data set matches), hypervolume against
trials and against compute, parameter importance per objective, and the SK settings in parallel coordinates.
plotly.js is embedded, so the file works offline. `summary.json` beside it lists the front.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import optuna
import plotly.graph_objects as go
import plotly.io as pio
from optuna.trial import FrozenTrial
from plotly.subplots import make_subplots

from sksearch.config import StudyConfig, load_study, redact_url
from sksearch.errors import cli_entry
from sksearch.results.paper import reference_models
from sksearch.results.pareto import (Normaliser, front_2d, front_trials, full_fidelity_trials, hypervolume_history,
                             trial_status)
from sksearch.spec import ArchSpec
from sksearch.storage.open import metric_names, open_study
from sksearch.units import format_count

PNG_HINT = "PNG copies skipped: `pip install kaleido` and `apt-get install chromium` (kaleido v1 needs Chrome/Chromium)"

# How each kind of trial is drawn on the accuracy plots.
STYLE = {
    "full": dict(name="full fidelity", marker=dict(symbol="circle", size=9, color="#1f77b4")),
    "pruned": dict(name="pruned (stopped early; last accuracy)",
                   marker=dict(symbol="circle-open", size=8, color="#7f7f7f")),
    "partial": dict(name="complete, not full budget", marker=dict(symbol="circle-open", size=8, color="#bcbd22")),
    "duplicate": dict(name="repeated spec (result copied, not trained)",
                      marker=dict(symbol="diamond-open", size=6, color="#9467bd")),
    "infeasible": dict(name="infeasible (over budget, never trained)",
                       marker=dict(symbol="x", size=9, color="#d62728")),
    "failed": dict(name="failed", marker=dict(symbol="x-thin-open", size=10, color="#000000", line=dict(width=2))),
}
AXIS_TITLE = {"macs": "MACs (multiply-adds)", "params": "parameters"}


# -- per-trial facts ---------------------------------------------------------------------------------------------

def _spec(t: FrozenTrial) -> ArchSpec | None:
    data = t.user_attrs.get("spec")
    if not isinstance(data, dict):
        return None
    try:
        return ArchSpec.model_validate(data)
    except Exception:  # an invalid spec was recorded as such; show what we can
        return None


def sk_description(t: FrozenTrial) -> str:
    """SK[M, G, r], L, paths and attention of a trial, for hover text."""
    spec = _spec(t)
    if spec is None:
        return html.escape(str(t.user_attrs.get("label") or t.params or "no spec recorded"))
    sk = spec.sk
    g = "dw" if sk.G == "depthwise" else sk.G
    paths = ", ".join(f"{b.name}{'' if b.groups is None else f' g{b.groups}'}{' relu' if b.relu else ' no-relu'}"
                      for b in sk.branches)
    return f"SK[{sk.M}, {g}, {sk.r}], L={sk.L}<br>paths: {paths}<br>attention: {sk.attention}"


def _accuracy(t: FrozenTrial, status: str) -> float | None:
    if status == "full":
        return t.values[0] if t.values else None
    if status == "infeasible":
        return 0.0
    acc = t.user_attrs.get("accuracy")
    if acc is None and status == "failed" and isinstance(t.user_attrs.get("macs"), (int, float)):
        return 0.0
    return float(acc) if acc is not None else None


def _why(t: FrozenTrial, status: str) -> str:
    a = t.user_attrs
    if status == "pruned":
        return f"pruned at epoch {a.get('epochs_done', '?')}/{a.get('max_epochs', '?')}"
    if status == "infeasible":
        return "infeasible: " + html.escape(str(a.get("infeasible", "violates a constraint")))
    if status == "failed":
        return "interrupted" if a.get("interrupted") else "failed: " + html.escape(str(a.get("error", "?")))[:200]
    if status == "duplicate":
        return f"same spec as trial {a.get('duplicate_of')}: result copied, not trained"
    if status == "partial":
        return f"complete after {a.get('epochs_done', '?')}/{a.get('max_epochs', '?')} epochs"
    return f"trained {a.get('epochs_done', '?')} epochs"


def _hover(t: FrozenTrial, status: str, acc: float | None) -> str:
    a = t.user_attrs
    acc_text = "-" if acc is None else f"{acc:.2%}"
    return (f"trial {t.number} ({_why(t, status)})<br>{sk_description(t)}<br>accuracy {acc_text} | "
            f"MACs {format_count(a.get('macs'))} | params {format_count(a.get('params'))}")



# -- figures ----------------------------------------------------------------------------------------------------

def accuracy_figure(trials: Sequence[FrozenTrial], axis: str, dataset: str, front_numbers: set[int]) -> go.Figure:
    """Accuracy vs `axis` (macs or params): every trial that has a size, the 2-D front as a staircase."""
    fig = go.Figure()
    by_status: dict[str, list[tuple[FrozenTrial, float, float]]] = {k: [] for k in STYLE}
    for t in trials:
        status = trial_status(t)
        size = t.user_attrs.get(axis)
        acc = _accuracy(t, status) if status in STYLE else None
        if acc is not None and isinstance(size, (int, float)):
            by_status[status].append((t, float(size), float(acc)))
    full = by_status["full"]
    idx = front_2d([p[2] for p in full], [p[1] for p in full])
    if idx:
        pts = [full[i] for i in idx]
        fig.add_trace(go.Scatter(
            x=[p[1] for p in pts], y=[p[2] for p in pts], mode="lines+markers", line_shape="hv",
            name=f"Pareto front (accuracy vs {axis})", line=dict(color="#2ca02c", width=2),
            marker=dict(symbol="star", size=13, color="#2ca02c"), customdata=[p[0].number for p in pts],
            hovertext=[_hover(p[0], "full", p[2]) for p in pts], hoverinfo="text"))
    for status, pts in by_status.items():
        if status == "full":
            on = set(idx)
            pts = [p for i, p in enumerate(pts) if i not in on]
        if not pts:
            continue
        style = STYLE[status]
        fig.add_trace(go.Scatter(
            x=[p[1] for p in pts], y=[p[2] for p in pts], mode="markers", name=style["name"], marker=style["marker"],
            customdata=[p[0].number for p in pts], hoverinfo="text",
            hovertext=[_hover(p[0], status, p[2]) + ("<br>on the study's front" if p[0].number in front_numbers
                                                     else "") for p in pts]))
    refs = [m for m in reference_models(dataset) if (m.macs if axis == "macs" else m.params) is not None]
    if refs:
        fig.add_trace(go.Scatter(
            x=[m.macs if axis == "macs" else m.params for m in refs], y=[m.accuracy for m in refs],
            mode="markers+text", text=[m.name for m in refs], textposition="top center",
            name="paper-reported (not measured)", marker=dict(symbol="diamond", size=11, color="#9467bd"),
            hovertext=[f"{m.name}: top-1 error {m.top1_error}%<br>{format_count(m.params)} params"
                       + (f", {format_count(m.macs)} MACs" if m.macs else "") + f"<br>{m.note()}" for m in refs],
            hoverinfo="text"))
    fig.update_layout(title=f"Accuracy vs {AXIS_TITLE.get(axis, axis)}", xaxis_title=AXIS_TITLE.get(axis, axis),
                      yaxis_title="validation accuracy", yaxis_tickformat=".0%", xaxis_type="log",
                      legend=dict(orientation="h", y=-0.2), height=560)
    return fig


def hypervolume_figure(study: optuna.Study, norm: Normaliser) -> go.Figure:
    hist = hypervolume_history(study, norm)
    use_seconds = any(h.compute_seconds > 0 for h in hist)
    compute_label = "training seconds spent (all trials)" if use_seconds else "epochs trained (all trials)"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("against trial number", f"against compute: {compute_label}"))
    fig.add_trace(go.Scatter(x=[h.trial for h in hist], y=[h.hypervolume for h in hist], mode="lines+markers",
                             line_shape="hv", name="hypervolume vs trial"), row=1, col=1)
    fig.add_trace(go.Scatter(x=[h.compute_seconds if use_seconds else h.epochs for h in hist],
                             y=[h.hypervolume for h in hist], mode="lines+markers", line_shape="hv",
                             name="hypervolume vs compute"), row=1, col=2)
    fig.update_xaxes(title_text="trial number", row=1, col=1)
    fig.update_xaxes(title_text=compute_label, row=1, col=2)
    fig.update_yaxes(title_text="hypervolume", row=1, col=1)
    fig.update_layout(title=f"Hypervolume of the full-fidelity front<br><sup>{html.escape(norm.describe())}</sup>",
                      height=460, showlegend=False)
    return fig


def _eligible_study(study: optuna.Study) -> optuna.Study:
    # Importance over full-fidelity feasible trials only: an infeasible trial's accuracy 0 is not a measurement.
    copy = optuna.create_study(directions=study.directions)
    copy.add_trials(full_fidelity_trials(study.get_trials(deepcopy=False)))
    return copy


def importance_figure(study: optuna.Study, names: Sequence[str]) -> tuple[go.Figure, dict[str, Any]]:
    """fANOVA importance of each sampled parameter, per objective. Returns the figure and the numbers."""
    eligible = _eligible_study(study)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[f"for {n}" for n in names])
    result: dict[str, Any] = {}
    for i, name in enumerate(names):
        try:
            imp = optuna.importance.get_param_importances(
                eligible, target=lambda t, i=i: t.values[i],
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
            if not imp:
                raise ValueError("no parameter is set in every trial")
            result[name] = imp
            keys = list(imp)[::-1]
            fig.add_trace(go.Bar(x=[imp[k] for k in keys], y=keys, orientation="h", name=name), row=1, col=i + 1)
        except Exception as exc:  # too few trials, one value only, ...: say so instead of failing the report
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            result[name] = f"not available: {msg}"
            fig.add_trace(go.Bar(x=[], y=[], name=name), row=1, col=i + 1)
            fig.add_annotation(text=f"not available ({len(eligible.trials)} full-fidelity trials):<br>"
                                    f"{html.escape(msg[:120])}", showarrow=False,
                               xref=f"x{i + 1 if i else ''} domain", yref=f"y{i + 1 if i else ''} domain",
                               x=0.5, y=0.5)
    fig.update_layout(title="Parameter importance (fANOVA, full-fidelity trials; parameters set in every trial "
                            "only, so conditional ones such as path3.* are left out)", height=420, showlegend=False)
    return fig, result


def parallel_figure(trials: Sequence[FrozenTrial], names: Sequence[str]) -> go.Figure:
    """SK settings of the full-fidelity trials against their objectives, coloured by accuracy."""
    rows = [(t, s) for t in full_fidelity_trials(trials) if (s := _spec(t)) is not None]
    if not rows:
        fig = go.Figure()
        fig.add_annotation(text="no full-fidelity trial yet", showarrow=False)
        return fig.update_layout(title="SK settings (parallel coordinates)")
    max_m = max(s.M for _, s in rows)

    def categorical(label: str, values: list[str]) -> dict[str, Any]:
        cats = sorted(set(values))
        return dict(label=label, values=[cats.index(v) for v in values], tickvals=list(range(len(cats))),
                    ticktext=cats)

    dims = [dict(label="M", values=[s.M for _, s in rows]),
            categorical("G", [str(s.sk.G) for _, s in rows]),
            dict(label="r", values=[s.sk.r for _, s in rows]),
            dict(label="L", values=[s.sk.L for _, s in rows]),
            categorical("attention", [s.sk.attention for _, s in rows])]
    for k in range(max_m):
        dims.append(categorical(f"path{k + 1}", [
            (s.sk.branches[k].name + ("" if s.sk.branches[k].relu else " no-relu")) if k < s.M else "-"
            for _, s in rows]))
    for i, name in enumerate(names):
        dims.append(dict(label=name, values=[t.values[i] for t, _ in rows]))
    acc_i = list(names).index("accuracy") if "accuracy" in names else 0
    fig = go.Figure(go.Parcoords(line=dict(color=[t.values[acc_i] for t, _ in rows], colorscale="Viridis",
                                           showscale=True, colorbar=dict(title=names[acc_i])),
                                 dimensions=dims))
    return fig.update_layout(title="SK settings of the full-fidelity trials (parallel coordinates)", height=460)


# -- the report --------------------------------------------------------------------------------------------------

def front_summary(front: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    out = []
    for t in front:
        a = t.user_attrs
        acc = a.get("accuracy", t.values[0] if t.values else None)
        out.append({"trial": t.number, "label": a.get("label"), "accuracy": acc,
                    "params": a.get("params"), "macs": a.get("macs")})
    return out


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
    dataset = study_cfg.dataset.name
    figs: dict[str, go.Figure] = {}
    for axis in ("macs", "params"):
        figs[f"accuracy_vs_{axis}"] = accuracy_figure(trials, axis, dataset, front_numbers)
    figs["hypervolume"] = hypervolume_figure(study, norm)
    figs["importance"], importance = importance_figure(study, names)
    figs["sk_settings"] = parallel_figure(trials, names)

    counts: dict[str, int] = {}
    for t in trials:
        s = trial_status(t)
        counts[s] = counts.get(s, 0) + 1
    history = hypervolume_history(study, norm)
    summary = {
        "study": study_cfg.name, "storage": redact_url(url), "dataset": dataset, "objectives": names,
        "directions": [d.name.lower() for d in study.directions], "trials": len(trials), "by_status": counts,
        "front": front_summary(front),
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
    rows = "".join(
        f"<tr><td>{f['trial']}</td><td>{html.escape(str(f['label']))}</td><td>{_pct(f['accuracy'])}</td>"
        f"<td>{format_count(f['macs'])}</td><td>{format_count(f['params'])}</td></tr>" for f in summary["front"])
    status = ", ".join(f"{v} {k}" for k, v in sorted(summary["by_status"].items()))
    parts = [f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>sksearch report: {html.escape(cfg.name)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px}}</style></head><body>
<h1>Study {html.escape(cfg.name)}</h1>
<p>data set: {html.escape(summary['dataset'])}; objectives: {html.escape(', '.join(summary['objectives']))};
storage: {html.escape(redact_url(url))}; trials: {summary['trials']} ({html.escape(status)}).
The front holds full-fidelity, feasible trials only; pruned trials are shown at their last accuracy.</p>
<h2>Pareto front</h2><table><tr><th>trial</th><th>SK settings</th><th>accuracy</th><th>MACs</th><th>params</th></tr>
{rows}</table>"""]
    for i, (name, fig) in enumerate(figs.items()):
        parts.append(f'<h2 id="{name}">{name.replace("_", " ")}</h2>')
        # default_height is "100%" of the viewport: size each div to its figure instead.
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=name,
                                 default_height=f"{fig.layout.height or 500}px"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _pct(v: Any) -> str:
    return f"{v:.2%}" if isinstance(v, (int, float)) else "-"


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sksearch report", description=__doc__.splitlines()[0])
    p.add_argument("study", help="a study file, e.g. studies/quickstart.yaml")
    p.add_argument("--out", help="output folder (default: <study output_dir>/report)")
    p.add_argument("--storage", help="Optuna storage URL (overrides SKSEARCH_STORAGE and the study's storage)")
    args = p.parse_args(argv)
    write_report(load_study(args.study), storage_url=args.storage, out_dir=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
