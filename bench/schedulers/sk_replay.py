"""Search methods replayed over the SK table (bench/tables/sk_bench.json): a searcher proposes specs, a real
scheduler stops trials, and the event simulator of schedulers_sim.py runs them, as tabular NAS benchmarks do.

The surrogate: the table holds 96 of the space's few hundred distinct specs. A proposal is answered by the
untried row nearest to it (Hamming distance over the searched fields: widths, G, r, L, attention, M and
each path's kernel and dilation; ties broken by a per-order shuffle), so each row trains at most once per
replay, as sksearch never trains a spec twice. Random search takes an untried row uniformly. A row trained
with several seeds answers with one of its curves, drawn per order.

Scoring: a method's front is made of its trials trained to max_t, each placed at its spec's mean final
accuracy over the table's seeds (the best estimate of what that spec is worth), so no method is rewarded
for a lucky seed and the table's true front (every spec, mean final accuracy) bounds every method's.
Ray's stock OptunaSearch is scored on the front its own study reports (study.best_trials), where early-
stopped trials sit at the partial accuracy they were told with.

Paused trials ("ehvi + Pareto-ASHA, paused", tune.scheduler.pause): a trial the scheduler stops is marked
paused (records.mark_paused), and when the product's proposer chooses to resume it, the replay continues the
same row's same curve from the epoch after its stop (a Continuation), counting only the new epochs.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE.parent)]  # the package; bench/ (sk_table)

TABLE = REPO / "bench" / "tables" / "sk_bench.json"
REFERENCE = np.array([1.1, 1.1])  # in the normalised (error, log10 MACs) square


# -- the table ------------------------------------------------------------------------------------------

def features(spec: dict[str, Any]) -> tuple:
    """The searched fields of a spec, for the nearest-row distance."""
    sk = spec["sk"]
    paths = [(b["kernel"], b.get("dilation", 1)) for b in sk["branches"]]
    # Without attention (M = 1 or summed paths) r and L build nothing (ArchSpec.identity): no distance there.
    attends = len(paths) > 1 and sk.get("attention", "softmax") == "softmax"
    return (tuple(spec["widths"]), sk["G"], sk["r"] if attends else None, sk["L"] if attends else None,
            sk["attention"], len(paths), paths[1] if len(paths) > 1 else None, paths[2] if len(paths) > 2 else None)


@dataclass(frozen=True)
class Row:
    """One distinct spec of the table with every curve recorded for it (one per training seed)."""

    spec: dict[str, Any]
    macs: int
    params: int
    curves: tuple[tuple[float, ...], ...]
    seconds: float  # mean training seconds of one curve

    @property
    def final(self) -> float:
        return float(np.mean([c[-1] for c in self.curves]))


@dataclass
class SKTable:
    study: dict[str, Any]
    rows: list[Row]
    max_t: int
    feats: list[tuple] = field(init=False)
    _norm: tuple[float, float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        self.feats = [features(r.spec) for r in self.rows]
        # Normalised by the true front's own range (ideal to nadir), so that the hypervolume measures how
        # close a method gets to the front, not how easily it beats the worst specs of the table.
        front = self.front_rows()
        err = [1 - r.final for r in front]
        cost = [math.log10(r.macs) for r in front]
        self._norm = (min(err), max(err) - min(err) or 1.0, min(cost), max(cost) - min(cost) or 1.0)

    def front_rows(self) -> list[Row]:
        """The true front: the specs no other spec beats on both mean final accuracy and MACs."""
        from sksearch.front import nondomination_ranks

        ranks = nondomination_ranks(np.array([[-r.final, r.macs] for r in self.rows], dtype=float))
        return [r for r, k in zip(self.rows, ranks) if k == 0]

    @classmethod
    def load(cls, path: Path = TABLE) -> SKTable:
        data = json.loads(Path(path).read_text())
        by_spec: dict[str, list[dict]] = {}
        for r in data["rows"]:
            by_spec.setdefault(json.dumps(r["spec"], sort_keys=True), []).append(r)
        rows = [Row(rs[0]["spec"], rs[0]["macs"], rs[0]["params"],
                    tuple(tuple(r["accuracy"]) for r in sorted(rs, key=lambda r: r["seed"])),
                    float(np.mean([r["train_seconds"] for r in rs])))
                for rs in by_spec.values()]
        return cls(data["study"], rows, min(len(c) for r in rows for c in r.curves))

    def losses(self, points: Sequence[tuple[float, float]]) -> np.ndarray:
        """(accuracy, MACs) pairs -> normalised (error, log10 MACs), both minimised, the table spanning [0, 1]."""
        e0, ew, c0, cw = self._norm
        return np.array([[(1 - a - e0) / ew, (math.log10(m) - c0) / cw] for a, m in points]).reshape(-1, 2)

    def hypervolume(self, points: Sequence[tuple[float, float]]) -> float:
        from sksearch.front import hypervolume

        return hypervolume(self.losses(points), REFERENCE)  # outside the reference box a point adds nothing

    def true_hypervolume(self) -> float:
        return self.hypervolume([(r.final, r.macs) for r in self.rows])


# -- searchers: which row a new trial trains --------------------------------------------------------------

class RowPicker:
    """The rows not yet started in this replay, and the nearest of them to a proposed spec."""

    def __init__(self, table: SKTable, rng: np.random.Generator) -> None:
        self.table = table
        self.untried = set(range(len(table.rows)))
        self.tiebreak = rng.permutation(len(table.rows))

    def take_nearest(self, spec: dict[str, Any]) -> int:
        f = features(spec)
        row = min(self.untried, key=lambda i: (sum(a != b for a, b in zip(f, self.table.feats[i])), self.tiebreak[i]))
        self.untried.discard(row)
        return row


class RandomSearch:
    name = "random"

    def __init__(self, table: SKTable, order: int) -> None:
        self.rng = np.random.default_rng([order, 1])
        self.picker = RowPicker(table, self.rng)

    def suggest(self, index: int) -> int | None:
        if not self.picker.untried:
            return None
        row = int(self.rng.choice(sorted(self.picker.untried)))
        self.picker.untried.discard(row)
        return row

    def complete(self, index: int, row: int, epochs: int, result: dict) -> None:
        pass


def _spec_sampler(table: SKTable) -> Any:
    """The table's study space and feasibility check (sk_table.SpecChecker), for the Optuna-driven searchers."""
    from sk_table import STUDY, SpecChecker

    from sksearch.config import StudyConfig

    return SpecChecker(StudyConfig.model_validate(
        {**table.study, "search_space": str(STUDY.parent / table.study["search_space"])}))


