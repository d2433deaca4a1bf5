"""The main job: run (or resume) a study with Ray Tune scheduling and Optuna sampling and recording.

run_study wires the parts: the storage (storage.open: open, resume check, --fresh), Ray
(search.ray_cluster), the searcher (search.searcher), the scheduler (search.schedulers), the console view
(search.progress) and the report (results.report).
"""
from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from sksearch.config import StudyConfig, display_path
from sksearch.errors import UserError, cause_chain
from sksearch.results.pareto import front_noise, front_trials, noisy_front_row
from sksearch.search.progress import ProgressPrinter, budget_line, front_table, overhead_line
from sksearch.search.ray_cluster import NoNodeLeft, error_relay, init_ray, worker_env
from sksearch.search.samplers import make_sampler
from sksearch.search.schedulers import make_scheduler
from sksearch.search.space import SearchSpace
from sksearch.storage import records
from sksearch.storage.ledger import counts_toward_budget
from sksearch.storage.open import (archive_study, check_resume, load_or_create_study, metric_names, open_storage,
                                   open_study, redact_url)


def check_data(cfg: StudyConfig) -> None:
    """Before Ray starts: the data set is there (or downloaded once, here, not by every trial at once)."""
    ds = cfg.dataset
    try:
        if ds.name in ("cifar10", "cifar100"):
            from sksearch.data.cifar import ensure_cifar

            ensure_cifar(ds.name, Path(ds.root), download=ds.download)
        elif ds.name == "imagenet_subset":
            ds.geometry()
            if not (Path(ds.root) / "val").is_dir():
                raise UserError(f"no validation folder at {Path(ds.root) / 'val'} (expected val/<wnid>/*.JPEG)",
                                key="dataset.root")
    except UserError as exc:
        raise exc.in_file(cfg.source) if cfg.source else exc


def run_study(cfg: StudyConfig, *, storage: str | None = None, address: str | None = None,
              n_trials: int | None = None, fresh: bool = False, confirm: int | None = None,
              out: Any = sys.stdout) -> int:
    """Run (or resume) the study. With `confirm` K, train no search trial: retrain each member of the current
    full-fidelity front until it has K seed confirmations (off the budget and off the front)."""
    wall0 = time.perf_counter()
    space = SearchSpace.load(cfg.space_path())
    check_data(cfg)
    url = cfg.storage_url(storage)
    if confirm is not None:  # before anything is written
        study = _check_confirm(cfg, storage, confirm, n_trials_given=n_trials is not None, fresh=fresh)
        from sksearch.search.searcher import confirmation_plan

        if not confirmation_plan(study, cfg, confirm):  # a rerun: nothing to train, so no Ray
            print(f"--confirm {confirm}: every front member has its {confirm} seed confirmation(s) already",
                  file=out)
            _print_front(study, cfg, out)
            return 0
    n_trials = n_trials or cfg.tune.n_trials
    out_dir = cfg.out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)

    store = open_storage(url, retry_seconds=cfg.storage_retry_seconds())
    if not fresh:  # an edited study file is refused before Ray starts
        changed = check_resume(cfg, store)
        done = _spent_study(cfg, store, n_trials) if confirm is None else None
        if done is not None:  # a rerun of a finished study: nothing to train, so no Ray
            if changed:
                print(changed, file=out)
            print(f"study {cfg.name!r} in {redact_url(url)}: nothing left to train", file=out)
            _summarise(cfg, done, url, storage, n_trials, out)
            return 0
    import ray

    # Ray (and the resource checks) before the study is created: a refused request writes nothing.
    t_ray = time.perf_counter()
    init_ray(address, cfg)
    ray_start = time.perf_counter() - t_ray
    try:
        return _run(cfg, space, store, url, storage, n_trials, fresh, out, wall0, ray_start, out_dir, confirm)
    finally:
        ray.shutdown()


