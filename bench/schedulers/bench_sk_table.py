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

OURS = "TPE + Pareto-ASHA (sksearch)"
_STATE: dict = {}


def _init(table_path: str) -> None:
    warnings.filterwarnings("ignore")
    _STATE["table"] = sk_replay.SKTable.load(Path(table_path))
    _STATE["sampler"] = sk_replay._SpecSampler(_STATE["table"])


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


def _epochs(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.0f}"


def report(table: sk_replay.SKTable, traces: dict[str, list[sk_replay.Trace]], budgets: list[int],
           full_budget: int) -> str:
    from scipy.stats import binomtest

    true_hv = table.true_hypervolume()
    target = 0.9 * true_hv
    methods = list(traces)
    to90 = {m: np.array([t.epochs_to(target) for t in traces[m]]) for m in methods}
    lines = [f"true front: {sum(1 for _ in table.front_rows())} of {len(table.rows)} specs; hypervolume "
             f"{true_hv:.4f}; target (90 %) {target:.4f}; budgets in epochs summed over trials (one full "
             f"training = {table.max_t} epochs; the whole table = {full_budget})\n"]

    rows = []
    for m in methods:
        e = to90[m]
        lo, hi = bootstrap(e, np.median)
        reached = np.isfinite(e).mean()
        rows.append([m, f"{_epochs(float(np.median(e)))} [{_epochs(lo)}, {_epochs(hi)}]", f"{reached:.0%}",
                     f"{np.mean([t.trials for t in traces[m]]):.1f}",
                     f"{np.mean([t.epochs[-1] for t in traces[m]]):.0f}"])
    lines.append("Epochs to 90 % of the true front's hypervolume (median over orders [bootstrap 95 %]):\n")
    lines.append(markdown_table(["method", "epochs to 90 % HV", "orders reaching it", "trials run",
                                 "epochs run"], rows) + "\n")

    if OURS in to90:
        rows = []
        for m in methods:
            if m == OURS:
                continue
            pair = np.column_stack([to90[OURS], to90[m]])
            ratio = float(np.median(pair[:, 0]) / np.median(pair[:, 1]))
            lo, hi = bootstrap(pair, lambda p: np.median(p[:, 0]) / np.median(p[:, 1]))
            faster = int(np.sum(pair[:, 0] < pair[:, 1]))
            slower = int(np.sum(pair[:, 0] > pair[:, 1]))
            p = binomtest(faster, faster + slower).pvalue if faster + slower else 1.0
            rows.append([m, f"{ratio:.2f} [{lo:.2f}, {hi:.2f}]", f"{faster} / {slower}", f"{p:.2g}"])
        lines.append(f"{OURS}'s epochs to 90 % as a ratio of each method's (ratio of medians, paired bootstrap 95 %):\n")
        lines.append(markdown_table(["vs", "ratio", "orders faster / slower", "sign test p"], rows) + "\n")

    for budget in budgets:
        at = {m: np.array([t.at(budget) for t in traces[m]]) for m in methods}
        rows = []
        for m in methods:
            hv, best = at[m][:, 0] / true_hv, at[m][:, 1]
            cells = [m, f"{hv.mean():.3f} ± {hv.std():.3f}", f"{best.mean():.3f}"]
            if m != OURS and OURS in at:
                ours = at[OURS][:, 0]
                wins, losses = int(np.sum(ours > at[m][:, 0])), int(np.sum(ours < at[m][:, 0]))
                p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
                cells += [f"{wins} / {losses}", f"{p:.2g}"]
            else:
                cells += ["-", "-"]
            if m.startswith("Ray"):
                cells.append(f"{np.mean([t.partial_on_front for t in traces[m]]):.1f} at the end")
            else:
                cells.append("-")
            rows.append(cells)
        lines.append(f"At {budget} epochs ({budget / table.max_t:.0f} full trainings): hypervolume as a fraction "
                     f"of the true front's (mean ± sd over orders), best single model:\n")
        lines.append(markdown_table(["method", "HV / true HV", "best accuracy", "Pareto-ASHA wins / losses",
                                     "sign test p", "partial results on its front"], rows) + "\n")
    return "\n".join(lines)


def anytime_figure(table: sk_replay.SKTable, traces: dict[str, list[sk_replay.Trace]], full_budget: int, out: Path) -> Path:
    """Mean hypervolume (fraction of the true front's) against epochs spent, one line per method."""
    import plotly.graph_objects as go

    true_hv = table.true_hypervolume()
    grid = np.arange(0, full_budget + 1, table.max_t)
    fig = go.Figure()
    for m, ts in traces.items():
        curve = np.mean([[t.at(int(b))[0] / true_hv for b in grid] for t in ts], axis=0)
        fig.add_trace(go.Scatter(x=grid, y=curve, mode="lines", name=m,
                                 line={"width": 3 if m == OURS else 1.5}))
    fig.add_hline(y=0.9, line_dash="dot", annotation_text="90 % of the true front")
    fig.update_layout(title=f"Anytime hypervolume over the SK table ({len(next(iter(traces.values())))} orders, "
                            f"{len(table.rows)} specs)", xaxis_title="epochs spent (summed over trials)",
                      yaxis_title="hypervolume / true front's", template="plotly_white", height=520)
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
    p.add_argument("--budgets", default="216,432", help="epochs at which to compare hypervolumes")
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
    print(report(table, traces, budgets, full_budget))
    print(f"anytime curves: {anytime_figure(table, traces, full_budget, Path(args.out))}")


if __name__ == "__main__":
    main()