class SksearchSampler:
    """sksearch's own searcher with one of make_sampler's samplers (TPE: multivariate, grouped, constant liar;
    Optuna's GPSampler; ehvi: the FrontGainProposer's proposal enqueued): every trial comes from the product's
    ProposalStep, as in StudySearcher (infeasible samples recorded with their constraint values and drawn
    again; a trained network's twin recorded as its duplicate, no budget). The row that answers a proposal
    (the nearest untried one) is then recorded as the trial's spec and costs, its curve epoch by epoch
    (record_epoch), its end COMPLETE at max_t, else PRUNED (record_end): the study the sampler reads is the
    one a real driver writes, with the table's networks in it."""

    def __init__(self, table: SKTable, order: int, workers: int, sampler: Any, kind: str = "tpe",
                 pause: bool = False) -> None:
        import optuna

        from sksearch.search.samplers import make_sampler
        from sksearch.search.step import ProposalStep

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.name = kind
        self.table, self.s = table, sampler
        tune = sampler.cfg.tune.model_copy(update={
            "max_concurrent": workers, "sampler": sampler.cfg.tune.sampler.model_copy(update={"type": kind, "seed": order})})
        self.cfg = sampler.cfg.model_copy(update={"tune": tune})
        self.study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(self.cfg))
        self.step = ProposalStep(self.cfg, sampler.space, self.study,
                                 check=lambda trial: sampler.check(sampler.space.sample(trial)))
        self.picker = RowPicker(table, np.random.default_rng([order, 2]))
        self.live: dict[int, Any] = {}
        self.pause = pause   # tune.scheduler.pause: a trial the scheduler stops is paused, and may be resumed
        self.row_of: dict[int, int] = {}    # optuna trial number -> row
        self.index_of: dict[int, int] = {}  # optuna trial number -> replay index

    def suggest(self, index: int) -> int | Continuation | None:
        import optuna

        from sksearch.search.step import NothingLeft
        from sksearch.storage import records as st

        trials = self.study.get_trials(deepcopy=False)
        if not self.picker.untried and not (self.pause and st.paused_trials(trials)):
            return None
        # Once every row was tried, the table (this replay's space) holds only paused trials to resume.
        got = self.step.next(new_specs=bool(self.picker.untried))
        if isinstance(got, NothingLeft):
            return None
        paused = trials[got.resume] if got.resume is not None else None
        if paused is not None:
            row = self.row_of[paused.number]
            answer: int | Continuation = Continuation(row, st.epochs_done(paused), self.index_of[paused.number])
        elif self.picker.untried:
            row = answer = self.picker.take_nearest(got.feas.spec.to_dict())
        else:  # no row left to answer a new spec with
            self.study.tell(got.trial, state=optuna.trial.TrialState.FAIL)
            return None
        r = self.table.rows[row]
        # The row's spec and costs first: record_sampled resets epochs_done, which a continuation then sets.
        st.record_sampled(got.trial, r.spec, "", r.params, r.macs, None, self.table.max_t)
        if paused is not None:
            st.record_continuation(got.trial, paused)
        self.live[index] = got.trial
        self.row_of[got.trial.number], self.index_of[got.trial.number] = row, index
        return answer

    def complete(self, index: int, row: int, epochs: int, result: dict) -> None:
        from sksearch.storage import records as st

        r, trial = self.table.rows[row], self.live.pop(index)
        history = list(result["history"])
        st.record_epoch(self.study._storage, trial._trial_id, epoch=epochs, accuracy=result["accuracy"],
                        history=history)
        if self.pause and epochs < self.table.max_t:
            st.mark_paused(trial)
        st.record_end(self.study, trial, self.cfg, epochs_done=epochs, max_epochs=self.table.max_t,
                      accuracy=result["accuracy"], params=r.params, macs=r.macs, error=None)


