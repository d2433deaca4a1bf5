"""A cheap stand-in for training one trial: a learning-curve model acc(cost, epoch).

    x        = log(cost / cost_min) / log(cost_max / cost_min)        in [0, 1], cost log-uniform
    a_inf(x) = floor + gain * (1 - exp(-sat * x)) / (1 - exp(-sat))    diminishing returns in cost
             + quality                                                 per-trial recipe luck, N(0, quality_sd)
             (times bad_factor for a fraction p_bad of trials: a recipe that trains badly)
    tau(x)   = tau_cheap * (tau_big / tau_cheap) ** x                  epochs to reach 63% of a_inf
    acc(t)   = a_inf * (1 - exp(-t / tau)) + N(0, noise_sd)            one validation measurement per epoch

tau_big > tau_cheap makes the curves cross: cheap models learn faster early, big ones overtake late.
Every random draw is keyed by (seed, trial index[, epoch]), so trial i has the same curve whichever
scheduler runs it: the schedulers are compared on identical trial sequences.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np


@dataclass(frozen=True)
class TrialDraw:
    index: int
    cost: float          # MACs
    params: int
    a_inf: float
    tau: float


@dataclass(frozen=True)
class CurveModel:
    cost_min: float = 20e6
    cost_max: float = 2e9
    floor: float = 0.60
    gain: float = 0.30
    sat: float = 3.0
    tau_cheap: float = 1.0
    tau_big: float = 3.0
    quality_sd: float = 0.03
    p_bad: float = 0.2
    bad_factor: float = 0.7
    noise_sd: float = 0.005

    def x(self, cost: float) -> float:
        return math.log(cost / self.cost_min) / math.log(self.cost_max / self.cost_min)

    def epoch_time(self, draw: TrialDraw) -> float:
        return 0.25 + self.x(draw.cost)  # bigger models take longer per epoch

    def draw(self, seed: int, index: int) -> TrialDraw:
        rng = np.random.default_rng([seed, index])
        x = rng.uniform()
        cost = self.cost_min * (self.cost_max / self.cost_min) ** x
        a_inf = self.floor + self.gain * (1 - math.exp(-self.sat * x)) / (1 - math.exp(-self.sat))
        a_inf += rng.normal(0, self.quality_sd)
        if rng.uniform() < self.p_bad:
            a_inf *= self.bad_factor
        tau = self.tau_cheap * (self.tau_big / self.tau_cheap) ** x
        return TrialDraw(index, round(cost), round(cost / 60), min(a_inf, 0.999), tau)

    def accuracy(self, draw: TrialDraw, epoch: int, seed: int) -> float:
        rng = np.random.default_rng([seed, draw.index, epoch, 1])
        acc = draw.a_inf * (1 - math.exp(-epoch / draw.tau)) + rng.normal(0, self.noise_sd)
        return float(min(max(acc, 0.0), 1.0))

    def result(self, draw: TrialDraw, epoch: int, seed: int) -> dict:
        """The per-epoch result dict every sksearch trial reports."""
        return {"training_iteration": epoch, "accuracy": self.accuracy(draw, epoch, seed),
                "macs": draw.cost, "params": draw.params}

    def to_dict(self) -> dict:
        return asdict(self)


SCENARIOS: dict[str, CurveModel] = {
    # Bigger is better at every epoch (same learning speed): ASHA's cost bias is strongest here.
    "ordered": CurveModel(tau_cheap=2.0, tau_big=2.0),
    # Mild crossing: big models need ~3x the epochs of cheap ones to get going.
    "crossing": CurveModel(),
    # Strong crossing: big models need 8x the epochs; by epoch 1 they look worse than tiny ones.
    "strong_crossing": CurveModel(tau_big=8.0),
}


def scenario(name: str, **overrides: float) -> CurveModel:
    return replace(SCENARIOS[name], **overrides)
