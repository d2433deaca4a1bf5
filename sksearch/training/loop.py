"""Train one trial: build the spec's network, run the recipe, evaluate on the validation split each epoch.

Choices worth knowing (the shared pieces live in training/common.py):
- SGD with momentum (Nesterov optional); weight decay on conv and linear weights only.
- The lr schedule is defined per step over the recipe's FULL budget (recipe.epochs), even when fewer
  epochs are run, so a trial stopped early has seen exactly the first part of a full trial's schedule.
  step: lr / 10 at 50% and again at 75% of the steps; cosine: half cosine to zero; constant. A linear
  warm-up over warmup_epochs multiplies any of them.
- Mixed precision (recipe.amp) on CUDA: bf16 on Ampere or newer, fp16 with loss scaling on older GPUs;
  cudnn autotuning; channels_last (recipe.channels_last) on every device, as it is faster on CPU too.
  On CPU the run is deterministic: the same recipe.seed and data seed give the same history.
- recipe.compile: torch.compile the training step (True / "default", "max-autotune"), or capture it in
  CUDA graphs ("reduce-overhead": launch-bound small nets on a GPU). Evaluation runs the eager module. The
  first steps, which compile, are timed apart (compile_seconds) and left out of images_per_second.
- A non-finite loss raises TrainingDiverged. The check costs no GPU sync per step: losses collect in a
  device buffer that is inspected every few steps (every step on CPU, where it is free).
- images_per_second counts the training loop only (no evaluation, no compiling), with the device
  synchronised at both ends.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from sksearch.config import TrainConfig
from sksearch.data import DataBundle
from sksearch.errors import UserError
from sksearch.models import build_model
from sksearch.spec import ArchSpec
from sksearch.training import common
from sksearch.training.common import (amp_dtype, autocast, evaluate, grad_scaler, make_schedule,
                                      load_checkpoint, mark_step, memory_format, pick_device, reset_compiler,
                                      save_checkpoint, setup_backend, sgd_step, sync, trial_milestones,
                                      warmup_steps_for)

CHECK_EVERY_CUDA = 25  # steps between non-finite-loss checks on an accelerator (each check syncs)


@dataclass
class EpochResult:
    epoch: int                 # 1-based
    train_loss: float          # mean over the epoch's steps
    val_accuracy: float        # top-1 on data.val, in [0, 1]
    images_per_second: float   # training loop only, compiling steps excluded
    seconds: float             # the whole epoch, evaluation and compiling included
    compile_seconds: float = 0.0  # the compiling steps of this epoch (epoch 1 with recipe.compile)
    model: nn.Module | None = field(default=None, repr=False, compare=False)  # the network, for on_epoch to save
    # Writes the whole training state after this epoch (weights, optimizer, schedule, loss scaler) to a path,
    # for train_trial(resume_from=...) to continue exactly where it stopped (a paused trial).
    save_state: Callable[[Path], None] | None = field(default=None, repr=False, compare=False)


@dataclass
class TrainResult:
    epochs_done: int
    val_accuracy: float        # after the last epoch run
    history: list[EpochResult]
    train_seconds: float       # wall time of all epochs, evaluation and compiling included
    images_per_second: float   # training images / training-loop seconds, over all epochs, compiling excluded
    compile_seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False, compare=False)  # the trained network


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def make_optimizer(model: nn.Module, recipe: TrainConfig) -> torch.optim.SGD:
    return common.make_optimizer(model, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                                 weight_decay=recipe.weight_decay)


def trial_schedule(optimizer: torch.optim.Optimizer, recipe: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """recipe.schedule over the recipe's full budget (recipe.epochs), stepped per iteration."""
    total = recipe.epochs * steps_per_epoch
    return make_schedule(optimizer, kind=recipe.schedule, total_steps=total,
                         warmup_steps=round(recipe.warmup_epochs * steps_per_epoch),
                         milestones=trial_milestones(total), gamma=0.1)