def _run(cfg: StudyConfig, space: SearchSpace, store: Any, url: str, storage: str | None, n_trials: int,
         fresh: bool, out: Any, wall0: float, ray_start: float, out_dir: Path, confirm: int | None = None) -> int:
    if fresh:
        kept = archive_study(cfg, store)
        if kept:
            print(f"--fresh: the previous study is kept as {kept!r}", file=out)
    study = load_or_create_study(cfg, store, make_sampler(cfg), out=out)
    print(f"study {cfg.name!r} in {redact_url(url)}", file=out)
    print(f"searching {display_path(cfg.space_path())}: " + "; ".join(space.describe()), file=out)
    print("resuming: " + budget_line(study.get_trials(deepcopy=False), n_trials) if study.get_trials(deepcopy=False) else
          f"budget: {n_trials} trials of up to {cfg.max_epochs()} epochs", file=out)

    from ray import tune

    from sksearch.search.searcher import StudySearcher
    from sksearch.search.trial import run_trial

    _clear_staging(study, cfg, out)
    latency_table = prepare_latency(cfg, space, study, store, out)
    printer = ProgressPrinter(out)
    searcher = StudySearcher(cfg, space, study, store, n_trials=n_trials, on_event=printer, confirm=confirm)
    scheduler = make_scheduler(cfg)
    if confirm is not None:
        from ray.tune.schedulers import FIFOScheduler

        from sksearch.search.searcher import confirmation_plan

        todo = confirmation_plan(study, cfg, confirm)
        print(f"--confirm {confirm}: {len(todo)} seed confirmations to train for the "
              f"{len(front_trials(study))} front members (seeds {cfg.train.seed + 1}..{cfg.train.seed + confirm}; "
              "off the budget, never stopped early)", file=out)
        scheduler = FIFOScheduler()  # a confirmation measures the full-budget accuracy: never prune one
    res = cfg.tune.resources_per_trial
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, study=cfg.model_dump(mode="json"), threads=max(1, int(res.cpu)),
                             env=worker_env()),
        {"cpu": res.cpu, "gpu": res.gpu},
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    max_concurrent_trials=cfg.tune.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=f"ray-{stamp}", storage_path=str(out_dir.resolve()), verbose=0,
                                  callbacks=[error_relay(searcher)],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    try:
        tuner.fit()
    except Exception as exc:
        _raise_storage_outage(store)
        if not _caused_by(exc, NoNodeLeft):
            raise
        # the searcher's stop_reason names it; the summary below prints it and the run exits 1
    finally:
        searcher.close()
        if latency_table is not None:
            latency_table.detach()
    _raise_storage_outage(store)  # an outage Ray Tune logged and went on from

    study = optuna.load_study(study_name=cfg.name, storage=store)
    _clear_staging(study, cfg, out)  # again: a killed driver's trials were RUNNING at the start, failed since
    print("", file=out)
    _summarise(cfg, study, url, storage, n_trials, out, overhead=lambda trials: overhead_line(
        trials, searcher.run_id, time.perf_counter() - wall0, ray_start, cfg.tune.max_concurrent))
    if latency_table is not None and latency_table.measured_while_training:
        print(f"latency: {latency_table.measured_while_training} units were timed while trials trained (not in the "
              f"pre-sample of latency.presample = {cfg.latency_target().presample} specs); their figures may be high",
              file=out)
    if searcher.exhausted:
        print(f"\nended early: {searcher.exhausted}", file=out)
    if searcher.stop_reason:
        print(f"\nstopped: {searcher.stop_reason}", file=sys.stderr)
        return 1
    return 0


def _clear_staging(study: optuna.Study, cfg: StudyConfig, out: Any) -> None:
    cleared = records.clear_staging(study, cfg)
    if cleared:
        print(f"removed {cleared} staging folder(s) of trials that no longer run (a driver stopped mid-trial left "
              "them)", file=out)


def prepare_latency(cfg: StudyConfig, space: SearchSpace, study: optuna.Study, store: Any, out: Any) -> Any:
    """Before any trial starts (so that no training shares the cores being timed): share the study's stored
    latency table, time the units of latency.presample specs drawn from the space, and time `check` whole
    networks: they fit the target's scale (latency.calibrate) once per study, and later runs check against
    it. Units first met later are timed at proposal, and counted."""
    target = cfg.latency_target()
    if target is None:
        return None
    import itertools

    from sksearch.latency import Timing, calibrate, check, table_for
    from sksearch.search.dryrun import iter_samples

    table = table_for(target)
    tid, study_id = table.target.id, study._study_id
    stored = records.latency_units(store, study_id, tid)
    table.merge({k: Timing.from_list(v) for k, v in stored.items()})
    table.share(lambda key, timing: records.record_latency_unit(store, study_id, tid, key, timing.to_list()),
                already=set(stored))
    # One scale per study, so that every trial's latency_ms is on one footing: the first driver's.
    study_scale = records.latency_scale(store, study_id, tid)
    table.scale = study_scale or table.scale
    table.training, table.measured_while_training = False, 0
    start, before = time.perf_counter(), table.measured
    specs, seen = [], set()
    for _, feas in itertools.islice(iter_samples(cfg, space=space), target.presample):
        if feas.spec is not None and feas.spec.identity() not in seen:  # iter_samples predicted it: units timed
            seen.add(feas.spec.identity())
            specs.append(feas.spec)
    checked = specs[:target.check]
    if study_scale is None and table.scale is None and checked:
        fit = calibrate(table, checked)
        verdict = fit.describe()
        # a fit refused as too noisy settles the study on the plain sum (1.0): every trial on one footing
        records.record_latency_scale(store, study_id, tid, fit.scale or 1.0)
    else:
        verdict = check(table, checked).describe() + (f" (scale {table.scale:g})" if table.scale else "")
        if study_scale is None:
            records.record_latency_scale(store, study_id, tid, table.scale or 1.0)
    print(f"latency on {table.target.describe()}: {len(table.units)} units in the table, "
          f"{table.measured - before} timed now ({time.perf_counter() - start:.1f} s); {verdict}", file=out)
    table.training = True
    return table


