"""Pareto-ASHA: asynchronous successive halving that promotes by dominance, not by one metric.

Plain ASHA ranks a rung by accuracy alone, so in an accuracy-vs-cost search it keeps stopping the cheap
models, which are exactly the ones that make up the left half of the Pareto front. Pareto-ASHA keeps
ASHA's shape (rungs at grace_period * rf**k below max_t, each trial judged on arrival against what its
rung has recorded so far, no waiting for a full rung) and changes only the promotion rule:

1. non-dominated sorting of the rung's (accuracy, cost) pairs, candidate included;
2. inside a front, larger crowding distance first (NSGA-II), measured on (accuracy, log cost) because
   costs span orders of magnitude and raw MACs would make every cheap model look crowded;
3. the candidate continues if fewer than ceil(n / reduction_factor) entries are strictly ahead of it.
   Ties go to the candidate, as in ASHA (which stops only when reward < cutoff);
4. it also continues if fewer than that many entries are strictly more accurate (ASHA's own cut, on
   accuracy alone; keep_most_accurate=False turns it off): an accurate model that starts slowly is
   dominated at an early rung by cheaper fast starters, and without this it is lost to the front.

With tune.scheduler.pause the driver keeps the training state of a trial stopped at a rung, and the ehvi
sampler may resume it later (search/proposals.py); the continuation's results carry `resumed_at`, and it is
judged only at the rungs above that epoch.
"""

from __future__ import annotations

import logging
import math
import pickle
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from sksearch.config import StudyConfig
from sksearch import front
from sksearch.search.protocol import RESUMED_AT

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

Point = tuple[float, float]  # (accuracy: higher is better, cost: lower is better)


# -- the promotion rule -------------------------------------------------------------------------------------

def _as_losses(points: list[Point] | np.ndarray) -> np.ndarray:
    """(accuracy, cost) -> (-accuracy, cost), both minimised; NaN becomes the worst value."""
    arr = np.asarray(points, dtype=float).reshape(-1, 2)
    losses = np.column_stack([-arr[:, 0], arr[:, 1]])
    return np.where(np.isnan(losses), np.inf, losses)


def nondomination_ranks(points: list[Point] | np.ndarray) -> np.ndarray:
    """Front index of each (accuracy, cost) pair: 0 = the Pareto front of the set."""
    return front.nondomination_ranks(_as_losses(points))


