"""The report's figures, as in optuna.visualization: `*_data` functions compute what a figure shows from the
trials (plain dataclasses, testable without plotly), `draw_*` functions turn that into a plotly figure.

Every fact about a trial comes from storage.records (status, accuracy by metric name, costs, explanation).
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Sequence

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial
from plotly.subplots import make_subplots

from sksearch.results.paper import reference_models
from sksearch.results.pareto import FrontNoise, Normaliser, front_2d, full_fidelity_trials, hypervolume_history
from sksearch.storage import records
from sksearch.storage.records import Key
from sksearch.units import format_count

# How each kind of trial is drawn on the accuracy plots (keys: records.status).
STYLE = {
    "full": dict(name="full fidelity", marker=dict(symbol="circle", size=9, color="#1f77b4")),
    "pruned": dict(name="pruned (stopped early; last accuracy)",
                   marker=dict(symbol="circle-open", size=8, color="#7f7f7f")),
    "partial": dict(name="complete, not full budget", marker=dict(symbol="circle-open", size=8, color="#bcbd22")),
    "duplicate": dict(name="repeated network (result copied from its twin, not trained)",
                      marker=dict(symbol="diamond-open", size=6, color="#9467bd")),
    "confirmation": dict(name="seed confirmation (a front trial retrained with another seed)",
                         marker=dict(symbol="triangle-up-open", size=7, color="#17becf")),
    "infeasible": dict(name="infeasible (over budget, never trained)",
                       marker=dict(symbol="x", size=9, color="#d62728")),
    "failed": dict(name="failed", marker=dict(symbol="x-thin-open", size=10, color="#000000", line=dict(width=2))),
    "interrupted": dict(name="interrupted (driver stopped; last accuracy)",
                        marker=dict(symbol="square-open", size=8, color="#8c564b")),
}
AXIS_TITLE = {Key.MACS: "MACs (multiply-adds)", Key.PARAMS: "parameters",
              Key.LATENCY_MS: "latency (ms, predicted on the study's latency target)"}


# -- per-trial facts ---------------------------------------------------------------------------------------------

def sk_description(t: FrozenTrial) -> str:
    """SK[M, G, r], L, paths and attention of a trial, for hover text."""
    spec = records.arch_spec(t)
    if spec is None:
        return html.escape(records.label(t) or str(t.params or "no spec recorded"))
    sk = spec.sk
    g = "dw" if sk.G == "depthwise" else sk.G
    paths = ", ".join(f"{b.name}{'' if b.groups is None else f' g{b.groups}'}{' relu' if b.relu else ' no-relu'}"
                      for b in sk.branches)
    return f"SK[{sk.M}, {g}, {sk.r}], L={sk.L}<br>paths: {paths}<br>attention: {sk.attention}"


def plotted_accuracy(t: FrozenTrial, names: Sequence[str]) -> float | None:
    """Where a trial sits on an accuracy axis: its accuracy; a failed trial that never reported one at 0."""
    acc = records.accuracy(t, names)
    if acc is None and records.status(t) == "failed" and records.cost(t, Key.MACS) is not None:
        return 0.0
    return acc


def hover(t: FrozenTrial, acc: float | None) -> str:
    acc_text = "-" if acc is None else f"{acc:.2%}"
    return (f"trial {t.number} ({html.escape(records.explain(t))[:240]})<br>{sk_description(t)}<br>accuracy "
            f"{acc_text} | MACs {format_count(records.cost(t, Key.MACS))} | params "
            f"{format_count(records.cost(t, Key.PARAMS))}"
            + (f" | {ms:.3g} ms" if (ms := records.cost(t, Key.LATENCY_MS)) is not None else ""))


# -- accuracy vs cost ---------------------------------------------------------------------------------------------

@dataclass
class Point:
    trial: int
    cost: float
    accuracy: float
    hover: str


@dataclass
class Spread:
    """A front trial's accuracy over training seeds: the original and its confirmations (`run --confirm`)."""
    trial: int
    cost: float
    mean: float
    sd: float
    runs: int
    within_noise_of: list[int]


