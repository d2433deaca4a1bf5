"""The budget ledger: how drivers share a study's n_trials through the Optuna storage, and survive crashes.

A trial goes through these steps in its driver; the driver may die between any two of them, and may stall
(a database hiccup, a suspended laptop, a long GC pause) for longer than the grace period:

    ask -> first heartbeat -> sample -> claim a slot -> train (an epoch recorded, ...) -> tell

The rules that keep the budget exact in every case:

* A slot is a trial with Key.SLOT that counts toward the budget (``counts_toward_budget``). A claim is
  decided by trial number: it is kept when fewer than n_trials slots come before it, counting other
  drivers' RUNNING trials that have no verdict yet as slots (pessimistic), so n_trials is never exceeded
  and the lowest number always wins (no deadlock). A lost claim is given back (Key.DISCARDED, FAIL, not
  counted) and its driver backs off; a driver only asks when the pessimistic count leaves a slot free,
  so discarded claims are bounded by the races actually run.
* Stale: another driver's RUNNING trial whose last heartbeat is older than the grace period, or which has
  no heartbeat row at all (its driver died between ask and first beat) and started longer ago than the
  grace period. Stale trials are failed (FAIL, Key.INTERRUPTED, not counted) and so replaced. (Optuna stamps
  a trial's start with its driver's local clock: drivers on several machines need their clocks and time
  zones to agree within the grace period; heartbeats use the database's clock.)
* After a storage outage (storage/retry.py) no trial is judged stale until this driver has been connected
  again for a full grace period: every driver's heartbeats are old then, through no fault of theirs.
* The stale check never fails this driver's own live trials, however long it stalled. If another driver
  failed one of them meanwhile, the next write to it logs one line, the trial is dropped, and the driver
  goes on.
* tune.max_failures counts the trials that failed in this run (Key.RUN_ID of this driver), not the study's
  whole history: a rerun after a stop starts from zero.

Fault hook (tests, chaos drills): SKSEARCH_FAULT="STEP[:N],..." hard-kills the driver with
``os._exit(FAULT_EXIT)`` the N-th time (default: the first) it reaches STEP. Off unless set. Steps:

    after_ask      study.ask() returned: a RUNNING trial with no heartbeat row
    after_beat     its first heartbeat is written; nothing sampled or claimed yet
    after_claim    it holds a slot (Key.SLOT, Key.RUN_ID); training not started
    mid_training   an epoch's result is recorded
    before_tell    training ended; the trial is still RUNNING
    after_tell     its final state (COMPLETE, PRUNED or FAIL) is stored
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sksearch.errors import UserError
from sksearch.storage.records import HEARTBEAT_GRACE, HEARTBEAT_INTERVAL, Key
from sksearch.storage.retry import MAX_DELAY, call_retried

FAULT_STEPS = ("after_ask", "after_beat", "after_claim", "mid_training", "before_tell", "after_tell")
FAULT_EXIT = 86
_fault_seen: dict[str, int] = {}


def fault_plan() -> dict[str, int]:
    """SKSEARCH_FAULT as {step: the visit that dies}; a UserError for a typo, which would test nothing."""
    plan = {}
    for item in filter(None, (i.strip() for i in os.environ.get("SKSEARCH_FAULT", "").split(","))):
        name, _, nth = item.partition(":")
        if name not in FAULT_STEPS or not (nth or "1").isdigit():
            raise UserError(f"{item!r} is not STEP[:N] with STEP one of {', '.join(FAULT_STEPS)}",
                            key="SKSEARCH_FAULT")
        plan[name] = int(nth or 1)
    return plan


def fault_point(step: str) -> None:
    """Die here when SKSEARCH_FAULT names this step and this is the visit it names."""
    plan = fault_plan()
    if step not in plan:
        return
    _fault_seen[step] = _fault_seen.get(step, 0) + 1
    if _fault_seen[step] == plan[step]:
        print(f"SKSEARCH_FAULT: killing the driver at {step} (visit {plan[step]})", file=sys.stderr, flush=True)
        os._exit(FAULT_EXIT)


# -- what each trial means to the budget ------------------------------------------------------------------

def counts_toward_budget(t: FrozenTrial) -> bool:
    """A trial uses one of n_trials when it was (or is being) trained: infeasible specs are free, trials of a
    driver or a Ray node that died are replaced, and a slot given back after a race between drivers is not used. Seed
    confirmations (`run --confirm`) are extra runs of trials already counted: never a slot."""
    a = t.user_attrs
    if Key.INFEASIBLE in a or Key.CONFIRMS in a or a.get(Key.DISCARDED) or not a.get(Key.SLOT):
        return False
    if t.state == TrialState.FAIL and Key.ERROR not in a:
        return False  # failed as stale (its driver died or stalled): interrupted, not a real failure
    if t.state == TrialState.FAIL and a.get(Key.ERROR_KIND) == "node_lost":
        return False  # its Ray node died under it: replaced on the nodes left
    return t.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def is_failure(t: FrozenTrial) -> bool:
    return t.state == TrialState.FAIL and Key.ERROR in t.user_attrs and not t.user_attrs.get(Key.INTERRUPTED)


def _undecided(t: FrozenTrial) -> bool:
    """RUNNING without a verdict yet: being sampled, or its driver died before claiming."""
    a = t.user_attrs
    return (t.state == TrialState.RUNNING and not a.get(Key.SLOT) and Key.INFEASIBLE not in a
            and Key.DUPLICATE_OF not in a and Key.CONFIRMS not in a and not a.get(Key.DISCARDED))


@dataclass(frozen=True)
class Budget:
    n_trials: int
    used: int             # slots of trials trained, training, or failed for real
    undecided: int        # other drivers' RUNNING trials without a verdict (counted as slots, pessimistically)
    failures: int         # trials of this run that failed (for tune.max_failures)
    others_running: bool  # other drivers' RUNNING trials: they may finish, or go stale and be replaced

    @property
    def free(self) -> int:
        return self.n_trials - self.used - self.undecided


class Write:
    """Outcome of a guarded write: lost when another driver had failed the trial (this one stalled)."""
    lost = False


class Ledger:
    """One driver's view of the shared budget: claims slots, beats heartbeats for its live trials, fails
    other drivers' stale trials, and fails its own leftovers on close."""

    def __init__(self, study: optuna.Study, storage: RDBStorage, n_trials: int, *, run_id: str | None = None,
                 interval: float | None = None, grace: float | None = None,
                 not_a_failure: Callable[[FrozenTrial], bool] | None = None,
                 backoff: tuple[float, float] = (0.2, 1.0), log: Callable[[str], None] | None = None):
        self.study = study
        self.storage = storage
        self.n_trials = n_trials
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.interval = float(interval or HEARTBEAT_INTERVAL)
        self.grace = float(grace or HEARTBEAT_GRACE)
        # e.g. trials that ran out of GPU memory: recorded FAIL, but no reason to stop the study
        self.not_a_failure = not_a_failure or (lambda t: False)
        self.backoff = backoff
        fault_plan()  # a bad SKSEARCH_FAULT stops here, before anything is claimed
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.replaced: list[int] = []   # numbers of other drivers' trials this ledger failed as stale
        self.discarded = 0
        self._held: dict[int, int] = {}  # trial_id -> number: asked here and not yet told
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="sksearch-heartbeat", daemon=True)
        self._beat.start()

    # -- heartbeats -----------------------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        failing = False  # one line when beats start failing, one when they are written again
        while not self._stop.wait(self.interval):
            for trial_id in self.held():
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # the next beat retries; another driver may fail our trials meanwhile
                    if not failing:
                        failing = True
                        self.log(f"heartbeats cannot be written to the storage ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:160]}); retrying every {self.interval:g} s")
                    break
                else:
                    if failing:
                        failing = False
                        self.log("heartbeats are written again")

    def held(self) -> list[int]:
        with self._lock:
            return list(self._held)

    def release(self, trial_id: int) -> None:
        with self._lock:
            self._held.pop(trial_id, None)

    # -- the count ------------------------------------------------------------------------------------------
    def state(self) -> Budget:
        """Fail other drivers' stale trials, then count."""
        self.fail_stale()
        held = set(self.held())
        trials = self.study.get_trials(deepcopy=False)
        return Budget(
            n_trials=self.n_trials,
            used=sum(counts_toward_budget(t) for t in trials),
            undecided=sum(_undecided(t) and t._trial_id not in held for t in trials),
            failures=sum(is_failure(t) and t.user_attrs.get(Key.RUN_ID) == self.run_id
                         and not self.not_a_failure(t) for t in trials),
            others_running=any(t.state == TrialState.RUNNING and t._trial_id not in held for t in trials),
        )

    def fail_stale(self) -> list[int]:
        """FAIL other drivers' stale RUNNING trials (see the module docstring); returns their numbers."""
        held = set(self.held())
        running = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t._trial_id not in held]
        if not running:
            return []
        stale = stale_trials(self.storage, running, self.grace)
        # After an outage every driver's heartbeats are old: judge only once connected a full grace period again
        # (plus the most another driver may take to notice the database is back). Asked after the reads, which
        # may themselves have waited through an outage.
        connected = getattr(self.storage, "connected_for", None)
        if connected is not None and connected() < self.grace + MAX_DELAY:
            return []
        failed = []
        for t in stale:
            try:
                self.storage.set_trial_user_attr(t._trial_id, Key.INTERRUPTED, True)
                self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # its driver told it, or another driver failed it, meanwhile
            failed.append(t.number)
        self.replaced += failed
        return failed

    def _slots_before(self, number: int) -> int:
        return sum(counts_toward_budget(t) or _undecided(t)
                   for t in self.study.get_trials(deepcopy=False) if t.number < number)

    # -- a trial's life -------------------------------------------------------------------------------------
    def ask(self) -> optuna.Trial:
        """A new RUNNING trial, beaten at once (so a crash from here on is detected) and held here."""
        trial = self.study.ask()
        fault_point("after_ask")
        with self._lock:
            self._held[trial._trial_id] = trial.number
        self.storage.record_heartbeat(trial._trial_id)
        fault_point("after_beat")
        return trial

    def claim(self, trial: optuna.Trial) -> bool:
        """Make a sampled trial a slot of this run; False (given back, after a back-off) when the budget
        was taken by other drivers between the count and the claim."""
        with self._guard(trial._trial_id) as w:
            trial.set_user_attr(Key.SLOT, True)
            trial.set_user_attr(Key.RUN_ID, self.run_id)
        if w.lost:  # this driver stalled while sampling and another failed the trial
            return False
        if self._slots_before(trial.number) < self.n_trials:
            fault_point("after_claim")
            return True
        trial.set_user_attr(Key.DISCARDED, True)
        self.study.tell(trial, state=TrialState.FAIL)
        self.release(trial._trial_id)
        self.discarded += 1
        time.sleep(random.uniform(*self.backoff))  # jittered, so racing drivers do not collide again
        return False

    @contextlib.contextmanager
    def progress(self, trial_id: int) -> Iterator[Write]:
        """Guard a write of a running trial's progress (an epoch's result)."""
        with self._guard(trial_id) as w:
            yield w
        if not w.lost:
            fault_point("mid_training")

    @contextlib.contextmanager
    def finish(self, trial_id: int, trained: bool = True) -> Iterator[Write]:
        """Guard the write that tells a trial (trained, or skipped: infeasible, repeated); it is released."""
        if trained:
            fault_point("before_tell")
        with self._guard(trial_id) as w:
            yield w
        self.release(trial_id)
        if trained and not w.lost:
            fault_point("after_tell")

    @contextlib.contextmanager
    def _guard(self, trial_id: int) -> Iterator[Write]:
        w = Write()
        try:
            yield w
        except (UpdateFinishedTrialError, ValueError):
            # study.tell raises ValueError for a finished trial, the storage UpdateFinishedTrialError.
            trial = self.storage.get_trial(trial_id)
            if not trial.state.is_finished():
                raise
            w.lost = True
            self.release(trial_id)
            self.log(f"trial {trial.number}: another driver failed it as stale while this driver stalled "
                     f"(no heartbeat for over {self.grace:g}s); its result is dropped and the slot replaced")

    def close(self) -> None:
        """Stop beating; trials still held (Ctrl-C, a crash) are failed now so a rerun replaces them at once
        instead of waiting for their heartbeats to go stale."""
        self._stop.set()
        with self._lock:
            leftovers = list(self._held)
            self._held.clear()
        for trial_id in leftovers:
            try:
                self.storage.set_trial_user_attr(trial_id, Key.INTERRUPTED, True)
                self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            except Exception:  # already finished, or the database is gone: staleness covers it
                pass


