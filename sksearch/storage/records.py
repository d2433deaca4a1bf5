"""What a study leaves in its Optuna storage (the contract in ../shared/design/architecture.md, section 4).

Only the driver writes here; Ray workers never touch the storage, so SQLite is safe by default and a
database URL (PostgreSQL, MySQL) is needed only so that several drivers can share one study.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Sequence

import optuna
import optuna.artifacts
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import RDBStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from sksearch.config import StudyConfig
from sksearch.errors import UserError
from sksearch.spec import ArchSpec

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
    LATENCY_MS = "latency_ms"        # predicted inference time on the study's latency target (sksearch.latency)
    LATENCY_TARGET = "latency_target"  # that target: device, batch, threads, precision, hardware, table id
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
    ERROR_KIND = "error_kind"        # with error: "oom" (device out of memory), "node_lost" or "crash"
    INFEASIBLE = "infeasible"        # the reason; never trained
    DUPLICATE_OF = "duplicate_of"    # number of the full-fidelity twin whose result was copied
    CONFIRMS = "confirms"            # a seed confirmation: number of the front trial it retrains
    PROPOSAL = "proposal"            # ehvi: the predicted accuracy and expected front gain that chose it
    SEED = "seed"                    # the training seed of a confirmation (others train with train.seed)
    PAUSED = "paused"                # a pruned trial whose training state was kept (tune.scheduler.pause)
    RESUMES = "resumes"              # a continuation: number of the paused trial whose training it continues
    WITHDRAWN = "resume_withdrawn"   # a continuation that met another one of the same paused trial: trains anew
    # the budget ledger
    SLOT = "slot"                    # this trial holds one of n_trials
    RUN_ID = "run_id"                # the driver that trained it
    DISCARDED = "discarded"          # a claim given back after losing a race between drivers
    INTERRUPTED = "interrupted"
    # per study
    CONFIG = "config"                # the study file as validated, for resume checks
    # per study, as system attributes (kept out of the dashboard's attribute table): the latency table, one
    # entry per measured unit, "latency:<target id>:<unit key>" -> [median ms, spread ms, runs]
    LATENCY_UNIT_PREFIX = "latency:"
    LATENCY_SCALE_PREFIX = "latency-scale:"  # "latency-scale:<target id>" -> the target's calibrated scale


# Objective and constraint names of each measured cost, and the trial attribute that holds it.
COST_ATTRS = {"params": Key.PARAMS, "macs": Key.MACS, "select_macs": Key.SELECT_MACS, "latency": Key.LATENCY_MS,
              Key.LATENCY_MS: Key.LATENCY_MS}


# Why a trial failed: its device ran out of memory, the Ray node it ran on died, or anything else.
ERROR_KINDS = ("oom", "node_lost", "crash")

WORST = {"accuracy": 0.0}  # what an untrained (infeasible) spec scores, so samplers learn to avoid it

# Optuna constraint of a repeated spec's copy. The copy is COMPLETE with its twin's values so that samplers
# still learn them, but violates this constraint, so Optuna's own front (study.best_trials, what
# optuna-dashboard draws) skips it and holds every model once, like the report's. Every trial carries the
# entry (0 = not a copy): Optuna's GP sampler needs the same constraint entries on every trial.
REPEAT_CONSTRAINT = "repeated"


# -- the state of each trial ---------------------------------------------------------------------------------

def objective_values(cfg: StudyConfig, accuracy: float, params: int, macs: int,
                     latency_ms: float | None = None) -> list[float]:
    by_name = {Key.ACCURACY: accuracy, Key.PARAMS: float(params), Key.MACS: float(macs),
               "latency": float(latency_ms or 0.0)}
    return [by_name[o.metric] for o in cfg.objectives]


# -- writers: everything the driver records about a trial -------------------------------------------------------

def record_sampled(trial: optuna.Trial, spec: dict[str, Any], label: str, params: int | None, macs: int | None,
                   select_macs: int | None, max_epochs: int, *, latency_ms: float | None = None,
                   latency_target: dict[str, Any] | None = None) -> None:
    trial.set_user_attr(Key.SPEC, spec)
    trial.set_user_attr(Key.LABEL, label)
    if params is not None:
        trial.set_user_attr(Key.PARAMS, int(params))
        trial.set_user_attr(Key.MACS, int(macs or 0))
        trial.set_user_attr(Key.SELECT_MACS, int(select_macs or 0))
    if latency_ms is not None:
        trial.set_user_attr(Key.LATENCY_MS, round(float(latency_ms), 5))
        trial.set_user_attr(Key.LATENCY_TARGET, latency_target or {})
    trial.set_user_attr(Key.MAX_EPOCHS, max_epochs)
    trial.set_user_attr(Key.EPOCHS_DONE, 0)
    trial.set_user_attr(Key.FULL_FIDELITY, False)


def set_constraints(trial: optuna.Trial, constraints: dict[str, float], *, repeated: bool = False) -> None:
    """Optuna's constraint values (<= 0 feasible); set once per trial (Optuna keeps the first value)."""
    for key, value in {**constraints, REPEAT_CONSTRAINT: 1.0 if repeated else 0.0}.items():
        trial.set_constraint(key, float(value))


