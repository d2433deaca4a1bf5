"""Pareto-ASHA against MOASHA, Ray's stock OptunaSearch + ASHA, TPE and random search, replayed over the SK
table of real learning curves (bench/tables/sk_bench.json) at equal compute (issue 13).

Every method runs each random trial order (its searcher's seed, the curve drawn for each multi-seed spec,
Ray's bracket draw) through the event simulator (schedulers_sim.py: real Ray scheduler classes and real
Trial objects; 4 workers; a trial starts only if the budget still holds max_t epochs for it). Scores, in
the (error, log10 MACs) plane normalised by the true front's own range, reference point (1.1, 1.1):

- epochs to 90 % of the true front's hypervolume (every spec of the table at its mean final accuracy):
  median over orders with a bootstrap 95 % interval; Pareto-ASHA's ratio to each other method (ratio of
  medians, paired bootstrap over orders);
- hypervolume at equal budgets, paired wins of Pareto-ASHA and a two-sided sign test;
- the best single model's accuracy (mean final accuracy of the most accurate spec trained to max_t);
- for Ray's stock searcher, how many of Optuna's own best_trials are early-stopped (partial) results.

    .venv/bin/python bench/schedulers/bench_sk_table.py [--orders 30] [--jobs 2] [--methods ...]
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import sk_replay  # noqa: E402
from common import markdown_table  # noqa: E402

OURS = "TPE + Pareto-ASHA (sksearch)"  # --ours names the method the others are compared with
_STATE: dict = {}


def _init(table_path: str) -> None:
    warnings.filterwarnings("ignore")
    _STATE["table"] = sk_replay.SKTable.load(Path(table_path))
    _STATE["sampler"] = sk_replay._spec_sampler(_STATE["table"])


def _run(job: tuple[str, int, dict]) -> tuple[str, int, sk_replay.Trace]:
    method, order, kw = job
    return method, order, sk_replay.replay(_STATE["table"], method, order, sampler=_STATE["sampler"], **kw)


def bootstrap(values: np.ndarray, stat, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of stat(values[resampled orders]); values' first axis is the order."""
    rng = np.random.default_rng(seed)
    k = values.shape[0]
    draws = [stat(values[rng.integers(0, k, k)]) for _ in range(n)]
    # "nearest": no interpolation, so a bound stays finite or infinite ("never reached"), never NaN
    return float(np.nanpercentile(draws, 2.5, method="nearest")), float(np.nanpercentile(draws, 97.5, method="nearest"))


