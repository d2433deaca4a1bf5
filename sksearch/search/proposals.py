"""`tune.sampler.type: ehvi`: proposals ranked by the front they would add.

For each free slot: draw a pool of candidate specs from the space (define-by-run on an in-memory trial, as
the dry run does), count each on the meta device, drop infeasible ones and networks already trained
or running (ArchSpec.identity); predict each one's full-fidelity accuracy as a Gaussian; score it
by the expected improvement of the front's hypervolume at its *known* cost (sksearch.front's closed form
in two objectives); propose the best. The searcher enqueues the proposal's parameters on the study, so the
trial is an ordinary define-by-run trial for storage, dashboard, resume and several drivers.

The model: scikit-learn's Gaussian process (Matern 5/2 with one length scale over the standardised spec
features, plus white noise with a floor): with a length scale per feature, the fit explained a few dozen
curves too well and its predictions for stopped networks were over-confident (bench/schedulers/
model_calibration.py). It learns from every trial the study holds, pruned ones (their rungs), partial ones
and seed confirmations as well as full ones: every rung is a point in (features, epoch), and once the study
has MIN_CURVES curves trained in full, each unfinished trial is also an observation of its final accuracy,
predicted from its last epoch by a line fitted to those curves (RungToFinal), with that line's prediction
variance as the observation's own noise: an epoch-1 result that says little about the final one moves the
model little, an epoch-3 one more. Why a GP: a few hundred observations at most, smooth in the features
that matter (log cost, paths, attention width), calibrated uncertainty for the expected improvement, known
per-observation noise, and a well-kept implementation. Running trials are pending: they join the front at
their predicted mean (a constant liar) so parallel slots spread out. The first few proposals are random
(the model needs data).

With tune.scheduler.pause, trials a rung stopped keep their training state, and each paused trial competes
with the pool by the same expected front gain (its predicted full-fidelity accuracy, its known cost): the
proposal then resumes it (`Proposal.resume`), and the searcher makes the new trial its continuation.
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from sksearch.config import StudyConfig
from sksearch.front import (COST_REFERENCE, cost_scale, expected_hypervolume_improvement, expected_positive_part, hypervolume,
                             is_pareto_front)
from sksearch.search.dryrun import iter_distinct
from sksearch.search.feasibility import Feasibility
from sksearch.search.space import SearchSpace
from sksearch.spec import ArchSpec
from sksearch.storage import records as st

# The kernel's noise at least this share of the (normalised) variance: an epoch-1 accuracy says little about the
# final one (rank correlation 0.13-0.17 on the SK tables), and a GP free to explain every point missed most
# stopped front members by more than 3 sd (bench/schedulers/model_calibration.py).
NOISE_FLOOR = 0.05
MAX_OBSERVATIONS = 600  # a GP fit is cubic in these; beyond, the oldest trials go
RETUNE_GROWTH = 1.25    # the kernel's hyperparameters are re-optimised when the data grew by this factor
MIN_CURVES = 3          # full-fidelity curves before a rung's accuracy is read as a final one (RungToFinal)


def _on_ladder(epoch: int) -> bool:
    """Epochs 1, 3, 9, 27, ... (where ASHA's rungs fall by default) and each curve's last are observed:
    neighbouring epochs of one curve add little, and the fit is cubic in the observations."""
    while epoch % 3 == 0:
        epoch //= 3
    return epoch == 1


def _finite_prefix(history: Sequence[float | None]) -> list[float]:
    """A curve up to its first missing or non-finite epoch (a trial that diverged)."""
    out = []
    for acc in history:
        if acc is None or not math.isfinite(acc):
            break
        out.append(float(acc))
    return out


@dataclass
class RungToFinal:
    """The learning curves' answer to "what will a network that measured a at epoch e reach at the budget?":
    per epoch, a least-squares line of final accuracy on that epoch's accuracy over the study's curves
    trained in full, and its prediction variance (residual variance x (1 + 1/n + (a - mean)^2 / Sxx)). On
    the SK tables an epoch-1 accuracy barely ranks the final ones (Spearman 0.14 / 0.19) and an epoch-3 one
    does (0.72 / 0.87): the line's residual says how much each rung is worth, so rung-1 results come in
    with about the spread of the finals themselves and rung-3 results with much less."""

    curves: list[list[float]]  # full-fidelity curves (at least max_epochs long), confirmations included
    max_epochs: int
    _lines: dict[int, tuple[float, ...]] = field(default_factory=dict, init=False, repr=False)  # epoch -> line

    @classmethod
    def from_trials(cls, trials: Sequence[FrozenTrial], max_epochs: int) -> RungToFinal:
        curves = []
        for t in trials:
            if st.status(t) in ("full", "confirmation"):
                curve = _finite_prefix(t.user_attrs.get(st.Key.ACCURACY_HISTORY) or [])
                if len(curve) >= max_epochs:
                    curves.append(curve[:max_epochs])
        return cls(curves, max_epochs)

    def ready(self) -> bool:
        return len(self.curves) >= MIN_CURVES

    def _line(self, epoch: int) -> tuple[float, ...]:
        """(n, mean x, mean y, Sxx, slope, residual variance) of the line for `epoch`, fitted once per epoch."""
        if epoch not in self._lines:
            x = np.array([c[epoch - 1] for c in self.curves])
            y = np.array([c[-1] for c in self.curves])
            n, xm, ym = len(x), float(x.mean()), float(y.mean())
            sxx = float(((x - xm) ** 2).sum())
            # A later accuracy does not fall with an earlier one: a negative slope is noise of a few curves.
            slope = max(float(((x - xm) * (y - ym)).sum()) / sxx, 0.0) if sxx > 1e-12 else 0.0
            residual = float(((y - ym - slope * (x - xm)) ** 2).sum()) / max(n - 2, 1)
            self._lines[epoch] = (n, xm, ym, sxx, slope, residual)
        return self._lines[epoch]

    def predict(self, epoch: int, accuracy: float) -> tuple[float, float]:
        """Mean and variance of the full-fidelity accuracy of a curve at `accuracy` after `epoch` epochs."""
        if epoch >= self.max_epochs:
            return float(accuracy), 0.0
        n, xm, ym, sxx, slope, residual = self._line(epoch)
        spread = (accuracy - xm) ** 2 / sxx if sxx > 1e-12 else 0.0
        var = residual * (1 + 1 / n + min(spread, 1e3))
        return float(np.clip(ym + slope * (accuracy - xm), 0.0, 1.0)), max(var, 1e-6)


def spec_features(spec: ArchSpec, macs: float, params: float) -> list[float]:
    """What the accuracy model sees of a network: its known costs, and the SK choices as numbers that do
    not depend on path order or on r and L beyond the attention width they give (identity-consistent)."""
    sk = spec.sk
    channels = spec.sk_channels()
    fields = [(b.kernel, b.dilation if b.kernel > 1 else 1) for b in sk.branches]
    reach = [(k - 1) * d + 1 for k, d in fields]
    attends = sk.attention == "softmax" and len(fields) > 1
    width = np.mean([math.log2(sk.attention_width(c)) for c in channels]) if attends else 0.0
    groups = np.mean([math.log2(sk.groups_for(b, c)) for b in sk.branches for c in channels])
    return [
        math.log2(max(macs, 1)), math.log2(max(params, 1)),
        len(fields), float(attends), width, groups,
        float(np.mean(reach)), float(max(reach)),
        sum(k == 1 for k, _ in fields), sum(k >= 5 for k, _ in fields), sum(d > 1 for _, d in fields),
        math.log2(spec.widths[0]), float(sum(spec.depths)),
    ]


@dataclass
class Candidate:
    params: dict[str, Any]     # the define-by-run values that make this spec (what the study is given)
    feas: Feasibility
    identity: str
    features: list[float]


@dataclass
class Proposal:
    params: dict[str, Any]
    score: float               # expected hypervolume gain (normalised objectives)
    mean: float                # predicted full-fidelity accuracy
    sd: float
    resume: int | None = None  # the number of a paused trial to resume instead of a new spec

    def summary(self) -> dict[str, float]:
        out = {"predicted_accuracy": round(self.mean, 4), "sd": round(self.sd, 4),
               "expected_front_gain": float(f"{self.score:.4g}")}
        return out if self.resume is None else {**out, "resumes": self.resume}


class FrontGainProposer:
    def __init__(self, cfg: StudyConfig, space: SearchSpace, *, pool_size: int | None = None,
                 n_startup: int | None = None) -> None:
        self.cfg = cfg
        self.space = space
        s = cfg.tune.sampler
        self.seed = s.seed or 0
        self.pool_size = pool_size or s.pool_size
        self.n_startup = n_startup if n_startup is not None else (
            s.n_startup_trials if s.n_startup_trials is not None else max(4, 2 * cfg.tune.max_concurrent))
        self.max_epochs = cfg.max_epochs()
        self.cost_names = [o.metric for o in cfg.objectives if o.metric != "accuracy"]
        self._by_trial: dict[int, tuple[str, list[float]]] = {}  # trial id -> (identity, features)
        self._model_key: tuple | None = None
        self._model: Any = None
        self._kernel: Any = None  # the last optimised kernel, and how many observations it was tuned on
        self._tuned_at = 0

    # -- the pool -------------------------------------------------------------------------------------------
    def pool(self, draw_seed: int) -> list[Candidate]:
        """Up to pool_size feasible candidates of distinct networks, drawn at random from the space (the
        dry run's sampling; counts are memoised by complexity.count)."""
        drawn = iter_distinct(self.cfg, seed=draw_seed, space=self.space, max_draws=4 * self.pool_size)
        return [Candidate(params, feas, feas.spec.identity(),
                          spec_features(feas.spec, feas.macs or 0, feas.params or 0))
                for params, feas in itertools.islice(drawn, self.pool_size)]

    # -- what the study has seen ------------------------------------------------------------------------------
    def _trial_features(self, t: FrozenTrial) -> tuple[str, list[float]] | None:
        # A trial's spec and costs never change once recorded: validate them once per trial, not per proposal.
        if t._trial_id in self._by_trial:
            return self._by_trial[t._trial_id]
        spec = st.arch_spec(t)
        macs, params = st.cost(t, st.Key.MACS), st.cost(t, st.Key.PARAMS)
        if spec is None or macs is None or params is None:
            return None  # not recorded yet (a trial between ask and record_sampled): look again next time
        self._by_trial[t._trial_id] = spec.identity(), spec_features(spec, macs, params)
        return self._by_trial[t._trial_id]

    def observations(self, trials: Sequence[FrozenTrial]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features + epoch, accuracy, noise variance) of what every trial recorded: full, pruned, partial,
        confirmations, and failed ones up to their failure. Copies of a twin add nothing new.

        Every trial's curve at the ladder's epochs (1, 3, 9, ...) and its last, as points in (features, epoch),
        noise-free: across many networks, early accuracy and the features say together where a network ends.
        Once the study has MIN_CURVES curves trained in full, each unfinished trial is also one observation at
        the budget: the final accuracy its last epoch predicts on those curves (RungToFinal), with the
        prediction's variance as its own noise, so an epoch-3 result says more about its own network's end
        than an epoch-1 one (bench/schedulers/model_calibration.py)."""
        rows: list[list[float]] = []
        ys: list[float] = []
        noise: list[float] = []
        curves = RungToFinal.from_trials(trials, self.max_epochs)
        top = self._epoch_feature(self.max_epochs)
        continued = st.continued_trials(trials)  # their curve is the start of their continuation's
        for t in sorted(trials, key=lambda t: -t.number):  # newest first: the cap drops the oldest
            if st.status(t) in ("duplicate", "infeasible") or t.number in continued:
                continue
            history = _finite_prefix(t.user_attrs.get(st.Key.ACCURACY_HISTORY) or [])
            got = self._trial_features(t) if history else None
            if got is None:
                continue
            for epoch, acc in enumerate(history, 1):
                if epoch == len(history) or _on_ladder(epoch):
                    rows.append(got[1] + [self._epoch_feature(epoch)])
                    ys.append(acc)
                    noise.append(0.0)
            if curves.ready() and len(history) < self.max_epochs:
                mean, var = curves.predict(len(history), history[-1])
                rows.append(got[1] + [top])
                ys.append(mean)
                noise.append(var)
            if len(rows) >= MAX_OBSERVATIONS:
                break
        return (np.array(rows, dtype=float).reshape(len(rows), -1), np.array(ys, dtype=float),
                np.array(noise, dtype=float))

    def _epoch_feature(self, epoch: int) -> float:
        return math.log(epoch) / math.log(self.max_epochs) if self.max_epochs > 1 else 1.0

    # -- the model --------------------------------------------------------------------------------------------
    def new_kernel(self, n_features: int) -> Any:
        """The GP's kernel before its hyperparameters are fitted (over standardised features and the epoch):
        one length scale for all, and a floor on the noise (NOISE_FLOOR)."""
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        return ConstantKernel(1.0, (1e-2, 1e2)) * Matern(1.0, (1e-2, 1e3), nu=2.5) + WhiteKernel(0.1, (NOISE_FLOOR, 1.0))

    def fit(self, x: np.ndarray, y: np.ndarray, noise: np.ndarray | None = None) -> Any:
        """The GP on (x, y), each y with its own known error variance `noise` (a final accuracy predicted from
        a rung) on top of the kernel's white noise. Its kernel's hyperparameters are optimised (marginal
        likelihood) when the data has grown by RETUNE_GROWTH since the last time, else reused: a refit is
        then one solve."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # sklearn adds alpha to the kernel's diagonal after normalising y: in units of y's variance
        alpha = 1e-10 if noise is None else np.maximum(noise / max(float(np.var(y)), 1e-12), 1e-10)
        retune = self._kernel is None or len(y) >= RETUNE_GROWTH * self._tuned_at
        if retune:
            gp = GaussianProcessRegressor(self.new_kernel(x.shape[1]), alpha=alpha, normalize_y=True,
                                          n_restarts_optimizer=1, random_state=self.seed)
        else:
            gp = GaussianProcessRegressor(self._kernel, alpha=alpha, normalize_y=True, optimizer=None)
        model = make_pipeline(StandardScaler(), gp)
        with warnings.catch_warnings():  # a length scale at its bound is fine: that feature does not matter
            warnings.simplefilter("ignore")
            model.fit(x, y)
        if retune:
            self._kernel, self._tuned_at = model[-1].kernel_, len(y)
        return model

    def predict(self, model: Any, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of full-fidelity accuracy for rows of spec features."""
        x = np.column_stack([features, np.full(len(features), self._epoch_feature(self.max_epochs))])
        mean, sd = model.predict(x, return_std=True)
        return np.clip(mean, 0.0, 1.0), np.maximum(sd, 1e-4)

    # -- the proposal -----------------------------------------------------------------------------------------
    def propose(self, study: optuna.Study, *, new_specs: bool = True) -> Proposal | None:
        """The candidate with the largest expected front gain, or None while the study has too few
        observations (the caller then samples at random) or the pool holds no untried network and no trial
        is paused. new_specs=False: choose among the paused trials only (the replay of bench/schedulers, once
        its table has no untried row)."""
        trials = study.get_trials(deepcopy=False)
        observed = [t for t in trials if t.user_attrs.get(st.Key.ACCURACY_HISTORY)
                    and st.status(t) not in ("duplicate", "infeasible")]
        if len(observed) < self.n_startup:
            return None
        # Paused trials (tune.scheduler.pause) compete with new specs by the same expected gain: a front member
        # that an early rung stopped is otherwise never trained again.
        paused = [(t, got[1]) for t in st.paused_trials(trials) if (got := self._trial_features(t)) is not None]
        taken: set[str] = set()
        running: list[tuple[FrozenTrial, list[float]]] = []
        for t in trials:
            if t.state == TrialState.RUNNING or st.status(t) in ("full", "partial", "pruned", "confirmation"):
                got = self._trial_features(t)
                if got is not None:
                    taken.add(got[0])
                    if t.state == TrialState.RUNNING:
                        running.append((t, got[1]))
        pool = [c for c in self.pool(draw_seed=self.seed * 100_003 + len(trials)) if c.identity not in taken] \
            if new_specs else []
        if not pool and not paused:
            return None
        x, y, noise = self.observations(trials)
        key = (len(y), float(y.sum()), float(noise.sum()))
        if key != self._model_key:
            self._model, self._model_key = self.fit(x, y, noise), key
        model = self._model

        front, scales = self._front(trials, pool)
        if running:  # constant liar: running trials at their predicted mean
            mean, _ = self.predict(model, np.array([f for _, f in running]))
            costs = [self._trial_costs(t, scales) for t, _ in running]
            front = self._merge(front, [[1 - m, *c] for m, c in zip(mean, costs)])
        reference = np.array([1.0] + [COST_REFERENCE] * len(self.cost_names))
        mean, sd = self.predict(model, np.array([c.features for c in pool] + [f for _, f in paused]))
        costs = [self._cost(c.feas, scales) for c in pool] + [self._trial_costs(t, scales) for t, _ in paused]
        scores = np.array([self._gain(front, reference, c, 1 - m, s) if c is not None else -np.inf
                           for c, m, s in zip(costs, mean, sd)])
        if not np.any(scores > 0):  # nothing expected to add volume: the most promising by optimism
            scores = np.where(np.isfinite(scores), mean + sd, -np.inf)
        best = int(np.argmax(scores))
        if best < len(pool):
            return Proposal(pool[best].params, float(scores[best]), float(mean[best]), float(sd[best]))
        t = paused[best - len(pool)][0]
        return Proposal(dict(t.params), float(scores[best]), float(mean[best]), float(sd[best]), resume=t.number)

    def _scales(self, trials: Sequence[FrozenTrial], pool: Sequence[Candidate]) -> list[float]:
        budgets = {"macs": self.cfg.constraints.max_macs, "params": self.cfg.constraints.max_params,
                   "latency": self.cfg.constraints.max_latency_ms}
        out = []
        for name in self.cost_names:
            seen = [float(getattr(c.feas, name) or 0) for c in pool]
            seen += [float(v) for t in trials if (v := st.cost(t, name)) is not None]
            out.append(cost_scale(budgets.get(name), seen))
        return out

    def _cost(self, feas: Feasibility, scales: Sequence[float]) -> list[float]:
        return [float(getattr(feas, n) or 0) / s for n, s in zip(self.cost_names, scales)]

    def _trial_costs(self, t: FrozenTrial, scales: Sequence[float]) -> list[float] | None:
        costs = [st.cost(t, n) for n in self.cost_names]
        return None if any(c is None for c in costs) else [float(c) / s for c, s in zip(costs, scales)]

    def _front(self, trials: Sequence[FrozenTrial], pool: Sequence[Candidate]) -> tuple[np.ndarray, list[float]]:
        """The full-fidelity front as normalised losses [1 - accuracy, cost / scale, ...]."""
        scales = self._scales(trials, pool)
        points = []
        for t in trials:
            if st.status(t) != "full" or t.values is None:
                continue
            acc = st.cost(t, st.Key.ACCURACY)
            acc = t.values[0] if acc is None else acc
            costs = self._trial_costs(t, scales)
            if costs is not None:
                points.append([1 - float(acc), *costs])
        return self._merge(np.empty((0, 1 + len(self.cost_names))), points), scales

    @staticmethod
    def _merge(front: np.ndarray, points: Sequence[Sequence[float]]) -> np.ndarray:
        allp = np.vstack([front, np.asarray(points, dtype=float).reshape(-1, front.shape[1])])
        return allp[is_pareto_front(allp)] if len(allp) else allp

    @staticmethod
    def _gain(front: np.ndarray, reference: np.ndarray, cost: Sequence[float], loss_mean: float,
              loss_sd: float) -> float:
        if len(cost) == 0:  # accuracy alone: the expected improvement over the best loss
            best = float(front[:, 0].min()) if len(front) else float(reference[0])
            return float(expected_positive_part(best, loss_mean, loss_sd))
        if len(cost) == 1:
            return expected_hypervolume_improvement(front, reference, cost[0], loss_mean, loss_sd)
        # More than one cost: the expectation over accuracy quantiles (costs known, volume by Optuna's code).
        from scipy.stats import norm

        base = hypervolume(front, reference) if len(front) else 0.0
        gains = []
        for q in norm.ppf(np.linspace(0.05, 0.95, 10)):
            point = np.array([[loss_mean + q * loss_sd, *cost]])
            if np.any(point >= reference):
                gains.append(0.0)
                continue
            merged = FrontGainProposer._merge(front, point)
            gains.append(hypervolume(merged, reference) - base)
        return float(np.mean(gains))