def record_infeasible(study: optuna.Study, trial: optuna.Trial, cfg: StudyConfig, reason: str,
                      params: int | None, macs: int | None, latency_ms: float | None = None) -> None:
    """Never trained. With counts, it is COMPLETE at the worst accuracy and violates its constraints (samplers
    learn from it, fronts skip it); a spec too broken to count is FAIL."""
    trial.set_user_attr(Key.INFEASIBLE, reason)
    if params is None:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, objective_values(cfg, WORST[Key.ACCURACY], params, macs or 0, latency_ms))


def record_duplicate(study: optuna.Study, trial: optuna.Trial, original: FrozenTrial) -> None:
    """A spec already trained to the full budget: seeded training would repeat it, so copy its result
    (the sampler learns the same), train nothing, use no slot. Its constraints must have been set with
    repeated=True (set_constraints), which keeps it off Optuna's front; full_fidelity false keeps it off ours."""
    trial.set_user_attr(Key.DUPLICATE_OF, original.number)
    for key in (Key.ACCURACY, Key.ACCURACY_HISTORY, Key.EPOCHS_DONE):
        if key in original.user_attrs:
            trial.set_user_attr(key, original.user_attrs[key])
    study.tell(trial, list(original.values))


def record_confirmation(trial: optuna.Trial, original: FrozenTrial, seed: int, run_id: str,
                        max_epochs: int) -> None:
    """A retraining of front trial `original` with another training seed (`sksearch run --confirm K`), to
    measure seed noise. Same spec, params and constraints as the original, plus the violated `repeated`
    constraint. Why COMPLETE + that constraint (as a repeated spec's copy) rather than PRUNED or FAIL: it is a
    real, fully trained result, so the dashboard shows it with its values, the samplers see an ordinary
    trial, and Optuna's own front (study.best_trials drops trials that violate a constraint) is unchanged
    without a new constraint key, which every trial would need for the GP sampler. Ours skips it by
    status(). No Key.SLOT: it is off the budget (ledger.counts_toward_budget); Key.RUN_ID so max_failures
    and the timing of this run include it."""
    for name, dist in original.distributions.items():
        trial.storage.set_trial_param(trial._trial_id, name, dist.to_internal_repr(original.params[name]), dist)
    trial.set_user_attr(Key.CONFIRMS, original.number)
    trial.set_user_attr(Key.SEED, int(seed))
    trial.set_user_attr(Key.RUN_ID, run_id)
    set_constraints(trial, {k: v for k, v in original.constraints.items() if k != REPEAT_CONSTRAINT}, repeated=True)
    record_sampled(trial, spec(original) or {}, label(original), cost(original, Key.PARAMS),
                   cost(original, Key.MACS), cost(original, Key.SELECT_MACS), max_epochs,
                   latency_ms=cost(original, Key.LATENCY_MS),
                   latency_target=original.user_attrs.get(Key.LATENCY_TARGET))