def _caused_by(exc: BaseException, kind: type) -> bool:
    """Whether `kind` is in the exception's chain, or named in its text (Ray Tune re-raises some errors of
    its callbacks as its own, keeping only their message)."""
    return any(isinstance(e, kind) or kind.__name__ in str(e) for e in cause_chain(exc))


def _raise_storage_outage(store: Any) -> None:
    """The storage outage that ended the run (storage/retry.py), as its own one-line error: Ray Tune wraps or
    logs what a searcher raises, so the storage itself says whether it gave up."""
    gave_up = getattr(store, "gave_up", None)
    if gave_up is not None:
        raise gave_up from None


def _spent_study(cfg: StudyConfig, store: Any, n_trials: int) -> optuna.Study | None:
    """The stored study when its budget is used and no trial of it is RUNNING (else None: there is work)."""
    try:
        study = optuna.load_study(study_name=cfg.name, storage=store)
    except KeyError:
        return None
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.RUNNING for t in trials) or sum(map(counts_toward_budget, trials)) < n_trials:
        return None
    return study


def _summarise(cfg: StudyConfig, study: optuna.Study, url: str, storage: str | None, n_trials: int, out: Any,
               overhead: Callable[[list], str | None] = lambda trials: None) -> None:
    """What a run ends with: the budget, the front, the report, the time outside training (measured after the
    report, which counts), and where to look next."""
    trials = study.get_trials(deepcopy=False)
    print(budget_line(trials, n_trials), file=out)
    _print_front(study, cfg, out)
    report = _write_report(cfg, url, out)
    line = overhead(trials)
    if line:
        print(line, file=out)
    print(f"\nbrowse it:  sksearch dashboard {cfg.source or 'STUDY.yaml'}" +
          (f" --storage '{redact_url(url)}'" if storage else ""), file=out)
    if report:
        print(f"report:     {report}", file=out)
    pointer = _attention_pointer(study, cfg)
    if pointer:
        print(pointer + (f" --storage '{redact_url(url)}'" if storage else ""), file=out)


def _print_front(study: optuna.Study, cfg: StudyConfig, out: Any) -> None:
    """The front, best first, with its spread over seeds where `--confirm` retrained it."""
    trials = study.get_trials(deepcopy=False)
    names = metric_names(study, cfg)
    front = front_trials(study, trials)
    noise = front_noise(front, trials, names)
    rows = [noisy_front_row(t, noise, names) for t in front]
    print("Pareto front (full-fidelity trials):", file=out)
    print(front_table(sorted(rows, key=lambda r: -(r["accuracy"] or 0.0)), noise.pooled_sd, noise.threshold),
          file=out)


def _check_confirm(cfg: StudyConfig, storage: str | None, confirm: int, *, n_trials_given: bool,
                   fresh: bool) -> optuna.Study:
    """--confirm retrains the front of a study already run; it trains no new search trial (so it refuses
    --n-trials: run the search first, then confirm) and needs the old study (so it refuses --fresh)."""
    if confirm < 1:
        raise UserError("--confirm K needs K >= 1", key="--confirm")
    if n_trials_given or fresh:
        flag = "--fresh" if fresh else "--n-trials"
        raise UserError(f"--confirm retrains the current front and runs no search, so it does not take {flag}: "
                        "run the search first, then `sksearch run STUDY.yaml --confirm K`", key="--confirm")
    study, _ = open_study(cfg, storage)
    if not front_trials(study):
        raise UserError(f"study {cfg.name!r} has no full-fidelity trial yet: nothing to confirm "
                        "(run the search first)", key="--confirm")
    return study


def _attention_pointer(study: optuna.Study, cfg: StudyConfig) -> str | None:
    """Where to look next: `sksearch attention` on the best front trial whose SK units have attention."""
    from sksearch.results.attention import attention_pointer

    try:
        return attention_pointer(study, cfg)
    except Exception:  # a hint only: the study is safe in the storage whatever happens here
        return None


def _write_report(cfg: StudyConfig, url: str, out: Any) -> Path | None:
    from sksearch.results.report import write_report

    try:
        return write_report(cfg, storage_url=url)
    except Exception as exc:  # the study is safe in the storage; a report problem must not hide that
        print(f"(report not written: {type(exc).__name__}: {exc})", file=out)
        return None
