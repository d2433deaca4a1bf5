"""What a trial (loop.py) and a full run (ddp.py) share: device, precision, memory, compile, optimizer,
lr schedules, evaluation and checkpoints.

Every CUDA-only branch is one small function here with a CPU counterpart (a no-op or the CPU twin of the
same call), so that the tests run the code paths a GPU run takes as far as a CPU can:
- pick_device / trial_device: the device; a trial follows the study's resources, never "whatever is visible";
- amp_dtype / autocast: bf16 on Ampere or newer, fp16 (with a GradScaler) on Volta/Turing, fp32 before
  that; the same context manager runs CPU bf16 autocast in the tests;
- memory_format, setup_backend (cudnn autotuning), cap_memory (a trial's share of a GPU), release_memory;
- compile_model / reset_compiler: torch.compile choices, reset between trials of a reused worker;
- is_oom: an out-of-memory error, recorded as such rather than as a crash.
"""
from __future__ import annotations

import contextlib
import gc
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import torch
from torch import Tensor, nn

from sksearch.errors import UserError

CompileMode = Literal[False, True, "default", "reduce-overhead", "max-autotune"]


# -- device --------------------------------------------------------------------------------------------------

def pick_device(prefer: str | None = None) -> torch.device:
    """`prefer` if given ("cpu", "cuda", "cuda:1"), else CUDA when available, else CPU."""
    if prefer:
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {prefer!r} requested but CUDA is not available")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def trial_device(gpu_share: float) -> torch.device:
    """The device of a trial that reserved `gpu_share` GPUs (tune.resources_per_trial.gpu). A trial with no
    GPU share trains on the CPU even where CUDA is visible: Ray no longer hides GPUs from zero-GPU actors,
    and a trial outside Ray's accounting would crowd the GPU of the trials that did reserve it."""
    return pick_device("cuda" if gpu_share > 0 else "cpu")


# -- precision and layout -----------------------------------------------------------------------------------