def record_epoch(storage: RDBStorage, trial_id: int, *, epoch: int, accuracy: float, history: Sequence[float],
                 train_seconds: float | None = None, images_per_second: float | None = None,
                 node: str | None = None) -> None:
    """Progress of a running trial, so the dashboard is live and a crash keeps what was learned."""
    storage.set_trial_user_attr(trial_id, Key.EPOCHS_DONE, int(epoch))
    storage.set_trial_user_attr(trial_id, Key.ACCURACY, float(accuracy))
    storage.set_trial_user_attr(trial_id, Key.ACCURACY_HISTORY, [round(a, 6) for a in history])
    if train_seconds is not None:
        storage.set_trial_user_attr(trial_id, Key.TRAIN_SECONDS, float(train_seconds))
    if images_per_second is not None:
        storage.set_trial_user_attr(trial_id, Key.IMAGES_PER_SECOND, float(images_per_second))
    if node and epoch == 1:
        storage.set_trial_user_attr(trial_id, Key.NODE, str(node))


def record_end(study: optuna.Study, trial: optuna.Trial, cfg: StudyConfig, *, epochs_done: int, max_epochs: int,
               accuracy: float | None, params: int, macs: int, error: str | None,
               error_kind: str | None = None, latency_ms: float | None = None) -> TrialState:
    """COMPLETE when trained for the full budget, PRUNED when a scheduler stopped it, FAIL with its error
    (and its kind: "oom", "node_lost" or "crash")."""
    if error is not None:
        trial.set_user_attr(Key.ERROR, error.strip().splitlines()[-1][:500] if error.strip() else "failed")
        trial.set_user_attr(Key.ERROR_KIND, error_kind if error_kind in ERROR_KINDS else "crash")
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    if accuracy is not None and epochs_done >= max_epochs:
        trial.set_user_attr(Key.FULL_FIDELITY, True)
        study.tell(trial, objective_values(cfg, accuracy, params, macs, latency_ms))
        return TrialState.COMPLETE
    # Stopped early: the last values stay as user attributes (record_epoch), never as objective values.
    study.tell(trial, state=TrialState.PRUNED)
    return TrialState.PRUNED


# -- kept weights: Optuna artifacts in the study's artifact store (StudyConfig.artifact_dir) ---------------------

STATE_FILE = "state.pt"  # a paused trial's training state: weights, optimizer, schedule, epoch
WEIGHTS_FILE = "weights.pt"  # the artifact's file name: a state dict, torch.load(..., weights_only=True)


def artifact_store(cfg: StudyConfig) -> optuna.artifacts.FileSystemArtifactStore:
    return optuna.artifacts.FileSystemArtifactStore(cfg.artifact_dir())


def staging_dir(cfg: StudyConfig) -> Path:
    """Where Ray workers leave a trial's weights for the driver to keep: under the artifact store, so a
    shared store on a cluster is a shared staging folder too."""
    return cfg.artifact_dir() / "staging"


def staging_folder(cfg: StudyConfig, trial_number: int, *, resumes: int | None = None) -> Path:
    """A folder of one trial's own in the staging area (a trial number is reused by a --fresh study, and two
    drivers may share a store); `resumes`: the copy of a paused trial's state that this trial continues."""
    what = f"-resumes-{resumes}" if resumes is not None else ""
    return staging_dir(cfg) / f"{cfg.name}-{trial_number}{what}-{uuid.uuid4().hex[:8]}"


def clear_staging(study: Study, cfg: StudyConfig) -> int:
    """Remove the staging folders of this study's trials that no longer run: what a driver killed between a
    worker's staging and its trial's end left behind (weights, a paused state). Folders of RUNNING trials,
    another driver's among them, are kept. Returns how many were removed."""
    folder = staging_dir(cfg)
    if not folder.is_dir():
        return 0
    pattern = re.compile(rf"{re.escape(cfg.name)}-(\d+)(?:-resumes-\d+)?-[0-9a-f]{{8}}")
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    removed = 0
    for entry in folder.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and entry.is_dir() and int(match.group(1)) not in running:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def record_weights(trial: optuna.Trial, cfg: StudyConfig, staged: str | Path) -> str:
    """Keep the weights a worker staged as the trial's artifact (its id returned), then remove the staged
    file. Called before study.tell: Optuna refuses attributes of a finished trial."""
    try:
        if not Path(staged).is_file():  # upload_artifact records the artifact before it reads the file
            raise FileNotFoundError(f"{staged} is not on this machine (is the artifact store shared?)")
        return optuna.artifacts.upload_artifact(artifact_store=artifact_store(cfg), file_path=str(staged),
                                                study_or_trial=trial)
    finally:
        discard_staged(staged)


