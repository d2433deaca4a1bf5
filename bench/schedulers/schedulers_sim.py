"""An event simulator that drives real Ray Tune schedulers with real Trial objects, without a cluster.

It does what Ray's TuneController does for a scheduler, minus the actors: `workers` trials run at once;
each epoch of a trial takes `epoch_time(cost)` simulated seconds; at each epoch the trial's result goes to
`scheduler.on_trial_result`; STOP (or reaching max_t) ends the trial with `on_trial_complete`, and the
freed worker starts the next trial. Compute is counted in epochs: a new trial starts only if the budget
still holds max_t epochs for it on top of what the running trials could still use (so no method ends
with a trial cut off by the budget rather than by its scheduler, and all methods spend at most the same).

The model answers draw(seed, index) (the next trial; None when it has nothing left to propose), result()
and epoch_time(); a model with a searcher behind it (sk_replay.py) also hears complete(outcome, result,
epochs_used) when a trial ends, as Ray's searcher does. A draw with `start` > 0 continues a paused trial:
only its epochs after `start` are trained and counted.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from schedulers_standin import CurveModel, TrialDraw
from sksearch.search.schedulers import ParetoASHA

SchedulerFactory = Callable[[], TrialScheduler]


def scheduler_factories(max_t: int, grace_period: int, reduction_factor: float) -> dict[str, SchedulerFactory]:
    return {
        "fifo": FIFOScheduler,
        "asha": lambda: AsyncHyperBandScheduler(metric="accuracy", mode="max", max_t=max_t,
                                                grace_period=grace_period, reduction_factor=reduction_factor),
        "pareto_asha": lambda: ParetoASHA(metric="accuracy", mode="max", cost_attr="macs", max_t=max_t,
                                          grace_period=grace_period, reduction_factor=reduction_factor),
    }


@dataclass
class TrialOutcome:
    draw: TrialDraw
    epochs: int = 0
    last_accuracy: float = float("nan")


@dataclass
class SimResult:
    outcomes: list[TrialOutcome] = field(default_factory=list)
    epochs_used: int = 0

    def full_fidelity(self, max_t: int) -> list[TrialOutcome]:
        return [o for o in self.outcomes if o.epochs >= max_t]


def simulate(make_scheduler: SchedulerFactory, model: CurveModel, *, seed: int, budget_epochs: int,
             max_t: int, workers: int) -> SimResult:
    np.random.seed(seed)  # Ray's bracket choice draws from the global generator
    scheduler = make_scheduler()
    out = SimResult()
    running: dict[int, TrialOutcome] = {}
    events: list[tuple[float, int]] = []  # (time the trial's next epoch ends, trial index)
    now = 0.0
    trials: dict[int, Trial] = {}

    exhausted = False

    def can_start() -> bool:
        reserved = sum(max_t - o.epochs for o in running.values())
        return not exhausted and len(running) < workers and out.epochs_used + reserved + max_t <= budget_epochs

    def start_trials() -> None:
        nonlocal exhausted
        while can_start():
            index = len(out.outcomes)
            draw = model.draw(seed, index)
            if draw is None:
                exhausted = True
                return
            trial = Trial("standin", config={"index": index}, trial_id=f"t{index:05d}", stub=True)
            trials[index] = trial
            scheduler.on_trial_add(None, trial)
            # A continuation of a paused trial (sk_replay with tune.scheduler.pause) starts where it paused.
            outcome = TrialOutcome(draw, epochs=getattr(draw, "start", 0))
            out.outcomes.append(outcome)
            running[index] = outcome
            heapq.heappush(events, (now + model.epoch_time(draw), index))

    start_trials()
    while events:
        now, index = heapq.heappop(events)
        outcome = running[index]
        outcome.epochs += 1
        out.epochs_used += 1
        result = model.result(outcome.draw, outcome.epochs, seed)
        outcome.last_accuracy = result["accuracy"]
        decision = scheduler.on_trial_result(None, trials[index], result)
        if decision == TrialScheduler.STOP or outcome.epochs >= max_t:
            scheduler.on_trial_complete(None, trials[index], result)
            if hasattr(model, "complete"):
                model.complete(outcome, result, out.epochs_used)
            del running[index]
            start_trials()
        else:
            heapq.heappush(events, (now + model.epoch_time(outcome.draw), index))
    return out


def front_losses(outcomes: list[TrialOutcome]) -> np.ndarray:
    """(error, log10 MACs) of the given trials, both minimised."""
    return np.array([[1.0 - o.last_accuracy, math.log10(o.draw.cost)] for o in outcomes]).reshape(-1, 2)


def reference_point(model: CurveModel) -> np.ndarray:
    """Error 1 (accuracy 0) and 1.1 x the largest cost in the space."""
    return np.array([1.0, math.log10(1.1 * model.cost_max)])


def hypervolume(outcomes: list[TrialOutcome], model: CurveModel) -> float:
    from sksearch.front import hypervolume as volume  # the product's one owner of the front math

    return volume(front_losses(outcomes), reference_point(model))
