"""One trial, as Ray Tune runs it in a worker: build the spec, train it, report every epoch.

The worker never touches the Optuna storage: it reports to Ray, and the driver's searcher records.
"""
from __future__ import annotations

import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ray import tune

from sksearch.config import StudyConfig
from sksearch.search import protocol
from sksearch.spec import ArchSpec
from sksearch.storage.records import STATE_FILE, WEIGHTS_FILE, staging_folder


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return text[:500]


def error_fields(exc: BaseException, gpu_share: float = 0) -> dict[str, str]:
    """The keys a failed trial reports: "error" (one line) and "error_kind": "oom" for a device out-of-memory
    error (the driver records its reason and does not count it as a crash toward max_failures), else
    "crash"."""
    from sksearch.training.common import is_oom

    if is_oom(exc):
        share = f" (the trial's share of the GPU, tune.resources_per_trial.gpu = {gpu_share:g}, may be too small)" \
            if 0 < gpu_share < 1 else ""
        return {"error": "out of memory" + share + ": " + _one_line(exc), "error_kind": "oom"}
    return {"error": _one_line(exc), "error_kind": "crash"}


def injected_fault(trial_number: int) -> str | None:
    """Chaos testing: SKSEARCH_INJECT_FAULT="3:raise,5:exit,6:nan,7:oom,8:hold" makes trial 3 raise after its first
    epoch, trial 5's process die (as an out-of-memory kill would), trial 6's loss become NaN, trial 7 raise a CUDA
    out-of-memory error, and trial 8 wait after its first epoch's report until the file SKSEARCH_RELEASE names
    exists (a test then acts on a trial known to be mid-training). Off unless set."""
    for item in os.environ.get("SKSEARCH_INJECT_FAULT", "").split(","):
        num, _, kind = item.partition(":")
        if num.strip().isdigit() and int(num) == trial_number:
            return kind.strip() or "raise"
    return None


def _hold(timeout: float = 600) -> None:
    """The "hold" fault: wait (at most `timeout` s) until the file SKSEARCH_RELEASE names exists."""
    name = os.environ.get("SKSEARCH_RELEASE")
    if not name:
        raise RuntimeError("the injected fault 'hold' needs SKSEARCH_RELEASE, the file that releases the trial")
    deadline = time.monotonic() + timeout
    while not Path(name).exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def _node_name() -> str:
    import ray

    try:
        ctx = ray.get_runtime_context()
        return f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}"
    except Exception:
        return "unknown"


def keeps_weights(keep: str, epoch: int, max_epochs: int) -> bool:
    """Whether this epoch's weights are staged (tune.keep_weights). Before its report: a trial that Ray stops
    gets the stop as an exception from tune.report, so "all" stages every epoch and "full" the last one."""
    return keep == "all" or (keep == "full" and epoch >= max_epochs)


def stage_weights(model: Any, folder: Path) -> str | None:
    """Save the model's state dict (on the CPU, loadable with weights_only=True) as folder/weights.pt, whole
    or not at all; the driver keeps it as the trial's artifact and removes it. A store that cannot take it
    (full, read-only) costs the weights, not the trial: None, and one line on stderr."""
    import torch

    path = folder / WEIGHTS_FILE
    tmp = folder / f".{WEIGHTS_FILE}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        print(f"sksearch: the trial's weights were not staged in {folder}: {exc}", file=sys.stderr, flush=True)
        return None
    return str(path)


def stage_state(result: Any, folder: Path) -> str | None:
    """A paused trial's training state (tune.scheduler.pause) as folder/state.pt, whole or not at all; the
    driver keeps it if the scheduler stops the trial at this epoch. A store that cannot take it: None (the
    trial is then an ordinary pruned one), and one line on stderr."""
    path = folder / STATE_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        result.save_state(path)
    except OSError as exc:
        print(f"sksearch: the trial's training state was not staged in {folder}: {exc}", file=sys.stderr, flush=True)
        return None
    return str(path)


def train_as_trial(cfg: StudyConfig, spec: ArchSpec, *, seed: int, epochs: int, device: Any,
                   on_epoch: Any = None, resume_from: str | Path | None = None) -> Any:
    """Train `spec` exactly as a trial of study `cfg` with training seed `seed` does (the same data, batch
    order and recipe), so a curve recorded outside Ray (bench/sk_table.py) is the curve `sksearch run` gives.
    resume_from: a paused trial's training state, to continue from the epoch after it."""
    from sksearch.data import make_data
    from sksearch.training.loop import train_trial

    recipe = cfg.train.model_copy(update={"seed": seed})
    data = make_data(cfg.dataset, batch_size=recipe.batch_size, device=device, seed=seed)
    return train_trial(spec, data, recipe, epochs=epochs, device=device, on_epoch=on_epoch, resume_from=resume_from)