@dataclass
class AccuracyData:
    axis: str
    front: list[Point]                      # the 2-D staircase, cheapest first
    by_status: dict[str, list[Point]]       # every other trial that has a size and an accuracy
    references: list[Any] = field(default_factory=list)   # paper models (results.paper.Reference)
    spread: list[Spread] = field(default_factory=list)    # error bars of the front trials retrained with seeds


def accuracy_data(trials: Sequence[FrozenTrial], axis: str, names: Sequence[str], dataset: str,
                  front_numbers: set[int], noise: FrontNoise | None = None) -> AccuracyData:
    by_status: dict[str, list[tuple[FrozenTrial, Point]]] = {k: [] for k in STYLE}
    for t in trials:
        status = records.status(t)
        size = records.cost(t, axis)
        acc = plotted_accuracy(t, names) if status in STYLE else None
        if acc is not None and size is not None:
            note = "<br>on the study's front" if t.number in front_numbers and status != "full" else ""
            by_status[status].append((t, Point(t.number, float(size), float(acc), hover(t, acc) + note)))
    full = by_status["full"]
    idx = front_2d([p.accuracy for _, p in full], [p.cost for _, p in full])
    on = set(idx)
    rest = {s: [p for i, (_, p) in enumerate(pts) if not (s == "full" and i in on)] for s, pts in by_status.items()}
    # the papers report MACs and params, not latency on this machine
    refs = [] if axis == Key.LATENCY_MS else [m for m in reference_models(dataset)
                                              if (m.macs if axis == Key.MACS else m.params) is not None]
    spread = []
    for t in trials:
        mean, sd, runs = noise.spread(t.number) if noise is not None else (0.0, None, 0)
        if sd is not None and (size := records.cost(t, axis)) is not None:
            spread.append(Spread(t.number, float(size), mean, sd, runs, sorted(noise.close.get(t.number, []))))
    return AccuracyData(axis, [full[i][1] for i in idx], rest, refs, spread)


def draw_accuracy(d: AccuracyData) -> go.Figure:
    fig = go.Figure()
    if d.front:
        fig.add_trace(go.Scatter(
            x=[p.cost for p in d.front], y=[p.accuracy for p in d.front], mode="lines+markers", line_shape="hv",
            name=f"Pareto front (accuracy vs {d.axis})", line=dict(color="#2ca02c", width=2),
            marker=dict(symbol="star", size=13, color="#2ca02c"), customdata=[p.trial for p in d.front],
            hovertext=[p.hover for p in d.front], hoverinfo="text"))
    if d.spread:
        # Beside the front's own point (one training run): the mean over seeds, with +- one SD.
        fig.add_trace(go.Scatter(
            x=[p.cost for p in d.spread], y=[p.mean for p in d.spread], mode="markers",
            name="front trial over seeds: mean +- SD", marker=dict(symbol="line-ew", size=14, color="#2ca02c",
                                                                   line=dict(width=2, color="#2ca02c")),
            error_y=dict(type="data", array=[p.sd for p in d.spread], visible=True, color="#2ca02c"),
            customdata=[p.trial for p in d.spread], hoverinfo="text",
            hovertext=[f"trial {p.trial}: accuracy {p.mean:.2%} +- {p.sd:.2%} over {p.runs} seeds"
                       + (f"<br>order within noise of trial(s) {', '.join(map(str, p.within_noise_of))}"
                          if p.within_noise_of else "") for p in d.spread]))
    for status, pts in d.by_status.items():
        if not pts:
            continue
        style = STYLE[status]
        fig.add_trace(go.Scatter(
            x=[p.cost for p in pts], y=[p.accuracy for p in pts], mode="markers", name=style["name"],
            marker=style["marker"], customdata=[p.trial for p in pts], hoverinfo="text",
            hovertext=[p.hover for p in pts]))
    if d.references:
        refs = d.references
        fig.add_trace(go.Scatter(
            x=[m.macs if d.axis == Key.MACS else m.params for m in refs], y=[m.accuracy for m in refs],
            mode="markers+text", text=[m.name for m in refs], textposition="top center",
            name="paper-reported (not measured)", marker=dict(symbol="diamond", size=11, color="#9467bd"),
            hovertext=[f"{m.name}: top-1 error {m.top1_error}%<br>{format_count(m.params)} params"
                       + (f", {format_count(m.macs)} MACs" if m.macs else "") + f"<br>{m.note()}" for m in refs],
            hoverinfo="text"))
    title = AXIS_TITLE.get(d.axis, d.axis)
    fig.update_layout(title=f"Accuracy vs {title}", xaxis_title=title, yaxis_title="validation accuracy",
                      yaxis_tickformat=".0%", xaxis_type="log", legend=dict(orientation="h", y=-0.2), height=560)
    return fig