def train_trial(spec: ArchSpec, data: DataBundle, recipe: TrainConfig, *, epochs: int | None = None,
                device: torch.device | None = None, dtype: torch.dtype | None | str = "auto",
                on_epoch: Callable[[EpochResult], None] | None = None,
                resume_from: str | Path | None = None) -> TrainResult:
    """Train spec's network on data.train for `epochs` (default recipe.epochs) epochs of recipe's schedule,
    evaluating on data.val after each and passing the result to on_epoch (whose exceptions propagate: Ray
    Tune stops a trial that way). dtype: the autocast dtype; "auto" picks it from recipe.amp and the device
    (tests pass torch.bfloat16 to run CPU autocast). resume_from: a state an EpochResult.save_state wrote;
    training goes on from the epoch after it (the data order is pinned per epoch, so on the CPU the curve is
    the one an uninterrupted run gives); the history holds the new epochs only."""
    device = device or pick_device()
    epochs = recipe.epochs if epochs is None else epochs
    steps_per_epoch = len(data.train)  # type: ignore[arg-type]
    if steps_per_epoch == 0:
        raise UserError(f"the training split has {data.n_train} images, fewer than one batch", key="train.batch_size")
    setup_backend(device)
    if dtype == "auto":
        dtype = amp_dtype(device, recipe.amp)
    mode = recipe.compile
    if mode is not False:
        reset_compiler()  # a reused worker: the last trial's graphs must not count toward this one's limit

    torch.manual_seed(recipe.seed)  # the initial weights
    fmt = memory_format(recipe.channels_last)
    model = build_model(spec).to(device).to(memory_format=fmt)
    optimizer = make_optimizer(model, recipe)
    scheduler = trial_schedule(optimizer, recipe, steps_per_epoch)
    scaler = grad_scaler(device, dtype)  # type: ignore[arg-type]
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    step_fn = common.compile_model(model, mode)
    check_every = CHECK_EVERY_CUDA if device.type != "cpu" else 1
    warmup_left = warmup_steps_for(mode)
    done = _restore_state(resume_from, model, optimizer, scheduler, scaler) if resume_from is not None else 0

    def save_state(path: Path, epoch: int) -> None:
        save_checkpoint(path, model, optimizer, epoch,
                        extra={"scheduler": scheduler.state_dict(), "scaler": scaler.state_dict()})

    history: list[EpochResult] = []
    train_images = 0
    loop_seconds = compile_total = 0.0
    start = time.perf_counter()
    for epoch in range(done + 1, epochs + 1):
        epoch_start = time.perf_counter()
        if hasattr(data.train, "set_epoch"):
            data.train.set_epoch(epoch - 1)  # type: ignore[union-attr]
        model.train()
        losses = torch.zeros(steps_per_epoch, device=device)
        seen = checked = 0
        compile_seconds = 0.0
        sync(device)
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(data.train):
            x = x.contiguous(memory_format=fmt)  # a no-op when the loader already made it so
            mark_step(mode)
            with autocast(device, dtype):  # type: ignore[arg-type]
                loss = criterion(step_fn(x), y)
            sgd_step(loss, optimizer, scaler, scheduler)
            losses[i] = loss.detach()
            if warmup_left > 0:  # this step compiled: time it apart from the training throughput
                warmup_left -= 1
                sync(device)
                now = time.perf_counter()
                compile_seconds += now - t0
                t0 = now
            else:
                seen += y.shape[0]
            if (i + 1) % check_every == 0 or i + 1 == steps_per_epoch:
                _check_finite(losses, checked, i + 1, epoch)
                checked = i + 1
        sync(device)
        t_train = time.perf_counter() - t0
        train_images += seen
        loop_seconds += t_train
        compile_total += compile_seconds
        val_acc = evaluate(model, data.val, device, dtype=dtype, memory_format=fmt).accuracy  # type: ignore[arg-type]
        result = EpochResult(epoch=epoch, train_loss=losses.mean().item(), val_accuracy=val_acc,
                             images_per_second=seen / t_train if t_train > 0 and seen else 0.0,
                             seconds=time.perf_counter() - epoch_start, compile_seconds=compile_seconds,
                             model=model, save_state=functools.partial(save_state, epoch=epoch))
        history.append(result)
        if on_epoch is not None:
            on_epoch(result)
    return TrainResult(epochs_done=len(history), val_accuracy=history[-1].val_accuracy if history else 0.0,
                       history=history, train_seconds=time.perf_counter() - start,
                       images_per_second=train_images / loop_seconds if loop_seconds > 0 else 0.0,
                       compile_seconds=compile_total, model=model)


def _restore_state(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler) -> int:
    """Load a paused trial's training state in place; the epochs it had trained."""
    got = load_checkpoint(path, model, optimizer)
    extra = got["extra"]
    if not isinstance(extra.get("scheduler"), dict):
        raise UserError(f"{path} holds no lr schedule state: not a paused trial's training state")
    scheduler.load_state_dict(extra["scheduler"])
    if extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    return int(got["epoch"])


def _check_finite(losses: Tensor, lo: int, hi: int, epoch: int) -> None:
    window = losses[lo:hi]
    if not bool(torch.isfinite(window).all()):
        bad = lo + int((~torch.isfinite(window)).nonzero()[0, 0])
        raise TrainingDiverged(f"training diverged: loss is {window[bad - lo].item()} at epoch {epoch}, "
                               f"step {bad + 1} (lower train.lr or add train.warmup_epochs)")