def run_trial(config: dict[str, Any], study: dict[str, Any], threads: int, env: dict[str, str] | None = None) -> None:
    """Ray Tune function trainable. `config` comes from StudySearcher.suggest(); `study` is the StudyConfig
    as a dict; its paths are absolute (StudyConfig resolves them at load), so the worker's directory does not matter.
    `env`: the driver's ray_cluster.worker_env(), set in this worker (Ray Tune reads its thread timeout there when
    it reuses the worker for the next trial)."""
    os.environ.update(env or {})
    import torch

    from sksearch.training.common import cap_memory, release_memory, reset_compiler, trial_device
    from sksearch.training.loop import TrainingDiverged

    cfg = StudyConfig.model_validate(study)
    # A seed confirmation (`run --confirm`) trains the same spec with another training seed.
    train_cfg = cfg.train.model_copy(update={"seed": int(config.get("seed", cfg.train.seed))})
    torch.set_num_threads(max(1, threads))
    spec = ArchSpec.from_dict(config["spec"])
    extra = {"params": config["params"], "macs": config["macs"], "latency": float(config.get("latency", 0.0)),
             "trial_number": config["trial_number"],
             "node": _node_name()}
    started = time.perf_counter()
    reporting = False
    fault = injected_fault(int(config["trial_number"]))
    resume = config.get("resume")  # a continuation of a paused trial: its training state and epochs done
    resumed_at = int(resume["epoch"]) if resume else 0
    pause_at = set(config.get("pause_at") or ())
    staging = staging_folder(cfg, int(config["trial_number"]))

    def on_epoch(r: Any) -> None:
        nonlocal reporting
        if fault == "raise":
            raise RuntimeError("injected fault (SKSEARCH_INJECT_FAULT)")
        if fault == "exit":
            os._exit(3)
        if fault == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory (injected by SKSEARCH_INJECT_FAULT)")
        if fault == "nan":
            raise TrainingDiverged(f"loss is nan at epoch {r.epoch} (injected by SKSEARCH_INJECT_FAULT)")
        if not math.isfinite(r.val_accuracy):
            raise FloatingPointError(f"validation accuracy is {r.val_accuracy} at epoch {r.epoch}")
        weights = (stage_weights(r.model, staging) if r.model is not None
                   and keeps_weights(cfg.tune.keep_weights, r.epoch, config["max_epochs"]) else None)
        # At a rung the scheduler may stop the trial on this very report: stage its state first.
        state = stage_state(r, staging) if r.epoch in pause_at and r.save_state is not None else None
        reporting = True  # an exception from tune.report is Ray stopping us: let it through
        tune.report(protocol.epoch_result(accuracy=r.val_accuracy, epoch=r.epoch, train_loss=r.train_loss,
                                          images_per_second=r.images_per_second, epoch_seconds=r.seconds,
                                          train_seconds=time.perf_counter() - started, **extra,
                                          compile_seconds=r.compile_seconds,  # issue 14: compiling timed apart
                                          weights=weights, state=state, resumed_at=resumed_at))
        reporting = False
        if fault == "hold" and r.epoch == 1:
            _hold()

    gpu_share = cfg.tune.resources_per_trial.gpu
    device = torch.device("cpu")
    try:
        device = trial_device(gpu_share)  # gpu: 0 trains on the CPU even where a GPU is visible
        cap_memory(device, gpu_share)     # a fractional share: this trial's slice of the GPU's memory
        train_as_trial(cfg, spec, seed=train_cfg.seed, epochs=config["max_epochs"], device=device, on_epoch=on_epoch,
                       resume_from=resume["state"] if resume else None)
    except Exception as exc:
        if reporting:
            raise
        # A crash is this trial's result: the driver records it FAIL with this line, and the study goes on.
        traceback.print_exc()
        tune.report(protocol.error_result(**error_fields(exc, gpu_share), **extra))
    finally:
        # A reused worker runs the next trial in this process: free this one's memory and compiled graphs.
        if cfg.train.compile is not False:
            reset_compiler()
        release_memory(device)
