"""Budget checks before training: a sampled spec is measured on the meta device and held to the study's limits.

Nothing here builds a model with real weights, so an over-budget or invalid spec costs milliseconds and
never a trial. The tuner records such a spec as COMPLETE with the worst accuracy and passes `constraints`
to `trial.set_constraint`, so that constraint-aware samplers learn to avoid the region.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna

from sksearch.complexity import count
from sksearch.config import Constraints, LatencyConfig, StudyConfig
from sksearch.errors import UserError
from sksearch.search.space import SearchSpace
from sksearch.spec import ArchSpec
from sksearch.units import format_count

# Constraint entries in a fixed order: Optuna's GP sampler needs the same entries, in the same order, on
# every trial, so an invalid spec carries the budget entries too (0.0 = "unknown", neither side of a budget).
VALID = "valid"



@dataclass
class Feasibility:
    spec: ArchSpec | None           # None when the sampled values make no valid ArchSpec
    params: int | None
    macs: int | None
    reason: str | None              # None = feasible; else one line
    constraints: dict[str, float] = field(default_factory=dict)  # Optuna constraint values, <= 0 feasible
    select_macs: int | None = None  # the attention's elementwise products, not in macs (see complexity.py)
    latency: float | None = None    # predicted milliseconds on the study's latency target, when it uses one

    @property
    def feasible(self) -> bool:
        return self.reason is None


def _budgets(constraints: Constraints) -> dict[str, float]:
    limits = (("max_macs", constraints.max_macs), ("max_params", constraints.max_params),
              ("max_latency_ms", constraints.max_latency_ms))
    return {name: limit for name, limit in limits if limit is not None}


def _format(label: str, value: float) -> str:
    return f"{value:.3g} ms" if label == "latency" else format_count(value)


def invalid(reason: str, constraints: Constraints) -> Feasibility:
    """A spec that cannot exist (e.g. G does not divide a width): never measured, never trained."""
    values = {VALID: 1.0, **{name: 0.0 for name in _budgets(constraints)}}
    return Feasibility(spec=None, params=None, macs=None, reason=reason, constraints=values)


def check_spec(spec_dict: dict[str, Any], constraints: Constraints, *, num_classes: int,
               input_size: list[int], latency: LatencyConfig | None = None) -> Feasibility:
    """Fit the spec to the data set, validate it, count it on the meta device and hold it to the budgets.
    With a latency target, its latency is predicted from the per-unit table too (sksearch.latency)."""
    data = dict(spec_dict, num_classes=num_classes, input_size=list(input_size))
    try:
        spec = ArchSpec.from_dict(data)
    except UserError as exc:
        return invalid(f"{exc.key}: {exc.detail}" if exc.key else exc.detail, constraints)
    try:
        c = count(spec)
    except RuntimeError as exc:
        # e.g. a feature map shrinks below the kernel at this input size.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return invalid(f"input_size: the network cannot run at {input_size}: {first}", constraints)

    ms = None
    if latency is not None:
        from sksearch.latency import table_for  # torch timing: only for studies that use latency

        ms = round(table_for(latency).predict(spec).ms, 5)  # as stored (records.record_sampled)
    values = {VALID: 0.0}
    reasons = []
    measured = {"max_macs": ("macs", c.macs), "max_params": ("params", c.params), "max_latency_ms": ("latency", ms)}
    for name, limit in _budgets(constraints).items():
        label, value = measured[name]
        if value is None:  # max_latency_ms without a target cannot happen: the study then uses latency
            continue
        values[name] = value / limit - 1.0
        if value > limit:
            reasons.append(f"{label} {_format(label, value)} > {name} {_format(label, limit)}")
    return Feasibility(spec=spec, params=c.params, macs=c.macs, reason="; ".join(reasons) or None, constraints=values,
                       select_macs=c.select_macs, latency=ms)


def sample_feasibility(space: SearchSpace, trial: optuna.Trial, study: StudyConfig) -> Feasibility:
    """Sample one spec from the space on `trial` and check it against the study's data set and budgets."""
    num_classes, input_size = study.geometry()  # derived once per load, not once per sample
    return check_spec(space.sample(trial), study.constraints, num_classes=num_classes, input_size=input_size,
                      latency=study.latency_target())
