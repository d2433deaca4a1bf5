"""Open a finished (or running) study for reading: the report and the exporter never create or change one.

A plain `optuna.load_study` on a SQLite URL whose file does not exist silently creates an empty database;
here a missing file or study name is a UserError that says what to run first.
"""
from __future__ import annotations

import logging
from pathlib import Path

import optuna
from optuna.storages import RDBStorage

from sksearch.config import StudyConfig, redact_url
from sksearch.errors import UserError

logging.getLogger("optuna").setLevel(logging.WARNING)


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:/// URL, else None."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    return None


def open_study(cfg: StudyConfig, storage_url: str | None = None) -> tuple[optuna.Study, str]:
    """The study named cfg.name in its storage (--storage beats SKSEARCH_STORAGE beats the study file);
    returns (study, url). Nothing is written."""
    url = cfg.storage_url(storage_url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise UserError(f"no study storage at {path}; run `sksearch run {cfg.source or 'STUDY.yaml'}` first "
                        f"(or pass --storage URL)", file=cfg.source, key="storage")
    try:
        # skip_table_creation: reading must not migrate or create anything in a shared database.
        storage = RDBStorage(url, skip_table_creation=True)
    except Exception as exc:  # bad URL, missing driver, server down
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot open the storage {redact_url(url)}: {msg}", file=cfg.source, key="storage") from None
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
