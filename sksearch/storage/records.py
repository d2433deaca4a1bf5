"""What a study leaves in its Optuna storage (the contract in ../shared/design/architecture.md, section 4).

Only the driver writes here; Ray workers never touch the storage, so SQLite is safe by default and a
database URL (PostgreSQL, MySQL) is needed only so that several drivers can share one study.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sksearch.config import StudyConfig, redact_url
from sksearch.errors import UserError

# Trials of a driver that died stop sending heartbeats; after the grace period another driver (or a rerun)
# marks them FAIL and replaces them (storage/ledger.py). A live driver beats every HEARTBEAT_INTERVAL seconds.
# Tests shorten both through SKSEARCH_HEARTBEAT (seconds; the grace is four beats).
HEARTBEAT_INTERVAL = int(os.environ.get("SKSEARCH_HEARTBEAT", "5"))
HEARTBEAT_GRACE = 4 * HEARTBEAT_INTERVAL

class Key:
    """The user-attribute keys of the storage contract (architecture.md, section 4). This module is the only
    one that names them: everything else reads and writes trials through the functions below."""

    # per trial: what was sampled and what it costs
    SPEC = "spec"                    # the full ArchSpec as a dict
    LABEL = "label"                  # SK[M,G,r] short label
    PARAMS = "params"
    MACS = "macs"
    SELECT_MACS = "select_macs"
    # per trial: training progress and outcome
    MAX_EPOCHS = "max_epochs"
    EPOCHS_DONE = "epochs_done"
    FULL_FIDELITY = "full_fidelity"
    ACCURACY = "accuracy"            # last validation accuracy (also of PRUNED trials)
    ACCURACY_HISTORY = "accuracy_history"
    TRAIN_SECONDS = "train_seconds"
    IMAGES_PER_SECOND = "images_per_second"
    NODE = "node"
    ERROR = "error"                  # one line, on failure
    INFEASIBLE = "infeasible"        # the reason; never trained
    DUPLICATE_OF = "duplicate_of"    # number of the full-fidelity twin whose result was copied
    # the budget ledger
    SLOT = "slot"                    # this trial holds one of n_trials
    RUN_ID = "run_id"                # the driver that trained it
    DISCARDED = "discarded"          # a claim given back after losing a race between drivers
    INTERRUPTED = "interrupted"
    # per study
    CONFIG = "config"                # the study file as validated, for resume checks


WORST = {"accuracy": 0.0}  # what an untrained (infeasible) spec scores, so samplers learn to avoid it


def open_storage(url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                 heartbeat_grace: int = HEARTBEAT_GRACE) -> RDBStorage:
    """An Optuna RDBStorage with heartbeats; creates the folder of a SQLite file."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                          grace_period=heartbeat_grace)
    except Exception as exc:  # a bad URL, a missing driver, a server that does not answer
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot open the storage {redact_url(url)}: {msg}", key="storage") from None


def load_or_create_study(cfg: StudyConfig, storage: RDBStorage, sampler: optuna.samplers.BaseSampler
                         ) -> optuna.Study:
    directions = [o.direction for o in cfg.objectives]
    names = [o.metric for o in cfg.objectives]
    try:
        existing = optuna.load_study(study_name=cfg.name, storage=storage, sampler=sampler)
    except KeyError:
        existing = None
    if existing is not None:
        have = [d.name.lower() for d in existing.directions]
        if have != directions or (existing.metric_names and existing.metric_names != names):
            raise UserError(
                f"the stored study {cfg.name!r} has objectives {existing.metric_names or have}, the study file "
                f"asks for {names}; rerun with --fresh to start over (the old study is kept)",
                file=cfg.source, key="objectives")
        return existing
    study = optuna.create_study(study_name=cfg.name, storage=storage, sampler=sampler, directions=directions,
                                load_if_exists=True)
    study.set_metric_names(names)
    study.set_user_attr("config", cfg.model_dump(mode="json"))
    return study


def archive_study(cfg: StudyConfig, storage: RDBStorage) -> str | None:
    """--fresh: keep the old study under '<name>-<timestamp>' and delete the original name."""
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if cfg.name not in names:
        return None
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    new = f"{cfg.name}-{stamp}"
    optuna.copy_study(from_study_name=cfg.name, from_storage=storage, to_storage=storage, to_study_name=new)
    optuna.delete_study(study_name=cfg.name, storage=storage)
    return new