def record_paused(trial: optuna.Trial, cfg: StudyConfig, staged: str | Path) -> None:
    """Keep the training state a worker staged at the rung that stopped the trial (tune.scheduler.pause), so a
    later proposal can resume it. Before study.tell; the staged file is removed either way."""
    record_weights(trial, cfg, staged)
    mark_paused(trial)


def mark_paused(trial: optuna.Trial) -> None:
    """The trial, about to be told PRUNED, may be resumed (its training state is kept; in the replay of
    bench/schedulers, its curve)."""
    trial.set_user_attr(Key.PAUSED, True)


def record_continuation(trial: optuna.Trial, paused: FrozenTrial) -> None:
    """A new trial that resumes `paused` from its kept training state: it carries the paused trial's curve so
    far, so its history is the whole curve; `paused` stays PRUNED (Optuna does not reopen a finished trial)."""
    claim_continuation(trial, paused)
    history = paused.user_attrs.get(Key.ACCURACY_HISTORY) or []
    trial.set_user_attr(Key.EPOCHS_DONE, epochs_done(paused))
    trial.set_user_attr(Key.ACCURACY_HISTORY, list(history))
    if history:
        trial.set_user_attr(Key.ACCURACY, history[-1])


def claim_continuation(trial: optuna.Trial, paused: FrozenTrial) -> None:
    """Mark `trial` as the continuation of `paused` (record_continuation's first write). Two drivers may claim one
    paused trial at once: each claims, then looks for another claim (rival_continuations) and withdraws if it
    finds one, so at most one goes on (both may withdraw; the paused trial then waits for a later proposal)."""
    trial.set_user_attr(Key.RESUMES, paused.number)


def withdraw_continuation(trial: optuna.Trial) -> None:
    """The trial met another continuation of the same paused trial: it trains its spec from the start."""
    trial.set_user_attr(Key.WITHDRAWN, True)


def continues(t: FrozenTrial) -> int | None:
    """The number of the paused trial `t` continues, or None (not a continuation, or a withdrawn one)."""
    if Key.RESUMES not in t.user_attrs or t.user_attrs.get(Key.WITHDRAWN):
        return None
    return int(t.user_attrs[Key.RESUMES])


# A continuation in these states holds its paused trial; a failed or interrupted one gives it back.
_HOLDING = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)


def rival_continuations(trials: Sequence[FrozenTrial], trial_number: int, paused_number: int) -> list[int]:
    """Numbers of the other trials, running or ended, that continue the paused trial `paused_number`."""
    return [t.number for t in trials
            if t.number != trial_number and continues(t) == paused_number and t.state in _HOLDING]


def paused_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Paused trials that may be resumed: not continued by a trial that is running or ended (a continuation
    that failed or was interrupted gives its paused trial back), and their network not trained in full."""
    continued = {c for t in trials if (c := continues(t)) is not None and t.state in _HOLDING}
    full = {identity(t) for t in trials if status(t) == "full"}
    return [t for t in trials if t.state == TrialState.PRUNED and t.user_attrs.get(Key.PAUSED)
            and t.number not in continued and identity(t) not in full]


def continued_trials(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of the paused trials some trial continues (their curve is part of the continuation's)."""
    return {c for t in trials if (c := continues(t)) is not None}


def proposed_resume(trial: optuna.Trial) -> int | None:
    """The paused trial an ehvi proposal chose to resume with this trial (Key.PROPOSAL), or None."""
    proposal = trial.user_attrs.get(Key.PROPOSAL)
    number = proposal.get("resumes") if isinstance(proposal, dict) else None
    return int(number) if isinstance(number, int) else None


