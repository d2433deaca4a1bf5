"""A Ray Tune Searcher over an Optuna study: define-by-run sampling from our SearchSpace, budget checks
before any trial starts, and honest trial states (Ray's stock OptunaSearch tells early-stopped trials
COMPLETE with partial values; here they are PRUNED).

The Optuna storage is the single source of truth: the budget (n_trials) is counted there, so a rerun resumes
and several drivers sharing one database run exactly n_trials between them.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from sksearch.storage import records as st
from sksearch.storage.ledger import Ledger, counts_toward_budget
from sksearch.config import StudyConfig
from sksearch.results.pareto import front_trials
from sksearch.search import protocol
from sksearch.search.schedulers import rung_epochs
from sksearch.search.space import SearchSpace
from sksearch.search.step import NothingLeft, ProposalStep


@dataclass
class LiveTrial:
    trial: optuna.Trial
    label: str
    params: int
    macs: int
    latency: float | None = None  # predicted ms on the study's latency target, when it uses one
    history: list[float] = field(default_factory=list)
    epochs_done: int = 0
    weights: str | None = None  # the latest weights its worker staged (tune.keep_weights)
    node: str | None = None     # the Ray node it trains on ("ip/node-id prefix"), once it reported
    state: str | None = None    # tune.scheduler.pause: the training state its worker staged at a rung ...
    state_epoch: int = 0        # ... after this epoch
    resume_file: str | None = None  # a continuation: the paused trial's state, fetched for its worker


def confirmation_plan(study: optuna.Study, cfg: StudyConfig, k: int) -> list[tuple[optuna.trial.FrozenTrial, int]]:
    """(front trial, seed) of every seed confirmation still missing for `run --confirm k`: each member of the
    current full-fidelity front is retrained with seeds train.seed + 1 .. train.seed + k. A seed already done
    (COMPLETE) or being trained (RUNNING, not stale) is not asked again, so reruns add at most k per member
    in total and a killed run resumes; a failed confirmation is retried with its seed. Confirmations are
    off the front, so the front (and this plan) does not move while they train."""
    trials = study.get_trials(deepcopy=False)
    done = st.confirmations(trials, include_running=True)
    todo = []
    for t in front_trials(study, trials):
        have = {st.seed(c) for c in done.get(t.number, [])}
        todo += [(t, s) for s in range(cfg.train.seed + 1, cfg.train.seed + k + 1) if s not in have]
    return todo


class StudySearcher(Searcher):
    def __init__(self, cfg: StudyConfig, space: SearchSpace, study: optuna.Study, storage: optuna.storages.RDBStorage,
                 *, n_trials: int, on_event: protocol.EventSink | None = None, confirm: int | None = None):
        super().__init__(metric=protocol.ACCURACY, mode="max")
        self.cfg = cfg
        self.space = space
        self.study = study
        self.storage = storage
        self.n_trials = n_trials
        self.max_epochs = cfg.max_epochs()
        self.on_event = on_event or (lambda event: None)
        self.live: dict[str, LiveTrial] = {}
        self.pending_errors: set[str] = set()
        self.stop_reason: str | None = None
        self.exhausted: str | None = None
        self._lock = threading.Lock()
        # `run --confirm K`: retrain the front K more times with other seeds instead of searching.
        self.confirm = confirm
        self._tried: set[tuple[int, int]] = set()
        # The shared budget: claims, heartbeats, stale trials of dead drivers (storage/ledger.py). A trial
        # that ran out of device memory or lost its node is recorded FAIL but does not count toward
        # tune.max_failures.
        self.ledger = Ledger(study, storage, n_trials, not_a_failure=st.is_not_its_fault)
        self.run_id = self.ledger.run_id  # tags the trials this driver ran (timing, max_failures per run)
        # tune.scheduler.pause: the rung epochs at which workers stage their training state.
        self.pause_at = rung_epochs(cfg) if cfg.tune.scheduler.pause else []
        # What each trial's latency_ms was predicted on (None when the study does not use latency).
        target = cfg.latency_target()
        self.latency_target = None
        if target is not None:
            from sksearch.latency import table_for

            self.latency_target = table_for(target).target.to_dict()
        # The step from a free slot to a trial worth training (shared with the replay of bench/schedulers).
        self.step = ProposalStep(cfg, space, study, ask=self.ledger.ask,
                                 finishing=lambda trial_id: self.ledger.finish(trial_id, trained=False),
                                 latency_target=self.latency_target, on_event=self.on_event)

    def close(self) -> None:
        """Stop beating; trials still live here (Ctrl-C, a crash) are failed so a rerun replaces them at once
        (if the storage answers: after an outage they go stale and the rerun replaces them then)."""
        with self._lock:
            self.live.clear()
        self.ledger.close()

    def _drop_lost(self, trial_id: str) -> None:
        # Another driver failed this trial while we stalled (the ledger logged it): stop recording it.
        with self._lock:
            self.live.pop(trial_id, None)

    # -- Ray Tune's Searcher API ----------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.stop_reason or self.exhausted:
            return Searcher.FINISHED
        budget = self.ledger.state()
        if budget.failures > self.cfg.tune.max_failures:
            self.stop_reason = (f"{budget.failures} trials failed in this run (tune.max_failures is "
                                f"{self.cfg.tune.max_failures}); see their `error` in the storage or the dashboard")
            return Searcher.FINISHED
        if self.confirm is not None:
            return self._suggest_confirmation(trial_id)
        if budget.free <= 0:
            if budget.others_running:
                # Another driver's trials, or a dead driver's not yet stale: wait and see whether they finish.
                self._idle_wait()
                return None
            return Searcher.FINISHED
        if self.space.fixed:
            # A baseline (one spec): train it once, not once per free slot, and end when it is trained.
            if self.live or budget.others_running:
                self._idle_wait()
                return None
            done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if any(counts_toward_budget(t) for t in done):
                self.exhausted = "the space holds one spec (base only), and it is trained"
                return Searcher.FINISHED
        got = self.step.next()
        if isinstance(got, NothingLeft):
            if got.exhausted:
                self.exhausted = got.reason  # nothing new to train: a small space is used up, a normal end
            else:
                self.stop_reason = got.reason
            return Searcher.FINISHED
        trial, feas = got.trial, got.feas
        live = LiveTrial(trial, got.label, int(feas.params or 0), int(feas.macs or 0), feas.latency)
        resume = self._continue(trial, live, got.resume)
        if not self.ledger.claim(trial):
            if live.resume_file:
                st.discard_staged(live.resume_file)
            return None  # another driver took the last slot between our count and our claim
        with self._lock:
            self.live[trial_id] = live
        self.on_event(protocol.Started(trial.number, live.label, int(feas.params or 0), int(feas.macs or 0)))
        spec_dict = feas.spec.to_dict() if feas.spec is not None else {}
        return dict(protocol.trial_config(trial.number, spec_dict, int(feas.params or 0), int(feas.macs or 0),
                                          self.max_epochs, seed=self.cfg.train.seed, latency=feas.latency,
                                          resume=resume, pause_at=self.pause_at))

    def _continue(self, trial: optuna.Trial, live: LiveTrial, number: int | None) -> dict[str, Any] | None:
        """When the proposal that made this trial resumes a paused trial (tune.scheduler.pause): fetch that
        trial's training state for the worker and make this trial its continuation (its curve so far, the
        epochs done). None for a new spec, or when the paused trial was resumed by another driver meanwhile
        (or is being, at this moment) or its state is gone: the spec then trains from the start."""
        if number is None:
            return None
        paused = next((t for t in st.paused_trials(self.study.get_trials(deepcopy=False)) if t.number == number), None)
        if paused is None:
            return None
        # Another driver may have chosen the same paused trial at the same moment: claim, then look.
        st.claim_continuation(trial, paused)
        if st.rival_continuations(self.study.get_trials(deepcopy=False), trial.number, paused.number):
            st.withdraw_continuation(trial)
            return None
        path = st.fetch_paused_state(self.study, paused, self.cfg, trial.number)
        if path is None:
            st.withdraw_continuation(trial)
            return None
        st.record_continuation(trial, paused)
        live.history = list(paused.user_attrs.get(st.Key.ACCURACY_HISTORY) or [])
        live.epochs_done = st.epochs_done(paused)
        live.resume_file = path
        live.label = f"{live.label} (resumes trial {paused.number})"
        return {"state": path, "epoch": live.epochs_done}

    def _suggest_confirmation(self, trial_id: str) -> dict[str, Any] | None:
        """The next missing seed confirmation of a front trial, off the budget (no slot claimed)."""
        # A confirmation that failed in this run is not retried in it (an OOM would loop: it is no failure).
        todo = [(t, s) for t, s in confirmation_plan(self.study, self.cfg, self.confirm or 0)
                if (t.number, s) not in self._tried]
        if not todo:
            return Searcher.FINISHED
        original, seed = todo[0]
        self._tried.add((original.number, seed))
        trial = self.ledger.ask()
        st.record_confirmation(trial, original, seed, self.run_id, self.max_epochs)
        params, macs = int(st.cost(original, st.Key.PARAMS) or 0), int(st.cost(original, st.Key.MACS) or 0)
        latency = st.cost(original, st.Key.LATENCY_MS)
        label = f"{st.label(original)} (seed {seed} of trial {original.number})"
        with self._lock:
            self.live[trial_id] = LiveTrial(trial, label, params, macs, latency)
        self.on_event(protocol.Started(trial.number, label, params, macs))
        return dict(protocol.trial_config(trial.number, st.spec(original) or {}, params, macs, self.max_epochs,
                                          seed=seed, latency=latency))

    def _idle_wait(self) -> None:
        # Ray polls suggest() in a loop; with nothing of ours running, do not hammer the database.
        if not self.live:
            time.sleep(1.0)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        lt = self.live.get(trial_id)
        r = protocol.read_result(result)
        if lt is None or r.accuracy is None:
            return
        lt.epochs_done = r.epoch if r.epoch is not None else lt.epochs_done + 1
        lt.history.append(r.accuracy)
        lt.weights = r.weights or lt.weights
        lt.node = r.node or lt.node
        if r.state:
            lt.state, lt.state_epoch = r.state, lt.epochs_done
        with self.ledger.progress(lt.trial._trial_id) as write:
            st.record_epoch(self.storage, lt.trial._trial_id, epoch=lt.epochs_done, accuracy=r.accuracy,
                            history=lt.history, train_seconds=r.train_seconds,
                            images_per_second=r.images_per_second, node=r.node)
        if write.lost:
            return self._drop_lost(trial_id)
        self.on_event(protocol.EpochDone(lt.trial.number, lt.label, lt.epochs_done, self.max_epochs, r.accuracy))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error:
            # Ray tells the searcher before its callbacks get the error text: record_crash() finishes it.
            self.pending_errors.add(trial_id)
            return
        result = result or {}
        r = protocol.read_result(result)
        lt = self.live.get(trial_id)
        # When a scheduler stops a trial on a result (ASHA does so at a rung, and at max_t), Ray hands that
        # result to on_trial_complete only: record it before deciding the trial's state.
        if lt is not None and r.accuracy is not None and r.error is None and (r.epoch or 0) > lt.epochs_done:
            self.on_trial_result(trial_id, result)
        self._finish(trial_id, result, r.error, r.error_kind)

    def node_of(self, trial_id: str) -> str | None:
        lt = self.live.get(trial_id)
        return lt.node if lt is not None else None

    def record_crash(self, trial_id: str, message: str, kind: str = "crash") -> None:
        if trial_id in self.pending_errors:
            self.pending_errors.discard(trial_id)
            self._finish(trial_id, {}, message or "the trial's process failed", kind)

    def _finish(self, trial_id: str, result: dict, error: str | None, kind: str | None = None) -> None:
        with self._lock:
            lt = self.live.pop(trial_id, None)
        if lt is None:
            return
        accuracy = lt.history[-1] if lt.history else None
        with self.ledger.finish(lt.trial._trial_id) as write:
            self._keep_weights(lt, error)
            self._keep_state(lt, error)
            state = st.record_end(self.study, lt.trial, self.cfg, epochs_done=lt.epochs_done,
                                  max_epochs=self.max_epochs, accuracy=accuracy, params=lt.params, macs=lt.macs,
                                  error=error, error_kind=kind, latency_ms=lt.latency)
        if write.lost:
            return
        self.on_event(protocol.Ended(lt.trial.number, lt.label, state.name, lt.epochs_done, accuracy, error))

    def _keep_weights(self, lt: LiveTrial, error: str | None) -> None:
        """The staged weights become the trial's artifact (before it is told); a failed trial keeps none.
        A store that cannot take them costs the weights, not the trial's result."""
        if lt.weights is None:
            return
        if error is not None:
            return st.discard_staged(lt.weights)
        try:
            st.record_weights(lt.trial, self.cfg, lt.weights)
        except OSError as exc:
            self.ledger.log(f"trial {lt.trial.number}: its weights were not kept ({exc})")

    def _keep_state(self, lt: LiveTrial, error: str | None) -> None:
        """tune.scheduler.pause: a trial stopped at a rung keeps the training state staged there, so a later
        proposal may resume it (it is told PRUNED either way). Staged files are removed in every case."""
        if lt.resume_file:
            st.discard_staged(lt.resume_file)
        if lt.state is None:
            return
        if error is not None or lt.epochs_done >= self.max_epochs or lt.state_epoch != lt.epochs_done:
            return st.discard_staged(lt.state)
        try:
            st.record_paused(lt.trial, self.cfg, lt.state)
        except OSError as exc:
            self.ledger.log(f"trial {lt.trial.number}: its training state was not kept, so it cannot be "
                            f"resumed ({exc})")

    # The storage holds all state: nothing to checkpoint, and the study/thread must not be pickled.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def save_to_dir(self, *args: Any, **kwargs: Any) -> None:
        pass

    def restore_from_dir(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getstate__(self) -> dict:
        return {}