# -- the state of each trial ---------------------------------------------------------------------------------

def objective_values(cfg: StudyConfig, accuracy: float, params: int, macs: int) -> list[float]:
    by_name = {"accuracy": accuracy, "params": float(params), "macs": float(macs)}
    return [by_name[o.metric] for o in cfg.objectives]


def record_sampled(trial: optuna.Trial, spec: dict[str, Any], label: str, params: int | None, macs: int | None,
                   select_macs: int | None, max_epochs: int) -> None:
    trial.set_user_attr("spec", spec)
    trial.set_user_attr("label", label)
    if params is not None:
        trial.set_user_attr("params", int(params))
        trial.set_user_attr("macs", int(macs or 0))
        trial.set_user_attr("select_macs", int(select_macs or 0))
    trial.set_user_attr("max_epochs", max_epochs)
    trial.set_user_attr("epochs_done", 0)
    trial.set_user_attr("full_fidelity", False)


def set_constraints(trial: optuna.Trial, constraints: dict[str, float]) -> None:
    for key, value in constraints.items():
        trial.set_constraint(key, float(value))


def record_infeasible(study: optuna.Study, trial: optuna.Trial, cfg: StudyConfig, reason: str,
                      params: int | None, macs: int | None) -> None:
    """Never trained. With counts, it is COMPLETE at the worst accuracy and violates its constraints (samplers
    learn from it, fronts skip it); a spec too broken to count is FAIL."""
    trial.set_user_attr("infeasible", reason)
    if params is None:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, objective_values(cfg, WORST["accuracy"], params, macs or 0))


def record_duplicate(study: optuna.Study, trial: optuna.Trial, original: FrozenTrial) -> None:
    """A spec already trained to the full budget: seeded training would repeat it, so copy its result
    (the sampler learns the same), train nothing, use no slot, and stay off the fronts (full_fidelity false)."""
    trial.set_user_attr("duplicate_of", original.number)
    for key in ("accuracy", "accuracy_history", "epochs_done"):
        if key in original.user_attrs:
            trial.set_user_attr(key, original.user_attrs[key])
    study.tell(trial, list(original.values))


def record_epoch(storage: RDBStorage, trial_id: int, result: dict[str, Any], history: list[float]) -> None:
    """Progress of a running trial, so the dashboard is live and a crash keeps what was learned."""
    storage.set_trial_user_attr(trial_id, "epochs_done", int(result["training_iteration"]))
    storage.set_trial_user_attr(trial_id, "accuracy", float(result["accuracy"]))
    storage.set_trial_user_attr(trial_id, "accuracy_history", [round(a, 6) for a in history])
    for key in ("train_seconds", "images_per_second"):
        if key in result:
            storage.set_trial_user_attr(trial_id, key, float(result[key]))
    if result.get("node") and result["training_iteration"] == 1:
        storage.set_trial_user_attr(trial_id, "node", str(result["node"]))


def record_end(study: optuna.Study, trial: optuna.Trial, cfg: StudyConfig, *, epochs_done: int, max_epochs: int,
               accuracy: float | None, params: int, macs: int, error: str | None) -> TrialState:
    """COMPLETE when trained for the full budget, PRUNED when a scheduler stopped it, FAIL with its error."""
    if error is not None:
        trial.set_user_attr("error", error.strip().splitlines()[-1][:500] if error.strip() else "failed")
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    if accuracy is not None and epochs_done >= max_epochs:
        trial.set_user_attr("full_fidelity", True)
        study.tell(trial, objective_values(cfg, accuracy, params, macs))
        return TrialState.COMPLETE
    # Stopped early: the last values stay as user attributes (record_epoch), never as objective values.
    study.tell(trial, state=TrialState.PRUNED)
    return TrialState.PRUNED


logging.getLogger("optuna").setLevel(logging.WARNING)
# We use heartbeats with ask/tell on purpose (the driver beats for its Ray trials), and metric names and
# fail_stale_trials are stable in practice: their "experimental" warnings would only confuse users.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
