"""Train one trial: build the spec's network, run the recipe, evaluate on the validation split each epoch.

Choices worth knowing:
- SGD with momentum (Nesterov optional); weight decay applies to conv and linear weights only, not to
  BatchNorm parameters or biases (decaying those only shrinks the scale the next layer undoes).
- The lr schedule is defined per step over the recipe's FULL budget (recipe.epochs), even when fewer
  epochs are run, so a trial stopped early has seen exactly the first part of a full trial's schedule.
  step: lr / 10 at 50% and again at 75% of the steps; cosine: half cosine to zero; constant. A linear
  warm-up over warmup_epochs multiplies any of them.
- bf16 autocast (recipe.amp) and cudnn autotuning on CUDA; channels_last (recipe.channels_last) on every
  device, as it is faster on CPU too. On CPU the run is deterministic: the same recipe.seed and data seed give the same history.
- A non-finite loss raises TrainingDiverged. The check costs no GPU sync per step: losses collect in a
  device buffer that is inspected every few steps (every step on CPU, where it is free).
- images_per_second counts the training loop only (no evaluation), with the device synchronised at both ends.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from sksearch.config import TrainConfig
from sksearch.data import DataBundle
from sksearch.errors import UserError
from sksearch.models import build_model
from sksearch.spec import ArchSpec

CHECK_EVERY_CUDA = 25  # steps between non-finite-loss checks on an accelerator (each check syncs)


@dataclass
class EpochResult:
    epoch: int                 # 1-based
    train_loss: float          # mean over the epoch's steps
    val_accuracy: float        # top-1 on data.val, in [0, 1]
    images_per_second: float   # training loop only
    seconds: float             # the whole epoch, evaluation included


@dataclass
class TrainResult:
    epochs_done: int
    val_accuracy: float        # after the last epoch run
    history: list[EpochResult]
    train_seconds: float       # wall time of all epochs, evaluation included
    images_per_second: float   # training images / training-loop seconds, over all epochs
    model: nn.Module | None = field(default=None, repr=False, compare=False)  # the trained network


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def pick_device(prefer: str | None = None) -> torch.device:
    """`prefer` if given ("cpu", "cuda", "cuda:1"), else CUDA when available, else CPU."""
    if prefer:
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {prefer!r} requested but CUDA is not available")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """The multiplier of the base lr at `step` (0-based) of a run of total_steps."""
    t = step / max(total_steps, 1)
    if schedule == "step":
        base = 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01
    elif schedule == "cosine":
        base = 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    else:
        base = 1.0
    if warmup_steps > 0 and step < warmup_steps:
        base *= (step + 1) / warmup_steps
    return base


def make_optimizer(model: nn.Module, recipe: TrainConfig) -> torch.optim.SGD:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]  # BN scale/shift, biases
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.nesterov and recipe.momentum > 0)


def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device, *,
             amp: bool = True) -> float:
    """Top-1 accuracy in [0, 1] over every batch of `loader` (one host sync, at the end)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    with torch.inference_mode(), _autocast(device, amp):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            correct += (model(x).argmax(1) == y).sum()
            total += y.shape[0]
    model.train(was_training)
    return correct.item() / total if total else 0.0


def train_trial(spec: ArchSpec, data: DataBundle, recipe: TrainConfig, *, epochs: int | None = None,
                device: torch.device | None = None,
                on_epoch: Callable[[EpochResult], None] | None = None) -> TrainResult:
    """Train spec's network on data.train for `epochs` (default recipe.epochs) epochs of recipe's schedule,
    evaluating on data.val after each and passing the result to on_epoch (whose exceptions propagate: Ray
    Tune stops a trial that way)."""
    device = device or pick_device()
    epochs = recipe.epochs if epochs is None else epochs
    steps_per_epoch = len(data.train)  # type: ignore[arg-type]
    if steps_per_epoch == 0:
        raise UserError(f"the training split has {data.n_train} images, fewer than one batch", key="train.batch_size")
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(recipe.seed)  # the initial weights
    model = build_model(spec).to(device)
    # channels_last also pays on CPU: oneDNN's convolutions run 1.5x faster in NHWC on small CIFAR nets.
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(model, recipe)
    total_steps = recipe.epochs * steps_per_epoch
    warmup_steps = round(recipe.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, recipe.schedule))
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    step_fn = torch.compile(model) if recipe.compile else model
    check_every = CHECK_EVERY_CUDA if device.type != "cpu" else 1

    history: list[EpochResult] = []
    train_images = 0
    loop_seconds = 0.0
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        if hasattr(data.train, "set_epoch"):
            data.train.set_epoch(epoch - 1)  # type: ignore[union-attr]
        model.train()
        losses = torch.zeros(steps_per_epoch, device=device)
        seen = checked = 0
        _sync(device)
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(data.train):
            x = x.contiguous(memory_format=memory_format)  # a no-op when the loader already made it so
            with _autocast(device, recipe.amp):
                loss = criterion(step_fn(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses[i] = loss.detach()
            seen += y.shape[0]
            if (i + 1) % check_every == 0 or i + 1 == steps_per_epoch:
                _check_finite(losses, checked, i + 1, epoch)
                checked = i + 1
        _sync(device)
        t_train = time.perf_counter() - t0
        train_images += seen
        loop_seconds += t_train
        val_acc = evaluate(model, data.val, device, amp=recipe.amp)
        result = EpochResult(epoch=epoch, train_loss=losses.mean().item(), val_accuracy=val_acc,
                             images_per_second=seen / t_train if t_train > 0 else 0.0,
                             seconds=time.perf_counter() - epoch_start)
        history.append(result)
        if on_epoch is not None:
            on_epoch(result)
    return TrainResult(epochs_done=len(history), val_accuracy=history[-1].val_accuracy if history else 0.0,
                       history=history, train_seconds=time.perf_counter() - start,
                       images_per_second=train_images / loop_seconds if loop_seconds > 0 else 0.0, model=model)


def _check_finite(losses: Tensor, lo: int, hi: int, epoch: int) -> None:
    window = losses[lo:hi]
    if not bool(torch.isfinite(window).all()):
        bad = lo + int((~torch.isfinite(window)).nonzero()[0, 0])
        raise TrainingDiverged(f"training diverged: loss is {window[bad - lo].item()} at epoch {epoch}, "
                               f"step {bad + 1} (lower train.lr or add train.warmup_epochs)")


# -- checkpoints -----------------------------------------------------------------------------------------
def _bare(model: nn.Module) -> nn.Module:
    """The module under torch.compile / DDP wrappers, so that state-dict keys do not depend on them."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, epoch: int,
                    extra: dict[str, Any] | None = None) -> None:
    """State dicts only (loadable with weights_only=True); `extra` must hold plain values (str, numbers,
    lists, dicts). Written to a temporary file and renamed, so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": _bare(model).state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
             "epoch": int(epoch), "extra": dict(extra or {})}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Restore model (and optimizer) state in place; returns {"epoch": ..., "extra": ...}."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    _bare(model).load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    return {"epoch": state["epoch"], "extra": state.get("extra", {})}
