"""The attention page: the paper's Fig. 3c (attention per SK unit against object scale) and Fig. 4 (the
large-minus-small difference per class), drawn with plotly and embedded so the file works offline."""
from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from sksearch.results.attention import CLASS_SCALES

SCALE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def _colour(i: int) -> str:
    return SCALE_COLOURS[i % len(SCALE_COLOURS)]


def units_figure(r: dict[str, Any], title: str) -> go.Figure:
    """Fig. 3c: left, mean attention on the largest-receptive-field path per unit, one bar per scale, sd as
    error bars; right, the mean difference large - small per unit and scale, with its sd."""
    names = [u["name"] for u in r["units"]]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "mean attention on the largest path (± sd over images)", "attention difference: largest - smallest path"))
    for i, k in enumerate(r["scales"]):
        big = [u["paths"].index(u["large"]) for u in r["units"]]
        hover = ["<br>".join(f"{p}: {m:.3f} ± {s:.3f}" for p, m, s in zip(u["paths"], u["mean"][i], u["sd"][i]))
                 for u in r["units"]]
        fig.add_trace(go.Bar(
            x=names, y=[u["mean"][i][b] for u, b in zip(r["units"], big)], name=f"{k:g}x",
            legendgroup=f"{k:g}", marker_color=_colour(i), hovertext=hover, hoverinfo="text+name",
            error_y=dict(type="data", array=[u["sd"][i][b] for u, b in zip(r["units"], big)])), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=names, y=[u["diff"][i] for u in r["units"]], name=f"{k:g}x", legendgroup=f"{k:g}",
            showlegend=False, mode="lines+markers", marker_color=_colour(i),
            error_y=dict(type="data", array=[u["diff_sd"][i] for u in r["units"]], width=3)), row=1, col=2)
    labels = sorted({f"{u['large']} vs {u['small']}" for u in r["units"]})
    fig.update_yaxes(title_text="attention", row=1, col=1)
    fig.update_yaxes(title_text=f"mean difference ({', '.join(labels)})", zeroline=True, row=1, col=2)
    fig.update_xaxes(title_text="SK unit (shallow to deep)")
    fig.update_layout(title=title, barmode="group", height=480,
                      legend=dict(title="object scale", orientation="h", y=-0.25))
    return fig


def classes_figure(r: dict[str, Any], title: str) -> go.Figure:
    """Fig. 4: per class, the large - small difference at 1.0x and 1.5x (or the first two scales), one
    panel per unit."""
    classes = r["classes"]
    scales = classes["scales"]
    chosen = [scales.index(k) for k in CLASS_SCALES if k in scales] or list(range(min(2, len(scales))))
    units = classes["units"]
    cols = min(3, max(1, len(units)))
    rows = -(-len(units) // cols) if units else 1
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[u["name"] for u in units] or [""],
                        shared_yaxes=True)
    for j, u in enumerate(units):
        row, col = j // cols + 1, j % cols + 1
        for n, i in enumerate(chosen):
            fig.add_trace(go.Scatter(
                x=classes["names"], y=u["diff"][i], mode="markers", name=f"{scales[i]:g}x",
                legendgroup=f"{scales[i]:g}", showlegend=j == 0, marker=dict(color=_colour(i), size=8,
                                                                              symbol="circle" if n == 0 else "diamond")),
                row=row, col=col)
        fig.add_hline(y=0, line_color="#999", line_width=1, row=row, col=col)
    fig.update_layout(title=title, height=320 * rows + 120, legend=dict(title="object scale", orientation="h", y=-0.12))
    return fig


def figures(result: dict[str, Any]) -> dict[str, go.Figure]:
    """The page's figures by id: Fig. 3c and Fig. 4 for crop-resize, and again for generated objects."""
    figs = {"fig3c_crop": units_figure(result, "Attention per SK unit vs object scale (central crop, resized)"),
            "fig4_crop": classes_figure(result, "Largest - smallest path attention per class (central crop)")}
    gen = result.get("generated")
    if gen:
        figs["fig3c_generated"] = units_figure(gen, "Attention per SK unit vs object scale (generated larger objects)")
        figs["fig4_generated"] = classes_figure(gen, "Largest - smallest path attention per class (generated)")
    return figs


def attention_page(result: dict[str, Any]) -> str:
    who = f"trial {result['trial']}" if result.get("trial") is not None else html.escape(str(result.get("checkpoint")))
    acc = ", ".join(f"{k:g}x {a:.1%}" for k, a in zip(result["scales"], result["accuracy"]))
    parts = [f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>sksearch attention: {who}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}</style></head><body>
<h1>SK attention vs object size: {who}</h1>
<p>{html.escape(str(result.get('label')))}; data: {html.escape(str(result.get('dataset')))}, {result['images']}
validation images; accuracy at each crop scale: {acc}. As in the SKNet paper (Section 4.4), object scale k
enlarges the object by a central crop of 1/k of the image resized back to the input size{
'; the generated figures draw the same scenes with k-times-larger objects instead' if result.get('generated') else ''}.
The paper reports that the larger kernel gains attention as the object grows in the early and middle units
and that this fades in the last ones.</p>"""]
    for i, (name, fig) in enumerate(figures(result).items()):
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=name,
                                 default_height=f"{fig.layout.height or 500}px"))
    parts.append("</body></html>\n")
    return "\n".join(parts)
