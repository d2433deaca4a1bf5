"""FIFO vs ASHA (Ray's AsyncHyperBandScheduler) vs Pareto-ASHA at the same compute, on a stand-in objective.

Each method gets the same budget of epochs (summed over trials; `--budget-trials` x max_t) and the same
trial sequence per seed (random sampling of log-uniform MACs; see schedulers_standin.py for the curve
model and its scenarios). The schedulers are the real Ray classes, driven by an event simulator with
real Trial objects (schedulers_sim.py). Score: hypervolume of the front of the trials trained to max_t,
in (error = 1 - accuracy, log10 MACs), reference point (1.0, log10(1.1 * max MACs)), via Optuna's
hypervolume. "cheap half": MACs below the geometric middle of the range. `--real-ray` replays one seed
through real Ray Tune (Tuner, function trainable, one trial at a time) and checks that every trial got
the same number of epochs as in the simulator.

    .venv/bin/python bench/schedulers/bench_schedulers.py [--seeds 20] [--scenario all] [--budget-trials 40]
        [--max-t 9] [--grace 1] [--rf 3] [--workers 4] [--real-ray] [--curve-json JSON]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py

from common import markdown_table  # noqa: E402
from schedulers_sim import TrialOutcome, hypervolume, reference_point, scheduler_factories, simulate
from schedulers_standin import SCENARIOS, CurveModel, scenario


def _fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"


HEADERS = ["scenario", "method", "HV mean ± sd", "min–max", "Δ vs FIFO", "wins (paired)", "epochs used",
           "trials", "at max_t", "of which cheap half", "best accuracy"]


def compare(name: str, args: argparse.Namespace) -> list[list[str]]:
    model = scenario(name)
    factories = scheduler_factories(args.max_t, args.grace, args.rf)
    budget = args.budget_trials * args.max_t
    stats: dict[str, dict[str, list[float]]] = {m: {k: [] for k in ("hv", "epochs", "trials", "full", "cheap", "best")}
                                                 for m in factories}
    for seed in range(args.seeds):
        for method, make in factories.items():
            run = simulate(make, model, seed=seed, budget_epochs=budget, max_t=args.max_t, workers=args.workers)
            full = run.full_fidelity(args.max_t)
            s = stats[method]
            s["hv"].append(hypervolume(full, model))
            s["epochs"].append(run.epochs_used)
            s["trials"].append(len(run.outcomes))
            s["full"].append(len(full))
            s["cheap"].append(sum(model.x(o.draw.cost) < 0.5 for o in full))
            s["best"].append(max((o.last_accuracy for o in full), default=0.0))
    hv = {m: s["hv"] for m, s in stats.items()}
    rows = []
    for method, s in stats.items():
        d_fifo = np.subtract(s["hv"], hv["fifo"])
        wins = {b: int(np.sum(np.greater(s["hv"], hv[b]))) for b in ("fifo", "asha") if b != method}
        rows.append([name, method, _fmt(s["hv"]), f"{min(s['hv']):.4f}–{max(s['hv']):.4f}",
                     f"{d_fifo.mean():+.4f}", " ".join(f"{b} {w}/{args.seeds}" for b, w in wins.items()) or "-",
                     f"{statistics.mean(s['epochs']):.0f}", f"{statistics.mean(s['trials']):.0f}",
                     f"{statistics.mean(s['full']):.1f}", f"{statistics.mean(s['cheap']):.1f}",
                     f"{statistics.mean(s['best']):.3f}"])
    return rows


def check_real_ray(args: argparse.Namespace) -> str:
    from schedulers_ray import run_real

    model = scenario(args.real_ray_scenario)
    budget = args.real_ray_trials * args.max_t
    rows = []
    for method, make in scheduler_factories(args.max_t, args.grace, args.rf).items():
        sim = simulate(make, model, seed=0, budget_epochs=budget, max_t=args.max_t, workers=1)
        start = time.perf_counter()
        real = run_real(make, model, seed=0, n_trials=len(sim.outcomes), max_t=args.max_t)
        seconds = time.perf_counter() - start
        same = sum(real[i][0] == o.epochs for i, o in enumerate(sim.outcomes))
        full_real = [TrialOutcome(o.draw, real[i][0], real[i][1]) for i, o in enumerate(sim.outcomes)
                     if real[i][0] >= args.max_t]
        rows.append([method, len(sim.outcomes), f"{same}/{len(sim.outcomes)}",
                     sum(r[0] for r in real.values()), sim.epochs_used,
                     f"{hypervolume(full_real, model):.4f}", f"{hypervolume(sim.full_fidelity(args.max_t), model):.4f}",
                     f"{seconds:.0f}"])
    return markdown_table(["method", "trials", "same epochs per trial", "epochs (Ray)", "epochs (sim)",
                           "HV (Ray)", "HV (sim)", "Ray seconds"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--scenario", default="all", choices=["all", *SCENARIOS])
    parser.add_argument("--budget-trials", type=int, default=40, help="budget = this many trials x max_t epochs")
    parser.add_argument("--max-t", type=int, default=9)
    parser.add_argument("--grace", type=int, default=1)
    parser.add_argument("--rf", type=float, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--curve-json", help="a CurveModel as JSON (e.g. from schedulers_fit.py): run it as "
                        "scenario 'fitted' instead of the built-in ones")
    parser.add_argument("--real-ray", action="store_true", help="also replay seed 0 through real Ray Tune")
    parser.add_argument("--real-ray-scenario", default="crossing", choices=list(SCENARIOS))
    parser.add_argument("--real-ray-trials", type=int, default=12, help="budget of the real-Ray replay, in trials")
    args = parser.parse_args()

    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    if args.curve_json:
        SCENARIOS["fitted"] = CurveModel(**json.loads(args.curve_json))
        names = ["fitted"]
    ref = reference_point(scenario(names[0]))
    print(f"budget {args.budget_trials} x {args.max_t} = {args.budget_trials * args.max_t} epochs per method; "
          f"grace {args.grace}, rf {args.rf:g}, {args.workers} workers, {args.seeds} seeds; "
          f"HV reference (error, log10 MACs) = ({ref[0]:.1f}, {ref[1]:.3f})\n")
    start = time.perf_counter()
    rows = [row for name in names for row in compare(name, args)]
    print(markdown_table(HEADERS, rows) + "\n")
    print(f"simulated in {time.perf_counter() - start:.1f} s\n")
    if args.real_ray:
        print(f"real Ray Tune vs simulator, scenario {args.real_ray_scenario}, seed 0, one trial at a time, "
              f"budget {args.real_ray_trials} x {args.max_t} epochs:\n")
        print(check_real_ray(args))


if __name__ == "__main__":
    main()
