"""storage.open: redaction, the read/write opener, the resume check and --fresh, on real SQLite storages."""
from __future__ import annotations

import io
import threading

import optuna
import pytest
import sqlalchemy
import yaml

from sksearch.config import StudyConfig, load_study
from sksearch.errors import UserError
from sksearch.storage import records as st
from sksearch.storage.open import (archive_study, config_changes, load_or_create_study, open_storage, open_study,
                                   redact_url)

# The study files below carry a password in their SQLite URL (to check it is never stored); SQLite ignores it.
pytestmark = [pytest.mark.filterwarnings("ignore:Query string argument"),
              pytest.mark.filterwarnings("ignore:DELETE statement on table")]  # two --fresh racing


@pytest.mark.parametrize("url, safe", [
    ("postgresql://u:p%40ss@host:5432/db", "postgresql://u:***@host:5432/db"),
    ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),          # an unescaped @ in the password
    ("postgresql://:pw@host/db", "postgresql://:***@host/db"),              # a password without a user
    ("postgresql+psycopg2://host/db?password=pw&sslmode=require",
     "postgresql+psycopg2://host/db?password=***&sslmode=require"),
    ("mysql+pymysql://root@127.0.0.1/test", "mysql+pymysql://root@127.0.0.1/test"),
    ("sqlite:///runs/x/optuna.db", "sqlite:///runs/x/optuna.db"),
])
def test_redact_url(url, safe):
    out = redact_url(url)
    assert out == safe
    assert "pw" not in out.replace("pwd", "") and "p@ss" not in out and "ss@" not in out


def test_unreachable_storage_is_a_user_error_without_the_password():
    with pytest.raises(UserError) as info:
        open_storage("postgresql+psycopg2://bob:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


def _study_file(tmp_path, name="s", **changes) -> StudyConfig:
    (tmp_path / "space.yaml").write_text(changes.pop("space", "base: sknet29\nsk: {G: [8, 16]}\n"))
    data = {"name": name, "search_space": "space.yaml", "output_dir": str(tmp_path / "runs"),
            "train": {"epochs": 4}, "tune": {"n_trials": 8},
            "storage": f"sqlite:///{tmp_path}/db.sqlite?password=hunter2"}
    for key, value in changes.items():
        block, _, sub = key.partition("__")
        if sub:
            data.setdefault(block, {})[sub] = value
        else:
            data[block] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_study(path)


def _create(cfg: StudyConfig) -> optuna.Study:
    return load_or_create_study(cfg, open_storage(cfg.storage_url()), optuna.samplers.RandomSampler(seed=0))


def test_the_stored_config_holds_no_password(tmp_path):
    study = _create(_study_file(tmp_path))
    stored = st.study_config(study)
    assert "hunter2" not in str(stored) and stored["storage"].endswith("?password=***")
    assert stored["trial_epochs"] == 4 and len(stored["search_space_content"]) == 16


def test_resume_refuses_a_change_that_alters_results(tmp_path):
    _create(_study_file(tmp_path))
    with pytest.raises(UserError) as info:
        _create(_study_file(tmp_path, train__epochs=5))
    msg = str(info.value)
    assert "train.epochs" in msg and "--fresh" in msg and "\n" not in msg
    # The space's CONTENT counts, not its path or formatting: reordered keys and comments are accepted...
    out = io.StringIO()
    load_or_create_study(_study_file(tmp_path, space="# same\nsk: {G: [8, 16]}\nbase: sknet29\n"),
                         open_storage(_study_file(tmp_path).storage_url()), optuna.samplers.RandomSampler(), out=out)
    # ...another value is not.
    with pytest.raises(UserError, match="search_space_content"):
        _create(_study_file(tmp_path, space="base: sknet29\nsk: {G: [8, 32]}\n"))
    with pytest.raises(UserError, match="constraints.max_macs"):
        _create(_study_file(tmp_path, constraints={"max_macs": "1G"}))


def test_resume_accepts_and_says_changes_that_do_not_alter_results(tmp_path):
    _create(_study_file(tmp_path))
    cfg = _study_file(tmp_path, tune={"n_trials": 12, "max_concurrent": 2, "sampler": {"type": "random"}})
    out = io.StringIO()
    load_or_create_study(cfg, open_storage(cfg.storage_url()), optuna.samplers.RandomSampler(), out=out)
    line = out.getvalue()
    assert line.count("\n") == 1 and "tune.n_trials (8 -> 12)" in line and "tune.max_concurrent" in line
    assert "tune.sampler.type" in line


def test_config_changes_sorts_keys():
    old = {"train": {"epochs": 4}, "tune": {"n_trials": 8}, "search_space": "a.yaml"}
    new = {"train": {"epochs": 5}, "tune": {"n_trials": 9}, "search_space": "b.yaml"}
    assert config_changes(old, new) == (["train.epochs"], ["search_space", "tune.n_trials"])


def test_fresh_keeps_the_old_study_under_another_name(tmp_path):
    cfg = _study_file(tmp_path)
    study = _create(cfg)
    for _ in range(3):
        study.tell(study.ask(), [0.5, 1.0])
    store = open_storage(cfg.storage_url())
    kept = archive_study(cfg, store)
    assert kept and kept.startswith("s-")
    assert len(optuna.load_study(study_name=kept, storage=store).trials) == 3
    assert cfg.name not in {s.study_name for s in optuna.get_all_study_summaries(store)}
    assert _create(cfg).trials == []


def test_fresh_recovers_from_a_run_that_died_between_copy_and_delete(tmp_path):
    cfg = _study_file(tmp_path)
    study = _create(cfg)
    study.tell(study.ask(), [0.5, 1.0])
    store = open_storage(cfg.storage_url())
    # What a --fresh killed after its copy leaves: the original, whole, and a complete spare copy.
    optuna.copy_study(from_study_name=cfg.name, from_storage=store, to_storage=store, to_study_name="s-spare")
    kept = archive_study(cfg, store)
    names = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(store)}
    assert names == {"s-spare": 1, kept: 1}