def amp_dtype(device: torch.device, enabled: bool, capability: tuple[int, int] | None = None) -> torch.dtype | None:
    """The autocast dtype for `device`, or None for fp32. bf16 needs Ampere (compute capability 8.0) or
    newer to run natively; older GPUs emulate it slowly, so they get fp16 (Volta/Turing tensor cores, with
    a GradScaler) or fp32 (before Volta). On CPU amp stays off: oneDNN's bf16 convolutions are slower than
    fp32 on most CPUs (the CPU tests pass torch.bfloat16 to autocast() directly)."""
    if not enabled or device.type != "cuda":
        return None
    major, minor = capability if capability is not None else torch.cuda.get_device_capability(device)
    if (major, minor) >= (8, 0):
        return torch.bfloat16
    if major >= 7:
        return torch.float16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device` (CUDA or CPU), or nothing when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """fp16 needs loss scaling (its range underflows small gradients); bf16 and fp32 do not, and a disabled
    scaler passes scale/step/update straight through, so the loops call it unconditionally."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def memory_format(channels_last: bool) -> torch.memory_format:
    """channels_last on every device: cuDNN's tensor-core kernels want NHWC, and oneDNN's CPU convolutions
    run about 1.5x faster in NHWC on small CIFAR nets."""
    return torch.channels_last if channels_last else torch.contiguous_format


def setup_backend(device: torch.device) -> None:
    """cuDNN autotuning on CUDA (shapes are fixed: the train split drops its last batch); nothing on CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- memory: several trials on one GPU ------------------------------------------------------------------------

def cap_memory(device: torch.device, gpu_share: float) -> float | None:
    """Cap this process's CUDA caching allocator at its share of the GPU when the trial reserved a fraction
    of one (tune.resources_per_trial.gpu = 0.5, 0.25), so that one trial's growth runs into its own
    out-of-memory error instead of its neighbours'. Returns the fraction set; None on CPU or a whole GPU."""
    if device.type != "cuda" or not 0 < gpu_share < 1:
        return None
    torch.cuda.set_per_process_memory_fraction(gpu_share, device)
    return gpu_share


def release_memory(device: torch.device) -> None:
    """Give the memory of a finished trial back: a reused Ray worker keeps its CUDA cache otherwise."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    """A device out-of-memory error (CUDA's own class, or an allocator RuntimeError that says so)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


# -- compile ---------------------------------------------------------------------------------------------------

def reset_compiler() -> None:
    """Forget every compiled graph. A reused Ray worker trains many architectures; without a reset each
    adds to dynamo's cache and, past its recompile limit, later trials would run eager."""
    torch._dynamo.reset()


def compile_model(model: nn.Module, mode: CompileMode) -> nn.Module:
    """torch.compile(model) for mode True/"default"/"max-autotune", CUDA graphs for "reduce-overhead"
    (launch-bound small nets); the model itself when mode is False. Hitting the recompile limit raises
    instead of silently running eager."""
    if mode is False:
        return model
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    return torch.compile(model, mode=None if mode in (True, "default") else mode)


def warmup_steps_for(mode: CompileMode) -> int:
    """Steps at the start of a run that compile rather than train at speed: dynamo compiles on the first
    call; CUDA graphs ("reduce-overhead") run once eager, record on the second and replay from the third."""
    return 0 if mode is False else 3 if mode == "reduce-overhead" else 1


def mark_step(mode: CompileMode) -> None:
    """CUDA graphs reuse their output buffers: tell them a new training step begins."""
    if mode == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()


# -- optimizer and schedules -----------------------------------------------------------------------------------

def make_optimizer(model: nn.Module, *, lr: float, momentum: float, nesterov: bool,
                   weight_decay: float) -> torch.optim.SGD:
    """SGD; weight decay on conv and linear weights only (decaying BN scales and biases only shrinks what
    the next layer undoes)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


def make_schedule(optimizer: torch.optim.Optimizer, *, kind: str, total_steps: int, warmup_steps: int = 0,
                  milestones: Iterable[int] = (), gamma: float = 0.1) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-iteration lr schedule (call .step() after every optimizer step) over total_steps:
    step: lr x gamma at each milestone (iteration numbers); cosine: half cosine to zero; constant.
    A linear warm-up, lr x (s + 1) / warmup_steps at iteration s < warmup_steps, multiplies any of them
    (ChainedScheduler), so the main schedule stays aligned to iteration 0 of the full budget."""
    if kind == "step":
        main: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=sorted(set(milestones)), gamma=gamma)
    elif kind == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    elif kind == "constant":
        main = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        raise ValueError(f"unknown schedule {kind!r}")
    if warmup_steps <= 1:  # a one-step warm-up multiplies by 1
        return torch.optim.lr_scheduler.ChainedScheduler([main], optimizer)
    warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup_steps, end_factor=1.0,
                                             total_iters=warmup_steps - 1)
    return torch.optim.lr_scheduler.ChainedScheduler([warm, main], optimizer)


def trial_milestones(total_steps: int) -> list[int]:
    """The trial's step rule: lr / 10 at 50% and again at 75% of the recipe's full budget."""
    return [math.ceil(total_steps * 0.5), math.ceil(total_steps * 0.75)]


def every_k_epochs(step_epochs: int, epochs: int, steps_per_epoch: int) -> list[int]:
    """The full run's step rule: lr x step_gamma every step_epochs epochs."""
    return [k * steps_per_epoch for k in range(step_epochs, epochs + 1, step_epochs)]


# -- evaluation -------------------------------------------------------------------------------------------------

@dataclass
class Scores:
    """Sums over one process's batches (add them across processes before dividing)."""

    top1: float
    top5: float
    loss: float
    n: int

    @property
    def accuracy(self) -> float:
        return self.top1 / self.n if self.n else 0.0


def bare(model: nn.Module) -> nn.Module:
    """The module under torch.compile / DDP wrappers: state-dict keys do not depend on them, and evaluation
    runs eager and outside DDP (whose forward broadcasts buffers: a collective that ranks with different
    numbers of validation batches would not match)."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device, *,
             dtype: torch.dtype | None = None, memory_format: torch.memory_format = torch.preserve_format,
             prepare=None) -> Scores:
    """Top-1 / top-5 hits, summed cross-entropy and image count over `loader`, on the bare module (no
    compile, no DDP). Ranks on fp32 logits (the classifier runs in fp32 under autocast, so bf16 ties do
    not flip predictions). One host sync, at the end. `prepare(x)` turns a loader batch into the input."""
    net = bare(model)
    was_training = net.training
    net.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    n = 0
    with torch.inference_mode(), autocast(device, dtype):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x = prepare(x) if prepare is not None else x.contiguous(memory_format=memory_format)
            logits = net(x).float()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hit = top == y[:, None]
            sums += torch.stack([hit[:, 0].sum().double(), hit.any(1).sum().double(),
                                 nn.functional.cross_entropy(logits, y, reduction="sum").double()])
            n += y.shape[0]
    net.train(was_training)
    top1, top5, loss = sums.tolist()
    return Scores(top1=top1, top5=top5, loss=loss, n=n)


# -- checkpoints -------------------------------------------------------------------------------------------------

def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, epoch: int,
                    extra: dict[str, Any] | None = None) -> None:
    """State dicts only (loadable with weights_only=True); `extra` must hold plain values (str, numbers,
    lists, dicts). Written to a temporary file and renamed, so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": bare(model).state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
             "epoch": int(epoch), "extra": dict(extra or {})}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # not a torch file, or one that needs unpickling arbitrary objects
        raise UserError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0][:200]}") from None


def state_mismatch(model: nn.Module, state: dict[str, Tensor]) -> list[str]:
    """Why `state` does not fit `model`: missing / unexpected keys and shape differences (empty: it fits)."""
    own = bare(model).state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [f"{k}: {tuple(state[k].shape)} vs the model's {tuple(v.shape)}"
                 for k, v in own.items() if k in state and hasattr(state[k], "shape") and state[k].shape != v.shape]
    return problems


def load_weights(path: str | Path, model: nn.Module, state: dict[str, Tensor], *, what: str = "checkpoint") -> None:
    """Load `state` into model, or stop with one line listing what does not fit."""
    problems = state_mismatch(model, state)
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise UserError(f"{what} {path} does not fit this spec: {'; '.join(problems[:4])}{more}")
    bare(model).load_state_dict(state)


def sgd_step(loss: Tensor, optimizer: torch.optim.Optimizer, scaler: Any, scheduler: Any) -> None:
    """One training step after the forward pass, the same for trials and full runs: backward through the
    (possibly no-op) loss scaler, optimizer and scaler update, then the per-iteration lr schedule."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def load_model_weights(path: str | Path, model: nn.Module, *, what: str,
                       map_location: str | torch.device = "cpu") -> None:
    """Model weights only, from our checkpoint ({"model": ...}) or a bare state dict, under DDP or compile
    prefixes or none (fine-tuning, `sksearch attention --checkpoint`)."""
    state = read_checkpoint(path, map_location=map_location)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise UserError(f"{what} {path} holds neither a checkpoint nor a state dict")
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    load_weights(path, model, state, what=what)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    *, map_location: str | torch.device = "cpu", state: Any = None) -> dict[str, Any]:
    """Restore model (and optimizer) state in place; returns {"epoch": ..., "extra": ...}. `state`: the
    checkpoint already read from `path` (a resume that checked its entries first reads it once)."""
    state = read_checkpoint(path, map_location=map_location) if state is None else state
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"{path} is not a sksearch checkpoint (no model entry)")
    load_weights(path, model, state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    return {"epoch": state.get("epoch", 0), "extra": state.get("extra", {})}