class RayOptunaSearch:
    """Ray Tune's stock OptunaSearch on the same space (a define-by-run function; its default TPE), asked
    for (accuracy max, MACs min). It tells every ended trial COMPLETE with its last result, early-stopped
    ones included. An infeasible sample is answered by its nearest row like any other proposal: in a real
    run it would fail, and failed trials are invisible to its TPE, which then proposed the same infeasible
    spec 500 times in a row in a first try of this replay. The nearest row favours it."""

    name = "ray_optuna"

    def __init__(self, table: SKTable, order: int, sampler: Any) -> None:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.table, self.s = table, sampler
        space = sampler.space

        def define_by_run(trial: Any) -> dict[str, Any]:
            return {"spec": space.sample(trial)}

        self.searcher = OptunaSearch(space=define_by_run, metric=["accuracy", "macs"], mode=["max", "min"], seed=order)
        self.picker = RowPicker(table, np.random.default_rng([order, 3]))
        self.rows_of: dict[int, tuple[int, int]] = {}  # optuna trial number -> (row, epochs trained)

    def suggest(self, index: int) -> int | None:
        if not self.picker.untried:
            return None
        tid = f"t{index}"
        spec = self.searcher.suggest(tid)["spec"]
        feas = self.s.check(spec)
        row = self.picker.take_nearest(feas.spec.to_dict() if feas.feasible else spec)
        self.rows_of[self.searcher._ot_trials[tid].number] = (row, 0)
        return row

    def complete(self, index: int, row: int, epochs: int, result: dict) -> None:
        tid = f"t{index}"
        self.rows_of[self.searcher._ot_trials[tid].number] = (row, epochs)
        self.searcher.on_trial_complete(tid, result=result)

    def reported_front(self) -> tuple[list[tuple[float, float]], int]:
        """Optuna's own front (best_trials): full-fidelity trials at their spec's mean final accuracy,
        early-stopped ones at the accuracy they were told with; and how many are early-stopped."""
        points, partial = [], 0
        for t in self.searcher._ot_study.best_trials:
            row, epochs = self.rows_of[t.number]
            full = epochs >= self.table.max_t
            partial += not full
            points.append((self.table.rows[row].final if full else t.values[0], self.table.rows[row].macs))
        return points, partial


# -- schedulers ---------------------------------------------------------------------------------------------

