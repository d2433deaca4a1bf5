"""The main job: run (or resume) a study with Ray Tune scheduling and Optuna sampling and recording."""
from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sksearch.storage import records as st
from sksearch.storage.ledger import counts_toward_budget
from sksearch.config import StudyConfig, display_path, redact_url
from sksearch.errors import UserError
from sksearch.results.pareto import front_trials
from sksearch.search.progress import ProgressPrinter, front_table
from sksearch.search.samplers import make_sampler
from sksearch.search.space import SearchSpace

# Per-trial CSV/JSON/TensorBoard loggers cost time and disk for nothing: Optuna records every trial.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# A crashed trial reports {"error": ...} without accuracy; the searcher records it FAIL.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100000")


def make_scheduler(cfg: StudyConfig) -> Any:
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    s = cfg.tune.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    common = dict(time_attr="epoch", metric="accuracy", mode="max", max_t=cfg.max_epochs(),
                  grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    if s.type == "asha":
        return AsyncHyperBandScheduler(brackets=1, **common)
    from sksearch.search.schedulers import ParetoASHA

    return ParetoASHA(cost_attr=s.cost, **common)


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


def _probe(address: str) -> None:
    """Ray retries an address that nothing answers at for ever: check that something listens first."""
    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():  # ray://, auto: let Ray resolve them
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"nothing answers at {address} ({exc.strerror or exc}); start the head node with "
                        "`ray start --head --port PORT` or fix the address", key="--address") from None


def _init_ray(address: str | None, cfg: StudyConfig) -> None:
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():  # a Ray left connected in this process (a notebook, an earlier call)
        ray.shutdown()
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=True,
                                  logging_level="ERROR")
    if address:
        _probe(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:
            hint = ""
            if "auth" in str(exc).lower() and not os.environ.get("RAY_AUTH_MODE"):
                hint = " (the cluster uses token authentication: set RAY_AUTH_MODE=token, with its token in ~/.ray/auth_token)"
            raise UserError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}{hint}",
                            key="--address") from None
    else:
        # "local" starts a Ray of our own: a bare ray.init() would join whatever cluster the file
        # /tmp/ray/ray_current_cluster names, and wait forever if that cluster has died.
        ray.init(address="local", **kwargs)
    # Ray logs a crashed trial's traceback from its controller; the live view already reports it in one
    # line and the storage keeps its error, so keep the console readable.
    import logging

    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    try:
        _check_resources(cfg, ray.cluster_resources())
    except UserError:
        ray.shutdown()
        raise


def _check_resources(cfg: StudyConfig, have: dict[str, float]) -> None:
    """Ray waits forever for resources no node has: refuse at once instead."""
    need = cfg.tune.resources_per_trial
    if need.gpu > have.get("GPU", 0):
        raise UserError(f"each trial asks for {need.gpu:g} GPU but the Ray cluster has {have.get('GPU', 0):g}; "
                        "set tune.resources_per_trial.gpu: 0 to train on CPU, or join a cluster with GPUs",
                        file=cfg.source, key="tune.resources_per_trial.gpu")
    if need.cpu > have.get("CPU", 0):
        raise UserError(f"each trial asks for {need.cpu:g} CPUs but the Ray cluster has {have.get('CPU', 0):g}",
                        file=cfg.source, key="tune.resources_per_trial.cpu")


def _make_error_relay(searcher: Any) -> Any:
    from ray.tune import Callback

    class ErrorRelay(Callback):
        """Hands a crashed trial's error text to the searcher, which records the trial FAIL with it."""

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            msg = ""
            path = getattr(trial, "error_file", None)
            try:
                if path and Path(path).exists():
                    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
                    msg = lines[-1] if lines else ""
            except OSError:
                pass
            searcher.record_crash(trial.trial_id, msg or str(getattr(trial, "error_msg", "") or "the trial failed"))

        def __getstate__(self) -> dict:
            return {}

    return ErrorRelay()


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The report's front (full-fidelity, feasible trials), as table rows, most accurate first."""
    rows = [{"number": t.number, "label": t.user_attrs.get("label", ""),
             "accuracy": float(t.user_attrs.get("accuracy", 0.0)), "params": t.user_attrs.get("params"),
             "macs": t.user_attrs.get("macs")} for t in front_trials(study)]
    return sorted(rows, key=lambda r: -r["accuracy"])