def _ratio(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"


def _epochs(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.0f}"


def report(table: sk_replay.SKTable, traces: dict[str, list[sk_replay.Trace]], budgets: list[int],
           targets: list[float], full_budget: int, ours: str = OURS) -> str:
    from scipy.stats import binomtest

    def sign_test(wins: int, losses: int) -> str:
        return f"{binomtest(wins, wins + losses).pvalue:.2g}" if wins + losses else "1"

    true_hv = table.true_hypervolume()
    methods = list(traces)
    lines = [f"true front: {len(table.front_rows())} of {len(table.rows)} specs, hypervolume {true_hv:.4f}; "
             f"budgets in epochs summed over trials (one full training = {table.max_t} epochs; the whole table "
             f"= {full_budget}); {len(traces[methods[0]])} orders\n"]

    reach = {(m, q): np.array([t.epochs_to(q * true_hv) for t in traces[m]]) for m in methods for q in targets}
    front_ids = {id(r) for r in table.front_rows()}
    front = {i for i, r in enumerate(table.rows) if id(r) in front_ids}
    rows = []
    for m in methods:
        cells = [m]
        for q in targets:
            e = reach[m, q]
            lo, hi = bootstrap(e, np.median)
            cells += [f"{_epochs(float(np.median(e)))} [{_epochs(lo)}, {_epochs(hi)}]", f"{np.isfinite(e).mean():.0%}"]
        lost = [sum(1 for row, e in t.ended if row in front and e < table.max_t) for t in traces[m]]
        cells += [f"{np.mean(lost):.1f}", f"{np.mean([t.trials for t in traces[m]]):.1f}",
                  f"{np.mean([t.epochs[-1] for t in traces[m]]):.0f}"]
        rows.append(cells)
    head = ["method"]
    for q in targets:
        head += [f"epochs to {q:.0%} HV", "orders reaching it"]
    lines.append("Epochs until the front reaches a fraction of the true front's hypervolume (median over orders "
                 "[bootstrap 95 %]); true-front specs it stopped early (mean per order, of "
                 f"{len(front)}); trials and epochs run until the table or the budget ran out:\n")
    lines.append(markdown_table(head + ["front specs stopped", "trials run", "epochs run"], rows) + "\n")

    if ours in methods:
        rows = []
        for m in methods:
            if m == ours:
                continue
            cells = [m]
            for q in targets:
                pair = np.column_stack([reach[ours, q], reach[m, q]])
                faster, slower = int(np.sum(pair[:, 0] < pair[:, 1])), int(np.sum(pair[:, 0] > pair[:, 1]))
                if math.isinf(np.median(pair[:, 1])):
                    cells.append("- (its median order never gets there)")
                else:
                    lo, hi = bootstrap(pair, lambda p: np.median(p[:, 0]) / np.median(p[:, 1]))
                    cells.append(f"{np.median(pair[:, 0]) / np.median(pair[:, 1]):.2f} [{lo:.2f}, {_ratio(hi)}]")
                cells.append(f"{faster} / {slower} (p {sign_test(faster, slower)})")
            rows.append(cells)
        head = ["vs"]
        for q in targets:
            head += [f"ratio to {q:.0%}", "orders faster / slower (sign test)"]
        lines.append(f"{ours}'s epochs as a ratio of each method's (ratio of medians, paired bootstrap 95 %):\n")
        lines.append(markdown_table(head, rows) + "\n")

    for budget in budgets:
        at = {m: np.array([t.at(budget) for t in traces[m]]) for m in methods}
        rows = []
        for m in methods:
            hv, best = at[m][:, 0] / true_hv, at[m][:, 1]
            cells = [m, f"{hv.mean():.3f} ± {hv.std():.3f}", f"{best.mean():.3f}"]
            if m != ours and ours in at:
                mine = at[ours][:, 0]
                wins, losses = int(np.sum(mine > at[m][:, 0])), int(np.sum(mine < at[m][:, 0]))
                cells += [f"{wins} / {losses}", sign_test(wins, losses)]
            else:
                cells += ["-", "-"]
            cells.append(f"{at[m][:, 2].mean():.1f}" if m.startswith("Ray") else "-")
            rows.append(cells)
        lines.append(f"At {budget} epochs ({budget / table.max_t:.0f} full trainings): hypervolume as a fraction "
                     f"of the true front's (mean ± sd over orders), best single model (mean):\n")
        lines.append(markdown_table(["method", "HV / true HV", "best accuracy", "Pareto-ASHA wins / losses",
                                     "sign test p", "early-stopped results on its reported front"], rows) + "\n")
    return "\n".join(lines)


def anytime_figure(table: sk_replay.SKTable, traces: dict[str, list[sk_replay.Trace]], full_budget: int, out: Path,
                   ours: str = OURS) -> Path:
    """Median hypervolume regret (1 - HV / true front's HV, log scale) against epochs spent, one line per
    method: the log scale shows the approach to the true front, which a linear HV axis squashes near 1."""
    import plotly.graph_objects as go

    true_hv = table.true_hypervolume()
    grid = np.arange(table.max_t, full_budget + 1, table.max_t)
    fig = go.Figure()
    for m, ts in traces.items():
        regret = np.median([[1 - t.at(int(b))[0] / true_hv for b in grid] for t in ts], axis=0)
        fig.add_trace(go.Scatter(x=grid, y=np.maximum(regret, 1e-4), mode="lines", name=m,
                                 line={"width": 4 if m == ours else 1.5}))
    for level, text in ((0.1, "90 % of the true front's hypervolume"), (0.01, "99 %")):
        fig.add_hline(y=level, line_dash="dot")
        # On a log axis an annotation's y is log10 of the value.
        fig.add_annotation(x=full_budget / 2, y=math.log10(level), text=text, showarrow=False,
                           xanchor="right", yanchor="bottom")
    fig.update_layout(title=f"Hypervolume regret over the SK table (median of {len(next(iter(traces.values())))} "
                            f"orders, {len(table.rows)} specs; regret 0 drawn at 1e-4)",
                      xaxis_title="epochs spent (summed over trials)", yaxis_title="1 - HV / true front's HV",
                      yaxis_type="log", xaxis_range=[0, full_budget / 2], template="plotly_white", height=560,
                      yaxis_tickvals=[1, 0.1, 0.01, 0.001, 1e-4], yaxis_ticktext=["1", "0.1", "0.01", "0.001", "0"])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "anytime.html"
    fig.write_html(path, include_plotlyjs=True)
    from sksearch.results.report import _png_copies

    note = _png_copies({"anytime": fig}, out)
    if note:
        print(note)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default=str(sk_replay.TABLE))
    p.add_argument("--orders", type=int, default=30)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--workers", type=int, default=4, help="trials at once")
    p.add_argument("--grace", type=int, default=1)
    p.add_argument("--rf", type=float, default=3)
    p.add_argument("--budgets", default="108,216", help="epochs at which to compare hypervolumes")
    p.add_argument("--ours", default=OURS, choices=list(sk_replay.METHODS),
                   help="the method whose epochs are given as a ratio of each other's")
    p.add_argument("--targets", default="0.9,0.95,0.99", help="fractions of the true front's hypervolume to time")
    p.add_argument("--methods", nargs="*", default=list(sk_replay.METHODS), choices=list(sk_replay.METHODS))
    p.add_argument("--out", default=str(HERE.parents[1] / "bench" / "results" / "sk_table"))
    args = p.parse_args()

    table = sk_replay.SKTable.load(Path(args.table))
    full_budget = table.max_t * len(table.rows)
    kw = {"budget": full_budget, "workers": args.workers, "grace": args.grace, "rf": args.rf}
    jobs = [(m, o, kw) for o in range(args.orders) for m in args.methods]
    print(f"{len(table.rows)} specs, {sum(len(r.curves) for r in table.rows)} curves of {table.max_t} epochs; "
          f"{args.orders} orders x {len(args.methods)} methods; {args.workers} workers, grace {args.grace}, "
          f"rf {args.rf:g}", flush=True)
    start = time.perf_counter()
    traces: dict[str, list] = {m: [None] * args.orders for m in args.methods}
    with mp.get_context("spawn").Pool(args.jobs, initializer=_init, initargs=(args.table,)) as pool:
        for method, order, trace in pool.imap_unordered(_run, jobs):
            traces[method][order] = trace
    print(f"replayed in {time.perf_counter() - start:.0f} s\n")
    budgets = [int(b) for b in args.budgets.split(",")]
    targets = [float(q) for q in args.targets.split(",")]
    print(report(table, traces, budgets, targets, full_budget, args.ours))
    print(f"anytime curves: {anytime_figure(table, traces, full_budget, Path(args.out), args.ours)}")


if __name__ == "__main__":
    main()