class SyneTuneScheduler:
    """Syne Tune's MOASHA behind the Ray scheduler calls the simulator makes. MOASHA minimises every metric:
    it is given error = 1 - accuracy and log10 MACs (the log only matters to its epsilon-net distances)."""

    def __init__(self, moasha: Any) -> None:
        self.moasha = moasha
        self.trials: dict[str, Any] = {}

    @staticmethod
    def _metrics(result: dict) -> dict:
        return {"training_iteration": result["training_iteration"], "error": 1.0 - result["accuracy"],
                "log_macs": math.log10(result["macs"])}

    def on_trial_add(self, _: Any, trial: Any) -> None:
        from datetime import datetime

        from syne_tune.backend.trial_status import Trial as SyneTrial

        self.trials[trial.trial_id] = SyneTrial(trial_id=len(self.trials), config={}, creation_time=datetime.now())
        self.moasha.on_trial_add(self.trials[trial.trial_id])

    def on_trial_result(self, _: Any, trial: Any, result: dict) -> str:
        from ray.tune.schedulers import TrialScheduler
        from syne_tune.optimizer.scheduler import SchedulerDecision

        decision = self.moasha.on_trial_result(self.trials[trial.trial_id], self._metrics(result))
        return TrialScheduler.STOP if decision == SchedulerDecision.STOP else TrialScheduler.CONTINUE

    def on_trial_complete(self, _: Any, trial: Any, result: dict) -> None:
        self.moasha.on_trial_complete(self.trials[trial.trial_id], self._metrics(result))


def make_scheduler(kind: str, max_t: int, grace: int, rf: float) -> Any:
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    from sksearch.search.schedulers import ParetoASHA

    if kind == "fifo":
        return FIFOScheduler()
    if kind == "asha":  # as sksearch's make_scheduler builds it
        return AsyncHyperBandScheduler(metric="accuracy", mode="max", max_t=max_t, grace_period=grace,
                                       reduction_factor=rf, brackets=1)
    if kind in ("pareto_asha", "pareto_order_only"):  # the latter: before issue 13 (no accuracy cut)
        return ParetoASHA(metric="accuracy", mode="max", cost_attr="macs", max_t=max_t, grace_period=grace,
                          reduction_factor=rf, keep_most_accurate=kind == "pareto_asha")
    if kind in ("moasha", "moasha_documented"):
        from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

        from moasha_rule import documented_priority_class

        priority = documented_priority_class()() if kind == "moasha_documented" else None
        return SyneTuneScheduler(MOASHA(config_space={}, metrics=["error", "log_macs"], do_minimize=True,
                                        max_t=max_t, grace_period=grace, reduction_factor=rf,
                                        multiobjective_priority=priority))
    raise ValueError(kind)


# -- one replay ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowDraw:
    index: int
    row: int
    curve: tuple[float, ...]
    cost: float
    params: int
    start: int = 0  # a continuation: the epochs its paused trial had trained


@dataclass(frozen=True)
class Continuation:
    """A searcher's answer that resumes a paused trial (replay index `of`) from epoch `start`."""

    row: int
    start: int
    of: int


@dataclass
class Trace:
    """After each ended trial: epochs spent so far (every trial's, running ones included), the front's
    hypervolume, its most accurate model, the early-stopped entries on a reported front, and the trial."""

    epochs: list[int] = field(default_factory=list)
    hypervolume: list[float] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    partial_on_front: list[int] = field(default_factory=list)
    ended: list[tuple[int, int]] = field(default_factory=list)  # (row, epochs trained), in the order trials ended

    @property
    def trials(self) -> int:
        return len(self.ended)

    def at(self, budget: int) -> tuple[float, float, int]:
        """(hypervolume, best accuracy, partial results on the front) once `budget` epochs were spent."""
        k = int(np.searchsorted(self.epochs, budget, side="right"))
        return (self.hypervolume[k - 1], self.best[k - 1], self.partial_on_front[k - 1]) if k else (0.0, 0.0, 0)

    def epochs_to(self, target: float) -> float:
        for e, hv in zip(self.epochs, self.hypervolume):
            if hv >= target:
                return float(e)
        return math.inf