def _budget_line(study: optuna.Study, n_trials: int) -> str:
    trials = study.get_trials(deepcopy=False)
    used = sum(counts_toward_budget(t) and t.state != TrialState.RUNNING for t in trials)
    states = {s: sum(t.state == s and counts_toward_budget(t) for t in trials)
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    infeasible = sum("infeasible" in t.user_attrs for t in trials)
    duplicates = sum("duplicate_of" in t.user_attrs for t in trials)
    return (f"{used}/{n_trials} trials done ({states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} "
            f"pruned, {states[TrialState.FAIL]} failed; {infeasible} infeasible and {duplicates} repeated specs "
            "skipped)")


def run_study(cfg: StudyConfig, *, storage: str | None = None, address: str | None = None,
              n_trials: int | None = None, fresh: bool = False, out: Any = sys.stdout) -> int:
    wall0 = time.perf_counter()
    space = SearchSpace.load(cfg.space_path())
    check_data(cfg)
    url = cfg.storage_url(storage)
    n_trials = n_trials or cfg.tune.n_trials
    out_dir = cfg.out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)

    store = st.open_storage(url)
    import ray

    # Ray (and the resource checks) before the study is created: a refused request writes nothing.
    t_ray = time.perf_counter()
    _init_ray(address, cfg)
    ray_start = time.perf_counter() - t_ray
    try:
        return _run(cfg, space, store, url, storage, n_trials, fresh, out, wall0, ray_start, out_dir)
    finally:
        ray.shutdown()


def _run(cfg: StudyConfig, space: SearchSpace, store: Any, url: str, storage: str | None, n_trials: int,
         fresh: bool, out: Any, wall0: float, ray_start: float, out_dir: Path) -> int:
    if fresh:
        kept = st.archive_study(cfg, store)
        if kept:
            print(f"--fresh: the previous study is kept as {kept!r}", file=out)
    study = st.load_or_create_study(cfg, store, make_sampler(cfg))
    print(f"study {cfg.name!r} in {redact_url(url)}", file=out)
    print(f"searching {display_path(cfg.space_path())}: " + "; ".join(space.describe()), file=out)
    print("resuming: " + _budget_line(study, n_trials) if study.get_trials(deepcopy=False) else
          f"budget: {n_trials} trials of up to {cfg.max_epochs()} epochs", file=out)

    from ray import tune

    from sksearch.search.searcher import StudySearcher
    from sksearch.search.trial import run_trial

    printer = ProgressPrinter(out)
    searcher = StudySearcher(cfg, space, study, store, n_trials=n_trials, on_event=printer)
    res = cfg.tune.resources_per_trial
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, study=cfg.model_dump(mode="json"), threads=max(1, int(res.cpu))),
        {"cpu": res.cpu, "gpu": res.gpu},
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(cfg), num_samples=-1,
                                    max_concurrent_trials=cfg.tune.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=f"ray-{stamp}", storage_path=str(out_dir.resolve()), verbose=0,
                                  callbacks=[_make_error_relay(searcher)],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    try:
        tuner.fit()
    finally:
        searcher.close()

    study = optuna.load_study(study_name=cfg.name, storage=store)
    print("", file=out)
    print(_budget_line(study, n_trials), file=out)
    print("Pareto front (full-fidelity trials):", file=out)
    print(front_table(front_rows(study)), file=out)
    report = _write_report(cfg, url, out)
    _print_overhead(study, searcher, wall0, ray_start, cfg, out)
    print(f"\nbrowse it:  sksearch dashboard {cfg.source or 'STUDY.yaml'}" +
          (f" --storage '{redact_url(url)}'" if storage else ""), file=out)
    if report:
        print(f"report:     {report}", file=out)
    if searcher.exhausted:
        print(f"\nended early: {searcher.exhausted}", file=out)
    if searcher.stop_reason:
        print(f"\nstopped: {searcher.stop_reason}", file=sys.stderr)
        return 1
    return 0


def _write_report(cfg: StudyConfig, url: str, out: Any) -> Path | None:
    try:
        from sksearch.report import write_report
    except ImportError:
        return None
    try:
        return write_report(cfg, storage_url=url)
    except Exception as exc:  # the study is safe in the storage; a report problem must not hide that
        print(f"(report not written: {type(exc).__name__}: {exc})", file=out)
        return None


def _print_overhead(study: optuna.Study, searcher: Any, wall0: float, ray_start: float, cfg: StudyConfig,
                    out: Any) -> None:
    """Share of the trial slots' wall time spent outside training (Ray start, scheduling, storage)."""
    wall = time.perf_counter() - wall0
    trained = sum(float(t.user_attrs.get("train_seconds", 0.0)) for t in study.get_trials(deepcopy=False)
                  if t.user_attrs.get("run_id") == searcher.run_id)
    slots = cfg.tune.max_concurrent
    if trained > 0:
        share = max(0.0, 1 - trained / (wall * slots))
        print(f"time: wall {wall:.1f}s (Ray start {ray_start:.1f}s); trials trained {trained:.1f}s in {slots} "
              f"slot(s); outside training {share:.0%} of slot time", file=out)