def fetch_paused_state(study: Study, paused: FrozenTrial, cfg: StudyConfig, for_trial: int) -> str | None:
    """Copy a paused trial's training state from the artifact store to a staging file for the worker that
    resumes it (the driver removes it when that trial ends); None when the state is not there."""
    artifact = paused_state_artifact(study, paused)
    if artifact is None:
        return None
    path = staging_folder(cfg, for_trial, resumes=paused.number) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        optuna.artifacts.download_artifact(artifact_store=artifact_store(cfg), artifact_id=artifact,
                                           file_path=str(path))
    except (OSError, ArtifactNotFound):
        discard_staged(path)
        return None
    return str(path)


def paused_state_artifact(study: Study, t: FrozenTrial) -> str | None:
    """The artifact id of a paused trial's training state."""
    return _artifact_named(study, t, STATE_FILE)


def discard_staged(staged: str | Path) -> None:
    path = Path(staged)
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()  # the trial's own staging folder, once empty
    except OSError:
        pass


def weights_artifact(study: Study, t: FrozenTrial) -> str | None:
    """The artifact id of the trial's kept weights, or None when it kept none."""
    return _artifact_named(study, t, WEIGHTS_FILE)


def _artifact_named(study: Study, t: FrozenTrial, filename: str) -> str | None:
    metas = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)  # a FrozenTrial needs the storage
    return next((m.artifact_id for m in reversed(metas) if m.filename == filename), None)


def trials_with_weights(study: Study, trials: Sequence[FrozenTrial]) -> list[int]:
    """Numbers of the trials that kept weights (for messages that name one)."""
    return [t.number for t in trials if t.state.is_finished() and weights_artifact(study, t) is not None]


def require_weights(study: Study, t: FrozenTrial, *, key: str | None = None) -> str:
    """The artifact id of the trial's kept weights; else a UserError naming the trials that kept some."""
    artifact = weights_artifact(study, t)
    if artifact is not None:
        return artifact
    have = trials_with_weights(study, study.get_trials(deepcopy=False))
    hint = (f"trials that kept weights: {', '.join(f'#{n}' for n in have[:10])}" if have else
            "no trial of this study kept weights (tune.keep_weights: none, or trained before weights were kept)")
    raise UserError(f"trial {t.number} kept no weights; {hint}", key=key)


