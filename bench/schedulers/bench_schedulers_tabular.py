"""FIFO vs ASHA vs Pareto-ASHA replayed over REAL learning curves recorded on the synthetic data.

The table comes from `schedulers_table.py` (real specs from the tiny CIFAR space, trained by sksearch's
trainer; every epoch's validation accuracy). Each seed draws the trials in its own random order; the
real Ray schedulers decide through the event simulator of `schedulers_sim.py`; every method gets the same
total epochs. Score: hypervolume of the trials trained to max_t, in (error, log10 MACs).

    .venv/bin/python bench/schedulers/bench_schedulers_tabular.py [--table FILE] [--seeds 20] [--budget-trials 12]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py

from common import markdown_table  # noqa: E402
from schedulers_sim import hypervolume, scheduler_factories, simulate  # noqa: E402
from schedulers_standin import CurveModel, TrialDraw  # noqa: E402


@dataclass(frozen=True)
class TabularCurves:
    """The simulator's curve-model interface, answered from recorded curves instead of a formula."""

    trials: tuple[dict, ...]

    @property
    def cost_min(self) -> float:
        return min(t["macs"] for t in self.trials)

    @property
    def cost_max(self) -> float:
        return max(t["macs"] for t in self.trials)

    def x(self, cost: float) -> float:
        return math.log(cost / self.cost_min) / math.log(self.cost_max / self.cost_min)

    epoch_time = CurveModel.epoch_time  # the stand-in's timing, on this table's cost range

    def draw(self, seed: int, index: int) -> TrialDraw:
        n = len(self.trials)
        order = np.random.default_rng([seed, index // n]).permutation(n)  # each pass over the table reshuffled
        k = int(order[index % n])
        t = self.trials[k]
        return TrialDraw(index, float(t["macs"]), int(t["params"]), a_inf=float(k), tau=0.0)  # a_inf: row number

    def result(self, draw: TrialDraw, epoch: int, seed: int) -> dict:
        curve = self.trials[int(draw.a_inf)]["curve"]
        return {"training_iteration": epoch, "accuracy": curve[epoch - 1], "macs": int(draw.cost),
                "params": draw.params}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--table", default=str(REPO / "bench" / "tables" / "synthetic_curves.json"))
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--budget-trials", type=int, default=12, help="budget = this many trials x max_t epochs")
    p.add_argument("--grace", type=int, default=1)
    p.add_argument("--rf", type=float, default=2)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    table = json.loads(Path(args.table).read_text())
    model = TabularCurves(tuple(table["trials"]))
    max_t = int(table["epochs"])
    budget = args.budget_trials * max_t
    methods = scheduler_factories(max_t, args.grace, args.rf)
    hv: dict[str, list[float]] = {m: [] for m in methods}
    full: dict[str, list[int]] = {m: [] for m in methods}
    for seed in range(args.seeds):
        for name, factory in methods.items():
            res = simulate(factory, model, seed=seed, budget_epochs=budget, max_t=max_t, workers=args.workers)
            hv[name].append(hypervolume(res.full_fidelity(max_t), model))
            full[name].append(len(res.full_fidelity(max_t)))
    ref = f"(1.0, {math.log10(1.1 * model.cost_max):.3f})"
    print(f"{len(model.trials)} real curves of {max_t} epochs; budget {budget} epochs per method; grace "
          f"{args.grace}, rf {args.rf:g}, {args.workers} workers; {args.seeds} seeds; HV reference (error, log10 MACs) {ref}\n")
    rows = []
    for name in methods:
        h = np.array(hv[name])
        wins = [f"vs {o} {int(np.sum(h > np.array(hv[o])))}/{args.seeds}" for o in methods if o != name]
        rows.append([name, f"{h.mean():.4f} ± {h.std():.4f}", f"{h.min():.4f}-{h.max():.4f}",
                     f"{np.mean(full[name]):.1f}", ", ".join(wins)])
    print(markdown_table(["method", "HV mean ± sd", "min-max", "trials at max_t", "paired wins"], rows))


if __name__ == "__main__":
    main()