def stale_trials(storage: RDBStorage, running: list[FrozenTrial], grace: float) -> list[FrozenTrial]:
    """Those of `running` whose driver is gone: last heartbeat older than `grace` seconds, or no heartbeat
    row and started longer ago than that (the rule of the module docstring; --fresh uses it too)."""
    if not running:
        return []
    # Read through the storage's retry: a database that restarts between Optuna's calls and this one is an
    # outage to ride out, not a crash of the driver.
    beats, db_now = call_retried(storage, _last_heartbeats, [t._trial_id for t in running])
    now = dt.datetime.now()  # Optuna stamps datetime_start with the asking driver's clock
    stale = []
    for t in running:
        last = beats.get(t._trial_id)
        age = (db_now - last if last is not None else
               now - t.datetime_start if t.datetime_start is not None else dt.timedelta.max)
        if age.total_seconds() > grace:
            stale.append(t)
    return stale


def _last_heartbeats(storage: RDBStorage, trial_ids: list[int]) -> tuple[dict[int, dt.datetime], dt.datetime]:
    """(last heartbeat of each trial that has a heartbeat row, the database's clock). The only use of
    Optuna's private RDB models: its public fail_stale_trials ignores trials without a row and cannot
    spare this driver's own."""
    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    beat = models.TrialHeartbeatModel
    with _create_scoped_session(storage.scoped_session, True) as session:
        db_now = session.execute(sqlalchemy.func.now()).scalar()
        rows = session.query(beat.trial_id, beat.heartbeat).filter(beat.trial_id.in_(trial_ids)).all()
    # As Optuna does: PostgreSQL answers timezone-aware, the column is naive.
    return {tid: when.replace(tzinfo=None) for tid, when in rows}, db_now.replace(tzinfo=None)