# -- hypervolume ---------------------------------------------------------------------------------------------------

def draw_hypervolume(study: optuna.Study, norm: Normaliser) -> go.Figure:
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


# -- parameter importance ------------------------------------------------------------------------------------------

def importance_data(study: optuna.Study, names: Sequence[str]) -> tuple[dict[str, Any], int]:
    """fANOVA importance of each sampled parameter, per objective ({name: {param: value}} or a reason text),
    over full-fidelity feasible trials only: an infeasible trial's accuracy 0 is not a measurement."""
    eligible = optuna.create_study(directions=study.directions)
    eligible.add_trials(full_fidelity_trials(study.get_trials(deepcopy=False)))
    result: dict[str, Any] = {}
    for i, name in enumerate(names):
        try:
            imp = optuna.importance.get_param_importances(
                eligible, target=lambda t, i=i: t.values[i],
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
            if not imp:
                raise ValueError("no parameter is set in every trial")
            result[name] = imp
        except Exception as exc:  # too few trials, one value only, ...: say so instead of failing the report
            result[name] = f"not available: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return result, len(eligible.trials)


def draw_importance(importance: dict[str, Any], n_eligible: int) -> go.Figure:
    names = list(importance)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[f"for {n}" for n in names])
    for i, name in enumerate(names):
        imp = importance[name]
        if isinstance(imp, dict):
            keys = list(imp)[::-1]
            fig.add_trace(go.Bar(x=[imp[k] for k in keys], y=keys, orientation="h", name=name), row=1, col=i + 1)
        else:
            fig.add_trace(go.Bar(x=[], y=[], name=name), row=1, col=i + 1)
            fig.add_annotation(text=f"not available ({n_eligible} full-fidelity trials):<br>"
                                    f"{html.escape(str(imp).removeprefix('not available: ')[:120])}",
                               showarrow=False, xref=f"x{i + 1 if i else ''} domain",
                               yref=f"y{i + 1 if i else ''} domain", x=0.5, y=0.5)
    fig.update_layout(title="Parameter importance (fANOVA, full-fidelity trials; parameters set in every trial "
                            "only, so conditional ones such as path3.* are left out)", height=420, showlegend=False)
    return fig


# -- SK settings in parallel coordinates -----------------------------------------------------------------------------

def parallel_data(trials: Sequence[FrozenTrial], names: Sequence[str]) -> list[dict[str, Any]]:
    """Plotly parcoords dimensions of the full-fidelity trials' SK settings and objectives ([] when none)."""
    rows = [(t, s) for t in full_fidelity_trials(trials) if (s := records.arch_spec(t)) is not None]
    if not rows:
        return []
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
    return dims


def draw_parallel(dims: list[dict[str, Any]], names: Sequence[str]) -> go.Figure:
    if not dims:
        fig = go.Figure()
        fig.add_annotation(text="no full-fidelity trial yet", showarrow=False)
        return fig.update_layout(title="SK settings (parallel coordinates)")
    by_label = {d["label"]: d for d in dims}
    color = Key.ACCURACY if Key.ACCURACY in by_label else names[0]
    fig = go.Figure(go.Parcoords(line=dict(color=by_label[color]["values"], colorscale="Viridis", showscale=True,
                                           colorbar=dict(title=color)), dimensions=dims))
    return fig.update_layout(title="SK settings of the full-fidelity trials (parallel coordinates)", height=460)
