"""The one way into an Optuna storage: open it (write side for `run`, read side for report, export,
dashboard), create or resume a study with the resume check, archive it for --fresh, and print its URL
without secrets.

A plain `optuna.load_study` on a SQLite URL whose file does not exist silently creates an empty database;
the read side here turns a missing file or study name into a UserError that says what to run first.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import re
import time
import uuid
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from sksearch.config import StorageConfig, StudyConfig
from sksearch.errors import UserError
from sksearch.storage import records
from sksearch.storage.ledger import stale_trials  # the ledger owns the staleness rule
from sksearch.storage.records import HEARTBEAT_GRACE, HEARTBEAT_INTERVAL


def quiet_optuna() -> None:
    """Called where a study is opened, never at import (a notebook's own Optuna must stay as it was).
    We use heartbeats with ask/tell on purpose (the driver beats for its Ray trials), and metric names and
    fail_stale_trials are stable in practice: their "experimental" warnings would only confuse users."""
    logging.getLogger("optuna").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# -- secrets ---------------------------------------------------------------------------------------------------

# Query parameters that carry a secret (libpq's `password`, MySQL's `passwd`, tokens of cloud drivers).
_SECRET_QUERY = re.compile(r"pass|pwd|secret|token|key", re.I)


def redact_url(url: str) -> str:
    """A storage URL safe to print or store: the password in the user-info part and every password-like
    query parameter replaced by ***. Parsed by SQLAlchemy's URL object; the user-info ends at the LAST '@'
    of the authority (an unescaped '@' in a password, `u:p@ss@host`, is still all password)."""
    from sqlalchemy.engine import make_url

    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, tail = re.match(r"([^/?]*)(.*)", rest, re.S).groups()
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        user, colon, password = userinfo.partition(":")
        authority = f"{user}:{quote(password, safe='')}@{host}" if colon else authority
    try:
        u = make_url(f"{scheme}://{authority}{tail}")
    except Exception:  # not a URL SQLAlchemy knows: keep nothing that could be a secret
        return f"{scheme}://***" if "@" in authority or "?" in tail else url
    secret = {k: "***" for k in u.query if _SECRET_QUERY.search(k)}
    if secret:
        u = u.update_query_dict(secret)
    return u.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def _open_error(url: str, exc: Exception) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot open the storage {redact_url(url)}: {redact_url(msg) if '://' in msg else msg}"


# -- opening -------------------------------------------------------------------------------------------------

def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:/// URL, else None."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    return None


def open_storage(url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                 heartbeat_grace: int = HEARTBEAT_GRACE, read_only: bool = False,
                 source: str | None = None, retry_seconds: float | None = None) -> RDBStorage:
    """An Optuna RDBStorage. Write side (`run`): heartbeats, creates the tables and a SQLite file's folder;
    with `retry_seconds`, a RetryingStorage that rides out an outage of that length (storage/retry.py).
    Read side: never creates or migrates anything (a shared database stays as it is)."""
    quiet_optuna()
    path = sqlite_path(url)
    if read_only and path is not None and not path.exists():
        raise UserError(f"no study storage at {path}; run `sksearch run {source or 'STUDY.yaml'}` first "
                        f"(or pass --storage URL)", file=source, key="storage")
    if path is not None and not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs: dict[str, Any] = ({"connect_args": {"timeout": 60}} if url.startswith("sqlite")
                                     else {"pool_pre_ping": True})
    # The losers of a creation race retry until the winner has finished (it creates one table at a time,
    # so a loser can trip over several in turn); a deadline, not a count, bounds the wait.
    deadline = time.monotonic() + 30
    while True:
        try:
            if read_only:
                return RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=True)
            if retry_seconds is not None:
                from sksearch.storage.retry import RetryingStorage

                return RetryingStorage(url, retry_seconds=retry_seconds, shown_url=redact_url(url),
                                       engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                       grace_period=heartbeat_grace)
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                              grace_period=heartbeat_grace)
        except Exception as exc:  # a bad URL, a missing driver, a server that does not answer
            if _lost_creation_race(exc) and time.monotonic() < deadline:
                time.sleep(random.uniform(0.05, 0.25))  # let the winner finish: open what it made
                continue
            raise UserError(_open_error(url, exc), file=source, key="storage") from None


def _lost_creation_race(exc: Exception) -> bool:
    """Two processes opening a new database both create Optuna's tables: the slower one finds a table that
    was not there a moment ago, or fails to insert the schema version on its unique key, though the
    database is whole."""
    from sqlalchemy.exc import DatabaseError

    text = str(exc)
    return isinstance(exc, DatabaseError) and ("already exists" in text or "alembic_version" in text
                                               or "duplicate key" in text.lower())


def open_study(cfg: StudyConfig, storage_url: str | None = None) -> tuple[optuna.Study, str]:
    """Read side: the study named cfg.name in its storage (--storage beats SKSEARCH_STORAGE beats the study
    file); returns (study, url). Nothing is written."""
    url = cfg.storage_url(storage_url)
    storage = open_storage(url, read_only=True, source=cfg.source)
    try:
        study = optuna.load_study(study_name=cfg.name, storage=storage)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        have = ", ".join(names) if names else "none"
        raise UserError(f"no study named {cfg.name!r} in {redact_url(url)} (studies there: {have})",
                        file=cfg.source, key="name") from None
    return study, url


def metric_names(study: optuna.Study, cfg: StudyConfig) -> list[str]:
    """The objectives' names in values order: the storage's own, else the study file's."""
    return list(study.metric_names or [o.metric for o in cfg.objectives])


# -- the resume check --------------------------------------------------------------------------------------------

# Keys whose change does not alter a trial's result: how many, how fast, where, and how the next spec is
# chosen. Everything else (data, recipe, objectives, constraints, the space's contents, the epochs a trial
# trains) does, and a study mixing both would compare results of different experiments.
_HARMLESS = ("tune.n_trials", "tune.max_concurrent", "tune.resources_per_trial", "tune.scheduler",
             "tune.sampler", "tune.max_failures", "tune.keep_weights", "storage", "output_dir", "artifacts",
             "search_space", "dataset.workers", "dataset.download",
             # how many networks the driver times before trials start: the target and the scale (kept once
             # per study) decide the figures
             "latency.presample", "latency.check")


def space_digest(path: str | Path) -> str:
    """A hash of the search space file's parsed content: comments, key order and its path do not matter."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return ""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stored_config(cfg: StudyConfig) -> dict[str, Any]:
    """The study file as stored with the study: every key, the URL without its password, the digest of the
    space's content, and the epochs a trial trains (tune.scheduler.max_epochs may lower train.epochs)."""
    data = cfg.model_dump(mode="json")
    storage = data.get("storage")
    if storage and storage.get("url"):
        storage["url"] = redact_url(storage["url"])
        if storage["retry_seconds"] == StorageConfig().retry_seconds:  # stored as the short form, as before
            data["storage"] = storage["url"]
    data["search_space_content"] = space_digest(cfg.space_path())
    data["trial_epochs"] = cfg.max_epochs()
    return data


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(keys that alter results, keys that do not) between two stored configs."""
    a, b = _flat(old), _flat(new)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    harmless = [k for k in changed if any(k == h or k.startswith(h + ".") for h in _HARMLESS)]
    return [k for k in changed if k not in harmless], harmless


def check_resume(cfg: StudyConfig, storage: RDBStorage) -> str | None:
    """Nothing written: a UserError when the stored study of this name was run with a study file that differs
    in a way that alters results (naming the keys); else the one line to print about harmless changes (or
    None). Called before Ray starts, so a refused rerun costs seconds."""
    try:
        existing = optuna.load_study(study_name=cfg.name, storage=storage)
    except KeyError:
        return None
    names = [o.metric for o in cfg.objectives]
    have = [d.name.lower() for d in existing.directions]
    if have != [o.direction for o in cfg.objectives] or (existing.metric_names and existing.metric_names != names):
        raise UserError(
            f"the stored study {cfg.name!r} has objectives {existing.metric_names or have}, the study file "
            f"asks for {names}; rerun with --fresh to start over (the old study is kept)",
            file=cfg.source, key="objectives")
    before = records.study_config(existing)
    if not before:  # a study from before the check: nothing to compare with
        return None
    now = stored_config(cfg)
    altering, harmless = config_changes(before, now)
    if altering:
        shown = ", ".join(altering[:6]) + (f" and {len(altering) - 6} more" if len(altering) > 6 else "")
        raise UserError(f"the study file changed since the stored study was run ({shown}), which changes results; "
                        "undo the change, or rerun with --fresh to start over (the old study is kept)",
                        file=cfg.source, key=altering[0])
    if not harmless:
        return None
    old, new = _flat(before), _flat(now)
    return "resuming with changed settings that do not alter results: " + ", ".join(
        f"{k} ({_short(old.get(k))} -> {_short(new.get(k))})" for k in harmless)


def load_or_create_study(cfg: StudyConfig, storage: RDBStorage, sampler: optuna.samplers.BaseSampler,
                         *, out: Any = None) -> optuna.Study:
    """Resume the stored study after check_resume (its harmless-changes line goes to `out`), or create it.
    The stored config is then this study file's."""
    line = check_resume(cfg, storage)
    if line and out is not None:
        print(line, file=out)
    try:
        study = optuna.load_study(study_name=cfg.name, storage=storage, sampler=sampler)
    except KeyError:
        study = optuna.create_study(study_name=cfg.name, storage=storage, sampler=sampler,
                                    directions=[o.direction for o in cfg.objectives], load_if_exists=True)
        study.set_metric_names([o.metric for o in cfg.objectives])
    records.record_study_config(study, stored_config(cfg))
    return study


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


# -- --fresh -----------------------------------------------------------------------------------------------------

def live_trials(storage: RDBStorage, study: optuna.Study) -> list[int]:
    """Numbers of RUNNING trials whose heartbeat is not stale: a driver may still be training them."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    stale = {t._trial_id for t in stale_trials(storage, running, storage.grace_period or HEARTBEAT_GRACE)}
    return [t.number for t in running if t._trial_id not in stale]


def archive_study(cfg: StudyConfig, storage: RDBStorage) -> str | None:
    """--fresh: keep the old study under '<name>-<timestamp>-<random>' and free the name. Refused while a
    live driver holds it. Copy first, delete last: a failure in between leaves the original whole (and
    at most a complete spare copy), so rerunning --fresh recovers."""
    try:
        study = optuna.load_study(study_name=cfg.name, storage=storage)
        n_trials = len(study.get_trials(deepcopy=False))
        live = live_trials(storage, study)
    except KeyError:  # no such study (or another --fresh archived it this moment): the name is free
        return None
    if live:
        raise UserError(f"--fresh: trials {', '.join(map(str, live[:5]))} of study {cfg.name!r} are running with "
                        "fresh heartbeats (another driver holds the study); stop it first, or wait for it to end",
                        key="--fresh")
    new = f"{cfg.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    try:
        optuna.copy_study(from_study_name=cfg.name, from_storage=storage, to_storage=storage, to_study_name=new)
    except optuna.exceptions.DuplicatedStudyError:  # not ours to delete
        raise UserError(f"--fresh: a study named {new!r} exists already; rerun to pick another name",
                        key="--fresh") from None
    except KeyError:  # another --fresh archived it a moment ago: the name is free, as asked
        _drop(new, storage)
        return None
    except Exception as exc:
        _drop(new, storage)
        raise UserError(f"--fresh: copying the study failed ({type(exc).__name__}: {str(exc)[:200]}); the study "
                        "is unchanged, rerun to try again", key="--fresh") from None
    if len(optuna.load_study(study_name=new, storage=storage).get_trials(deepcopy=False)) != n_trials:
        _drop(new, storage)
        raise UserError("--fresh: the study changed while it was being copied (a driver started?); the study is "
                        "unchanged, rerun to try again", key="--fresh")
    try:
        optuna.delete_study(study_name=cfg.name, storage=storage)
    except KeyError:  # another --fresh deleted it first: our copy is a complete archive all the same
        pass
    return new


def _drop(name: str, storage: RDBStorage) -> None:
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except Exception:  # nothing was created, or the database is gone: nothing more to clean
        pass
