"""The messages between the search's parts, typed in one place:

- TrialConfig: what the searcher hands Ray for one trial (suggest's return), read by search.trial.run_trial;
- EpochResult: what a trial reports to Ray after each epoch (or once, with `error`, when it crashed), read by
  the searcher and the schedulers (metric ACCURACY, time attribute EPOCH, cost attributes params/macs/latency);
- the progress events the searcher sends to the live view (search.progress.ProgressPrinter).

Write them with the constructors here and read them through `read_result`; never index the dicts by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, NotRequired, TypedDict, Union

ACCURACY = "accuracy"  # the metric every scheduler stops on (maximised)
EPOCH = "epoch"        # their time attribute
RESUMED_AT = "resumed_at"  # a continuation's results: the epoch its paused trial stopped at (rungs up to it passed)


class TrialConfig(TypedDict):
    trial_number: int
    spec: dict[str, Any]
    params: int
    macs: int
    max_epochs: int
    latency: float         # predicted milliseconds on the study's latency target (0.0 when it uses none)
    seed: int              # the training seed: the study's train.seed, another one for a seed confirmation
    # A continuation only: {"state": the paused trial's training state (a path), "epoch": the epochs it trained}.
    resume: NotRequired[dict[str, Any]]
    pause_at: NotRequired[list[int]]  # tune.scheduler.pause: the rung epochs where the worker stages its state


class EpochResult(TypedDict, total=False):
    accuracy: float
    epoch: int
    train_loss: float
    images_per_second: float
    epoch_seconds: float
    train_seconds: float
    params: int
    macs: int
    latency: float         # the trial's predicted latency, a cost known before training (pareto_asha's cost)
    trial_number: int
    node: str
    compile_seconds: float  # torch.compile time, timed apart from training (epoch 1)
    weights: str           # the staged state dict (a path under the artifact store), when this epoch kept one
    state: str             # the staged training state at a rung epoch (tune.scheduler.pause)
    resumed_at: int        # a continuation: the epoch it resumed from (RESUMED_AT)
    error: str             # set (alone with the trial's identity) when the trial crashed
    error_kind: str        # with error: "oom" (device out of memory) or "crash" ("node_lost" is the driver's call)


def trial_config(number: int, spec: dict[str, Any], params: int, macs: int, max_epochs: int, *,
                 seed: int, latency: float | None = None, resume: dict[str, Any] | None = None,
                 pause_at: list[int] | None = None) -> TrialConfig:
    config = TrialConfig(trial_number=number, spec=spec, params=int(params), macs=int(macs), max_epochs=max_epochs,
                         latency=float(latency or 0.0), seed=int(seed))
    if resume is not None:
        config["resume"] = resume
    if pause_at:
        config["pause_at"] = list(pause_at)
    return config


def epoch_result(*, accuracy: float, epoch: int, train_loss: float, images_per_second: float, epoch_seconds: float,
                 train_seconds: float, params: int, macs: int, trial_number: int, node: str,
                 compile_seconds: float = 0.0, weights: str | None = None, latency: float = 0.0,
                 state: str | None = None, resumed_at: int = 0) -> EpochResult:
    result = EpochResult(accuracy=accuracy, epoch=epoch, train_loss=train_loss, images_per_second=images_per_second,
                         epoch_seconds=epoch_seconds, train_seconds=train_seconds, params=params, macs=macs,
                         latency=latency, trial_number=trial_number, node=node, compile_seconds=compile_seconds)
    if weights is not None:
        result["weights"] = weights
    if state is not None:
        result["state"] = state
    if resumed_at:
        result[RESUMED_AT] = int(resumed_at)
    return result


def error_result(error: str, *, params: int, macs: int, trial_number: int, node: str,
                 error_kind: str = "crash", latency: float = 0.0) -> EpochResult:
    return EpochResult(error=error, error_kind=error_kind, params=params, macs=macs, latency=latency,
                       trial_number=trial_number, node=node)


@dataclass(frozen=True)
class Reported:
    """One result as the driver reads it back from Ray (Ray adds training_iteration and more)."""

    accuracy: float | None
    epoch: int | None
    error: str | None
    error_kind: str | None  # "oom" or "crash", with error
    train_seconds: float | None
    images_per_second: float | None
    node: str | None
    weights: str | None     # the staged weights of this epoch, for the driver to keep
    state: str | None = None  # the staged training state of this (rung) epoch, kept if the trial is paused
    resumed_at: int = 0     # a continuation: the epoch it resumed from


def read_result(result: Mapping[str, Any] | None) -> Reported:
    r = result or {}
    epoch = r.get(EPOCH, r.get("training_iteration"))
    acc = r.get(ACCURACY)
    return Reported(accuracy=None if acc is None else float(acc), epoch=None if epoch is None else int(epoch),
                    error=r.get("error"), error_kind=r.get("error_kind"), train_seconds=_float(r.get("train_seconds")),
                    images_per_second=_float(r.get("images_per_second")), node=r.get("node"),
                    weights=r.get("weights"), state=r.get("state"), resumed_at=int(r.get(RESUMED_AT) or 0))


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


# -- progress events (searcher -> live view) ------------------------------------------------------------------

@dataclass(frozen=True)
class Started:
    number: int
    label: str
    params: int
    macs: int


@dataclass(frozen=True)
class EpochDone:
    number: int
    label: str
    epoch: int
    max_epochs: int
    accuracy: float


@dataclass(frozen=True)
class Ended:
    number: int
    label: str
    state: str             # COMPLETE, PRUNED or FAIL
    epochs_done: int
    accuracy: float | None
    error: str | None


@dataclass(frozen=True)
class Repeated:
    number: int
    label: str
    of: int                # the full-fidelity twin whose result was copied


@dataclass(frozen=True)
class Infeasible:
    number: int
    label: str
    reason: str


Event = Union[Started, EpochDone, Ended, Repeated, Infeasible]
EventSink = Callable[[Event], None]