def test_fresh_refuses_a_study_a_live_driver_holds(tmp_path):
    cfg = _study_file(tmp_path)
    study = _create(cfg)
    store = open_storage(cfg.storage_url())
    trial = study.ask()
    store.record_heartbeat(trial._trial_id)  # a driver training it right now
    with pytest.raises(UserError) as info:
        archive_study(cfg, store)
    assert "--fresh" in str(info.value) and "running" in str(info.value)
    assert [s.study_name for s in optuna.get_all_study_summaries(store)] == [cfg.name]  # nothing copied


def test_two_fresh_at_the_same_moment_end_cleanly(tmp_path):
    cfg = _study_file(tmp_path)
    study = _create(cfg)
    study.tell(study.ask(), [0.5, 1.0])
    results, errors = [], []

    def fresh() -> None:
        try:
            results.append(archive_study(cfg, open_storage(cfg.storage_url())))
        except UserError as exc:  # a clean refusal is fine; a traceback is not
            errors.append(exc)

    threads = [threading.Thread(target=fresh) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    store = open_storage(cfg.storage_url())
    names = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(store)}
    assert cfg.name not in names
    kept = [r for r in results if r]
    assert kept and all(names[k] == 1 for k in kept) and len(results) + len(errors) == 2


def test_reading_a_study_never_writes(tmp_path):
    cfg = _study_file(tmp_path)
    with pytest.raises(UserError, match="sksearch run"):
        open_study(cfg)
    assert not (tmp_path / "db.sqlite").exists()


def test_fresh_judges_liveness_by_the_ledgers_rule(tmp_path):
    """A RUNNING trial without a heartbeat row is a driver killed right after ask once it is older than the
    grace period (Optuna's own rule would call it live for ever and block --fresh); a young one may be a
    driver between ask and its first beat, so it still blocks."""
    cfg = _study_file(tmp_path)
    study = _create(cfg)
    store = open_storage(cfg.storage_url(), heartbeat_interval=1, heartbeat_grace=2)
    study.ask()  # no heartbeat row
    with pytest.raises(UserError):
        archive_study(cfg, store)
    engine = sqlalchemy.create_engine(cfg.storage_url())
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE trials SET datetime_start = datetime(datetime_start, '-60 seconds')"))
    engine.dispose()
    assert archive_study(cfg, store)


def _open_at_once(urls: list[str], barrier) -> None:
    for url in urls:
        barrier.wait(timeout=60)  # the four open each new file at the same moment (a dead one breaks it)
        open_storage(url)  # a UserError ends this process with exit 1 (its message on stderr)


@pytest.mark.slow
def test_processes_creating_one_new_database_at_once_all_open_it(tmp_path):
    # A driver and a dashboard (or two drivers) started together on a fresh SQLite file both create
    # Optuna's tables; the one that loses the race must open the database the other made.
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    # Three races of four processes, the same four each time (starting a process costs more than a race).
    urls = [f"sqlite:///{tmp_path}/race{round_}.db" for round_ in range(3)]
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_open_at_once, args=(urls, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        if p.exitcode is None:
            p.kill()
    assert [p.exitcode for p in procs] == [0] * 4
    for url in urls:
        assert optuna.get_all_study_summaries(open_storage(url, read_only=True)) == []
