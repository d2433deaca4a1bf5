"""Which trial a command means: `--trial best|N` (export, attention, the API's best trial) and the best trial
with attention (attention's suggestions and the line a finished run ends with). One rule each:

- `best` is the most accurate trial of the full-fidelity front (the cheaper one on a tie), within the
  optional cost limits;
- the best trial with attention is the most accurate fully trained trial whose SK units have attention (and,
  when asked, kept weights), on the front or not: a dominated one is still worth a look.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial

from sksearch.errors import UserError
from sksearch.results.pareto import full_fidelity_trials
from sksearch.spec import ArchSpec
from sksearch.storage import records
from sksearch.storage.records import Key


def _cost(t: FrozenTrial, name: str) -> float:
    c = records.cost(t, name)
    return math.inf if c is None else c


def most_accurate(trials: Sequence[FrozenTrial], names: Sequence[str] | None = None, *,
                  where: Callable[[FrozenTrial], bool] | None = None) -> FrozenTrial | None:
    """The most accurate of `trials` that satisfy `where` (the cheaper on a tie), or None."""
    pool = [t for t in trials if where is None or where(t)]
    return max(pool, key=lambda t: (records.accuracy(t, names) or 0.0, -_cost(t, Key.MACS)), default=None)


def pick_trial(trials: Sequence[FrozenTrial], front: Sequence[FrozenTrial], which: str, *,
               names: Sequence[str] | None = None, max_macs: int | None = None,
               max_params: int | None = None) -> FrozenTrial:
    """`best` (the most accurate front trial within the limits) or trial number N (any state: the caller says
    what it needs of it). Errors are one line naming `--trial`."""
    if which == "best":
        pool = [t for t in front
                if (max_macs is None or _cost(t, Key.MACS) <= max_macs)
                and (max_params is None or _cost(t, Key.PARAMS) <= max_params)]
        if not pool:
            if not front:
                raise UserError("the study has no full-fidelity trial yet (none trained for the full budget)",
                                key="--trial")
            cheapest = min(front, key=lambda t: _cost(t, Key.MACS))
            raise UserError(f"no front trial within the limits; the cheapest front trial is #{cheapest.number} with "
                            f"{records.cost(cheapest, Key.MACS)} MACs and {records.cost(cheapest, Key.PARAMS)} params")
        return most_accurate(pool, names)  # type: ignore[return-value]
    try:
        number = int(which)
    except ValueError:
        raise UserError(f"--trial expects 'best' or a trial number, got {which!r}") from None
    trial = next((t for t in trials if t.number == number), None)
    if trial is None:
        raise UserError(f"--trial {number}: no such trial (the study has trials 0 to {len(trials) - 1})")
    return trial


def has_attention(spec: ArchSpec) -> bool:
    """True when the spec's SK units select (softmax over M >= 2 paths)."""
    return spec.sk.attention == "softmax" and spec.sk.M >= 2


def _trial_has_attention(t: FrozenTrial) -> bool:
    spec = records.arch_spec(t)
    return spec is not None and has_attention(spec)


def best_with_attention(study: optuna.Study, *, need_weights: bool = False) -> FrozenTrial | None:
    """The most accurate full-fidelity trial with attention (and kept weights, when `need_weights`), or None."""
    full = full_fidelity_trials(study.get_trials(deepcopy=False))
    keep = (lambda t: _trial_has_attention(t) and records.weights_artifact(study, t) is not None) if need_weights \
        else _trial_has_attention
    return most_accurate(full, study.metric_names, where=keep)