def crowding_distances(points: list[Point] | np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each point of ONE front, on (accuracy, log cost).

    The two extremes of each axis get infinity; interior points get the normalised gap between their
    neighbours, summed over the axes. Log cost is used when all costs are positive and finite.
    """
    arr = np.asarray(points, dtype=float).reshape(-1, 2).copy()
    arr[np.isnan(arr[:, 0]), 0] = -np.inf
    arr[np.isnan(arr[:, 1]), 1] = np.inf
    cost = arr[:, 1]
    if np.all(cost > 0) and np.all(np.isfinite(cost)):
        arr[:, 1] = np.log(cost)
    n = len(arr)
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for axis in range(2):
        order = np.argsort(arr[:, axis], kind="stable")
        values = arr[order, axis]
        finite = values[np.isfinite(values)]
        if finite.size == 0 or values[0] == values[-1]:
            continue  # an axis on which everyone is equal says nothing about spacing
        width = finite.max() - finite.min() or 1.0
        dist[order[0]] = dist[order[-1]] = np.inf
        with np.errstate(invalid="ignore"):
            gaps = (values[2:] - values[:-2]) / width
        dist[order[1:-1]] += np.nan_to_num(gaps, nan=0.0, posinf=np.inf)
    return dist


def promotion_quota(n_entries: int, reduction_factor: float) -> int:
    """How many of n entries continue: ceil(n / rf), so a rung of any size promotes at least one."""
    return max(1, math.ceil(round(n_entries / reduction_factor, 9)))


def pareto_promotable(rung: list[Point], candidate: Point, reduction_factor: float, *,
                      keep_most_accurate: bool = True) -> bool:
    """The promotion rule. `rung`: (accuracy, cost) pairs recorded at this rung before the candidate.

    True when the candidate is within the top ceil((len(rung) + 1) / reduction_factor) of the rung
    ordered by (front index, larger crowding distance first), counting only entries strictly ahead; or,
    with keep_most_accurate, within that many of the rung by accuracy alone (ASHA's own cut).
    """
    points = np.asarray([*rung, candidate], dtype=float).reshape(-1, 2)
    me = len(points) - 1
    quota = promotion_quota(len(points), reduction_factor)
    if keep_most_accurate:
        # A slow-starting accurate model is often dominated at an early rung by cheaper, faster starters;
        # on the SK table Pareto order alone lost such front members in most trial orders (BENCHMARKS.md).
        accuracy = np.nan_to_num(points[:, 0], nan=-np.inf)
        if int(np.sum(accuracy > accuracy[me])) < quota:
            return True
    ranks = nondomination_ranks(points)
    same_front = np.flatnonzero(ranks == ranks[me])
    crowding = crowding_distances(points[same_front])
    my_crowding = crowding[same_front == me][0]
    ahead = int(np.sum(ranks < ranks[me])) + int(np.sum(crowding > my_crowding))
    return ahead < quota


# -- the Ray Tune scheduler ---------------------------------------------------------------------------------

def rung_milestones(min_t: float, max_t: float, reduction_factor: float, s: int = 0) -> list[float]:
    """A bracket's rungs, lowest first: min_t x rf^k for k >= s, below max_t (at max_t a trial is finished,
    so a rung there would decide nothing)."""
    milestones = []
    k = s
    while min_t * reduction_factor**k < max_t:
        milestones.append(min_t * reduction_factor**k)
        k += 1
    return milestones


def rung_epochs(cfg: StudyConfig) -> list[int]:
    """The epochs at which a study's trials are judged (a trial is judged at the first epoch past each rung):
    where tune.scheduler.pause has workers stage their training state. None for fifo."""
    s = cfg.tune.scheduler
    if s.type == "fifo":
        return []
    return [math.ceil(round(m, 9)) for m in rung_milestones(s.grace_period, cfg.max_epochs(), s.reduction_factor)]


class _ParetoBracket:
    """One bracket: rungs (highest first) mapping trial id -> (reward, cost) recorded there."""

    def __init__(self, min_t: float, max_t: float, reduction_factor: float, s: int,
                 keep_most_accurate: bool = True) -> None:
        self.rf = reduction_factor
        self.keep_most_accurate = keep_most_accurate
        milestones = rung_milestones(min_t, max_t, reduction_factor, s)
        self.rungs: list[tuple[float, dict[str, Point]]] = [(m, {}) for m in reversed(milestones)]

    def on_result(self, trial_id: str, cur_iter: float, reward: float, cost: float, resumed_at: float = 0) -> str:
        for milestone, recorded in self.rungs:
            # A continuation of a paused trial (tune.scheduler.pause) was judged at the rungs up to where it paused.
            if cur_iter < milestone or trial_id in recorded or milestone <= resumed_at:
                continue
            keep = pareto_promotable(list(recorded.values()), (reward, cost), self.rf,
                                     keep_most_accurate=self.keep_most_accurate)
            recorded[trial_id] = (reward, cost)
            return TrialScheduler.CONTINUE if keep else TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_str(self) -> str:
        parts = []
        for milestone, recorded in self.rungs:
            front = int(np.sum(nondomination_ranks(list(recorded.values())) == 0)) if recorded else 0
            parts.append(f"Iter {milestone:g}: {len(recorded)} recorded, {front} on front")
        return "Bracket: " + " | ".join(parts)


class ParetoASHA(FIFOScheduler):
    """Asynchronous successive halving with non-dominated sorting over (metric, cost) at each rung.

    Every result must carry `time_attr`, `metric` and `cost_attr` (a cost known before training, e.g.
    MACs, constant for the trial); a result missing one of them is skipped (CONTINUE), as ASHA does.
    Trials reaching `max_t` are stopped. Returns only CONTINUE / STOP; the tuner records stopped trials.
    """

    def __init__(self, *, time_attr: str = "training_iteration", metric: str = "accuracy",
                 mode: str = "max", cost_attr: str = "macs", grace_period: int = 1,
                 reduction_factor: float = 3, max_t: int = 10, brackets: int = 1,
                 keep_most_accurate: bool = True) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"ParetoASHA: mode must be 'max' or 'min', got {mode!r}")
        if grace_period <= 0 or max_t < grace_period:
            raise ValueError(f"ParetoASHA: need 0 < grace_period <= max_t (got {grace_period}, {max_t})")
        if reduction_factor <= 1:
            raise ValueError(f"ParetoASHA: reduction_factor must be > 1, got {reduction_factor}")
        if brackets < 1:
            raise ValueError(f"ParetoASHA: brackets must be >= 1, got {brackets}")
        super().__init__()
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._cost_attr = cost_attr
        self._max_t = max_t
        self._reduction_factor = reduction_factor
        self._brackets = [_ParetoBracket(grace_period, max_t, reduction_factor, s, keep_most_accurate)
                          for s in range(brackets)]
        self._trial_info: dict[str, _ParetoBracket] = {}
        self._num_stopped = 0
        self._warned_missing = False

    @property
    def _sign(self) -> float:
        return 1.0 if self._mode == "max" else -1.0

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        # The same metric/mode passed again via TuneConfig is not a conflict.
        return (metric is None or metric == self._metric) and (mode is None or mode == self._mode)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        # Same bracket choice as Ray's ASHA: softmax over the number of rungs.
        sizes = np.array([len(b.rungs) for b in self._brackets])
        probs = np.exp(sizes - sizes.max())
        idx = int(np.random.choice(len(self._brackets), p=probs / probs.sum()))
        self._trial_info[trial.trial_id] = self._brackets[idx]

    def _read(self, result: dict) -> tuple[float, float, float, float] | None:
        """(time, signed metric, cost, the epoch a continuation resumed from or 0), or None when one is missing."""
        try:
            return (float(result[self._time_attr]), self._sign * float(result[self._metric]),
                    float(result[self._cost_attr]), float(result.get(RESUMED_AT) or 0))
        except (KeyError, TypeError, ValueError):
            if not self._warned_missing:
                logger.warning("ParetoASHA: result lacks %r, %r or %r; no decision taken",
                               self._time_attr, self._metric, self._cost_attr)
                self._warned_missing = True
            return None

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        read = self._read(result)
        if read is None:
            return TrialScheduler.CONTINUE
        t, reward, cost, resumed_at = read
        if t >= self._max_t:
            return TrialScheduler.STOP
        bracket = self._trial_info.get(trial.trial_id)
        if bracket is None:  # a trial the scheduler was never told about: leave it alone
            return TrialScheduler.CONTINUE
        action = bracket.on_result(trial.trial_id, t, reward, cost, resumed_at)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        bracket = self._trial_info.pop(trial.trial_id, None)
        read = self._read(result) if result else None
        if bracket is not None and read is not None:
            bracket.on_result(trial.trial_id, *read)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._trial_info.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        lines = [f"Using ParetoASHA ({self._metric} {self._mode} vs {self._cost_attr}): "
                 f"num_stopped={self._num_stopped}"]
        return "\n".join(lines + [b.debug_str() for b in self._brackets])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def make_scheduler(cfg: StudyConfig) -> TrialScheduler:
    """The Ray Tune scheduler of a study's tune.scheduler block (all stop on accuracy, maximised)."""
    from ray.tune.schedulers import AsyncHyperBandScheduler

    s = cfg.tune.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    common = dict(time_attr="epoch", metric="accuracy", mode="max", max_t=cfg.max_epochs(),
                  grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    if s.type == "asha":
        return AsyncHyperBandScheduler(brackets=1, **common)
    return ParetoASHA(cost_attr=s.cost, keep_most_accurate=s.keep_most_accurate, **common)