class Replay:
    """The simulator's model: draws come from a searcher, curves from the table."""

    def __init__(self, table: SKTable, searcher: Any, order: int) -> None:
        self.table, self.searcher = table, searcher
        self.rng = np.random.default_rng([order, 4])
        self.curves: dict[int, tuple[float, ...]] = {}  # replay index -> the curve it trains
        self.front: list[tuple[float, float]] = []
        self.trace = Trace()

    def draw(self, seed: int, index: int) -> RowDraw | None:
        got = self.searcher.suggest(index)
        if got is None:
            return None
        if isinstance(got, Continuation):  # the paused trial's own curve goes on
            r = self.table.rows[got.row]
            self.curves[index] = self.curves[got.of]
            return RowDraw(index, got.row, self.curves[index], float(r.macs), r.params, start=got.start)
        r = self.table.rows[got]
        self.curves[index] = r.curves[int(self.rng.integers(len(r.curves)))]
        return RowDraw(index, got, self.curves[index], float(r.macs), r.params)

    def result(self, draw: RowDraw, epoch: int, seed: int) -> dict:
        from sksearch.search.protocol import RESUMED_AT

        return {"training_iteration": epoch, "accuracy": draw.curve[epoch - 1], "macs": int(draw.cost),
                "params": draw.params, "history": draw.curve[:epoch], RESUMED_AT: draw.start}

    def epoch_time(self, draw: RowDraw) -> float:
        return self.table.rows[draw.row].seconds / len(draw.curve)

    def complete(self, outcome: Any, result: dict, epochs_used: int) -> None:
        draw = outcome.draw
        self.searcher.complete(draw.index, draw.row, outcome.epochs, result)
        self.trace.ended.append((draw.row, outcome.epochs))
        partial = 0
        if isinstance(self.searcher, RayOptunaSearch):
            points, partial = self.searcher.reported_front()
        else:
            if outcome.epochs >= self.table.max_t:
                r = self.table.rows[draw.row]
                self.front.append((r.final, r.macs))
            points = self.front
        self.trace.epochs.append(epochs_used)
        self.trace.hypervolume.append(self.table.hypervolume(points))
        self.trace.best.append(max((a for a, _ in points), default=0.0))
        self.trace.partial_on_front.append(partial)


METHODS = {  # name: (searcher, scheduler)
    "random + FIFO": ("random", "fifo"),
    "TPE + FIFO": ("tpe", "fifo"),
    "TPE + ASHA": ("tpe", "asha"),
    "Ray OptunaSearch + ASHA": ("ray_optuna", "asha"),
    "MOASHA (syne-tune 0.16)": ("random", "moasha"),
    "MOASHA, documented rule": ("random", "moasha_documented"),
    "random + Pareto-ASHA": ("random", "pareto_asha"),
    "TPE + Pareto-ASHA, Pareto order only": ("tpe", "pareto_order_only"),
    "TPE + Pareto-ASHA (sksearch)": ("tpe", "pareto_asha"),
    "GPSampler + FIFO": ("gp", "fifo"),
    "GPSampler + Pareto-ASHA": ("gp", "pareto_asha"),
    "ehvi + FIFO": ("ehvi", "fifo"),
    "ehvi + Pareto-ASHA (sksearch)": ("ehvi", "pareto_asha"),
    "ehvi + Pareto-ASHA, paused": ("ehvi_pause", "pareto_asha"),
}


def replay(table: SKTable, method: str, order: int, *, budget: int, workers: int, grace: int, rf: float,
           sampler: Any | None = None) -> Trace:
    from schedulers_sim import simulate

    searcher_kind, scheduler_kind = METHODS[method]
    if searcher_kind == "random":
        searcher: Any = RandomSearch(table, order)
    elif searcher_kind in ("tpe", "gp", "ehvi", "ehvi_pause"):
        searcher = SksearchSampler(table, order, workers, sampler or _spec_sampler(table),
                                   searcher_kind.removesuffix("_pause"), pause=searcher_kind.endswith("_pause"))
    else:
        searcher = RayOptunaSearch(table, order, sampler or _spec_sampler(table))
    model = Replay(table, searcher, order)
    simulate(lambda: make_scheduler(scheduler_kind, table.max_t, grace, rf), model, seed=order,
             budget_epochs=budget, max_t=table.max_t, workers=workers)
    return model.trace