def download_weights(cfg: StudyConfig, artifact_id: str, dest: str | Path, *, replace: bool = False) -> Path:
    """Copy a kept state dict out of the artifact store to `dest` (written whole or not at all)."""
    dest = Path(dest)
    if dest.exists() and not replace:
        raise FileExistsError(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    os.unlink(tmp)  # download_artifact refuses an existing file
    try:
        optuna.artifacts.download_artifact(artifact_store=artifact_store(cfg), file_path=tmp, artifact_id=artifact_id)
        os.replace(tmp, dest)
    except ArtifactNotFound:
        raise UserError(f"the kept weights (artifact {artifact_id}) are not in the artifact store "
                        f"{cfg.artifact_dir()}; point the study's `artifacts` at the store they were kept in",
                        file=cfg.source, key="artifacts") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def cached_weights(cfg: StudyConfig, artifact_id: str) -> Path:
    """A local copy of kept weights, for commands that load them (attention): downloaded once into
    <output_dir>/weights/<artifact id>.pt, which an id never reused keeps valid."""
    path = cfg.out_dir() / "weights" / f"{artifact_id}.pt"
    return path if path.exists() else download_weights(cfg, artifact_id, path)


def record_study_config(study: Study, config: dict[str, Any]) -> None:
    """The study file as validated (URL redacted by the caller), for the resume check."""
    study.set_user_attr(Key.CONFIG, config)


def study_config(study: Study) -> dict[str, Any] | None:
    data = study.user_attrs.get(Key.CONFIG)
    return data if isinstance(data, dict) else None


# -- the read view: what a trial is, for the report, the exporter, the console and the dashboard ----------------

def status(t: FrozenTrial) -> str:
    """One of: full (trained to the budget), partial (COMPLETE short of it), pruned, infeasible, duplicate,
    confirmation (a front trial retrained with another seed),
    failed (with its error), interrupted (its driver died or stopped it), discarded (a claim given back
    after losing a race between drivers), running."""
    a = t.user_attrs
    if Key.DUPLICATE_OF in a:
        return "duplicate"  # a repeated spec whose result was copied, not trained
    if Key.CONFIRMS in a and t.state == TrialState.COMPLETE:
        return "confirmation"  # a front trial retrained with another seed (its `repeated` constraint is set)
    if Key.INFEASIBLE in a or any(v > 0 for k, v in t.constraints.items() if k != REPEAT_CONSTRAINT):
        return "infeasible"
    if t.state == TrialState.COMPLETE:
        return "full" if a.get(Key.FULL_FIDELITY) else "partial"
    if t.state == TrialState.PRUNED:
        return "pruned"
    if t.state == TrialState.FAIL:
        if a.get(Key.DISCARDED):
            return "discarded"
        return "failed" if Key.ERROR in a else "interrupted"
    return "running"


def explain(t: FrozenTrial) -> str:
    """Why a trial is (or is not) on the front, in words: the one map from state to explanation."""
    a = t.user_attrs
    s = status(t)
    done, most = a.get(Key.EPOCHS_DONE, "?"), a.get(Key.MAX_EPOCHS, "?")
    if s == "full":
        return f"trained for the full budget ({done} epochs)"
    if s == "partial":
        return f"COMPLETE after {done} of {most} epochs: not trained for the full budget"
    if s == "pruned":
        acc = a.get(Key.ACCURACY)
        then = f" (accuracy {acc:.4g} then)" if isinstance(acc, (int, float)) else ""
        kept = " (paused: a later trial may resume it)" if a.get(Key.PAUSED) else ""
        return f"pruned after {done} of {most} epochs{then}{kept}: never trained for the full budget"
    if s == "infeasible":
        return f"infeasible, never trained: {a.get(Key.INFEASIBLE, 'it violates a constraint')}"
    if s == "duplicate":
        return f"same network as trial {a.get(Key.DUPLICATE_OF)}: its result was copied, not trained"
    if s == "confirmation":
        return (f"trial {a.get(Key.CONFIRMS)} retrained with seed {a.get(Key.SEED)} to measure seed noise "
                f"(off the budget and the front)")
    if s == "failed":
        return f"failed: {a.get(Key.ERROR)}"
    if s == "interrupted":
        return "interrupted: its driver stopped or died before it finished"
    if s == "discarded":
        return "a claim given back (another driver took the last slot): never trained"
    return f"still {t.state.name.lower()}"


def accuracy(t: FrozenTrial, metric_names: Sequence[str] | None = None) -> float | None:
    """The trial's validation accuracy: its objective value named accuracy when told, else the last accuracy
    recorded (pruned and failed trials keep theirs); infeasible specs score WORST."""
    if t.values is not None and metric_names and Key.ACCURACY in metric_names:
        return float(t.values[list(metric_names).index(Key.ACCURACY)])
    if Key.INFEASIBLE in t.user_attrs:
        return WORST[Key.ACCURACY]
    acc = t.user_attrs.get(Key.ACCURACY)
    return float(acc) if isinstance(acc, (int, float)) else None


def is_not_its_fault(t: FrozenTrial) -> bool:
    """Failed for lack of device memory or because its Ray node died: recorded FAIL and replaced, but not
    counted toward tune.max_failures (the spec did nothing wrong)."""
    return t.state == TrialState.FAIL and t.user_attrs.get(Key.ERROR_KIND) in ("oom", "node_lost")


def is_oom(t: FrozenTrial) -> bool:
    """Failed for lack of device memory: recorded FAIL, but not counted toward tune.max_failures."""
    return t.state == TrialState.FAIL and t.user_attrs.get(Key.ERROR_KIND) == "oom"


def confirmations(trials: Sequence[FrozenTrial], *, include_running: bool = False) -> dict[int, list[FrozenTrial]]:
    """{front trial number: its seed confirmations}, COMPLETE ones (and RUNNING ones when asked), by number."""
    states = (TrialState.COMPLETE, TrialState.RUNNING) if include_running else (TrialState.COMPLETE,)
    out: dict[int, list[FrozenTrial]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if Key.CONFIRMS in t.user_attrs and t.state in states:
            out.setdefault(int(t.user_attrs[Key.CONFIRMS]), []).append(t)
    return out


def seed(t: FrozenTrial) -> int | None:
    """The training seed of a confirmation (None: the study's train.seed)."""
    value = t.user_attrs.get(Key.SEED)
    return int(value) if isinstance(value, int) else None


def spec(t: FrozenTrial) -> dict[str, Any] | None:
    data = t.user_attrs.get(Key.SPEC)
    return data if isinstance(data, dict) and data else None


def arch_spec(t: FrozenTrial) -> ArchSpec | None:
    """The trial's spec as an ArchSpec, or None when none was recorded or it does not validate (an invalid
    sample is recorded as such)."""
    data = spec(t)
    if data is None:
        return None
    try:
        return ArchSpec.model_validate(data)
    except Exception:
        return None


def identity(t: FrozenTrial) -> str | None:
    """The network the trial's spec builds (ArchSpec.identity: equal for specs that build the same network,
    whatever their r, L or path order), or None without a valid spec."""
    s = arch_spec(t)
    return s.identity() if s is not None else None


def label(t: FrozenTrial) -> str:
    return str(t.user_attrs.get(Key.LABEL) or "")


def cost(t: FrozenTrial, name: str) -> float | None:
    """A measured cost of the trial's spec (params, macs, select_macs, latency or latency_ms), or None when it
    was not measured."""
    attr = COST_ATTRS.get(name)
    value = t.user_attrs.get(attr) if attr else None
    return value if isinstance(value, (int, float)) else None


def epochs_done(t: FrozenTrial) -> int:
    return int(t.user_attrs.get(Key.EPOCHS_DONE) or 0)


def train_seconds(t: FrozenTrial) -> float:
    return float(t.user_attrs.get(Key.TRAIN_SECONDS) or 0.0)


def run_id(t: FrozenTrial) -> str | None:
    return t.user_attrs.get(Key.RUN_ID)


def front_row(t: FrozenTrial, metric_names: Sequence[str] | None = None) -> dict[str, Any]:
    """One row of a front table (console, report, summary.json): the same keys everywhere."""
    return {"trial": t.number, "label": label(t), "accuracy": accuracy(t, metric_names),
            "params": cost(t, Key.PARAMS), "macs": cost(t, Key.MACS), "select_macs": cost(t, Key.SELECT_MACS),
            "latency_ms": cost(t, Key.LATENCY_MS), "epochs": epochs_done(t)}


# -- the latency table a study shares between its drivers (sksearch.latency) ------------------------------------

def latency_units(storage: RDBStorage, study_id: int, target_id: str) -> dict[str, list]:
    """{unit key: [median ms, spread ms, runs]} of one target, as stored by any driver of the study."""
    prefix = f"{Key.LATENCY_UNIT_PREFIX}{target_id}:"
    return {k[len(prefix):]: v for k, v in storage.get_study_system_attrs(study_id).items()
            if k.startswith(prefix) and isinstance(v, list)}


def record_latency_unit(storage: RDBStorage, study_id: int, target_id: str, unit: str, timing: list) -> None:
    storage.set_study_system_attr(study_id, f"{Key.LATENCY_UNIT_PREFIX}{target_id}:{unit}", timing)


def latency_scale(storage: RDBStorage, study_id: int, target_id: str) -> float | None:
    """The scale the study's first driver calibrated for this target (every driver predicts with it)."""
    value = storage.get_study_system_attrs(study_id).get(f"{Key.LATENCY_SCALE_PREFIX}{target_id}")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def record_latency_scale(storage: RDBStorage, study_id: int, target_id: str, scale: float) -> None:
    storage.set_study_system_attr(study_id, f"{Key.LATENCY_SCALE_PREFIX}{target_id}", float(scale))
