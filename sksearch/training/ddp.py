"""Full training runs of one spec (what `sksearch train` runs), data-parallel under torchrun.

- DDP: NCCL on GPUs, Gloo on CPU; without torchrun it runs as one process. DistributedSampler for training;
  validation is split by rank without padding, so top-1 / top-5 count every image exactly once. Evaluation
  runs the bare module, not the DDP wrapper (whose forward is a collective: ranks with different numbers
  of validation batches would wait on each other forever); BN buffers are first made rank 0's.
- DataLoader workers send uint8 images (4x fewer bytes through shared memory and PCIe); the device
  converts and normalises them.
- lr is per lr_batch images and scaled linearly with the global batch; per-iteration schedule
  (common.make_schedule): step: lr x step_gamma every step_epochs epochs; cosine; linear warm-up over
  warmup_epochs. SGD with weight decay on conv / linear weights only. Mixed precision and channels_last as
  in a trial (common.py).
- <out>/checkpoint.pt after every epoch (state dicts: model, optimizer, scheduler, epoch, spec, global
  batch; weights_only loadable). An --out that holds a run is refused unless resume (continue it) or force
  (start over). Resuming checks the spec, the global batch and the scheduler state, each a one-line error.
  init_from loads model weights only (fine-tuning) from a checkpoint or state dict of the same spec.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from pydantic import ValidationError
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from sksearch.data.batches import epoch_seed
from sksearch.errors import UserError, from_validation_error
from sksearch.training.common import (amp_dtype, autocast, bare, evaluate, every_k_epochs, grad_scaler,
                                      load_checkpoint, load_model_weights, make_optimizer, make_schedule, memory_format, pick_device,
                                      read_checkpoint, save_checkpoint, setup_backend, sgd_step, sync)
from sksearch.training.recipe import Recipe

RUN_FILES = ("checkpoint.pt", "summary.json")


def load_config(path: str) -> tuple[Any, Recipe, dict[str, Any]]:
    """(spec, recipe, provenance) from an exported config, a bare spec file or a preset name."""
    from sksearch.presets import PRESETS
    from sksearch.spec import ArchSpec, load_spec
    from sksearch.yamlio import load_yaml

    if path in PRESETS or not str(path).endswith((".yaml", ".yml")):
        return load_spec(path), Recipe(), {}
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise UserError("expected a mapping with spec, recipe and provenance", file=path)
    if "spec" not in data:
        return ArchSpec.from_dict(data, file=path), Recipe(), {}
    unknown = sorted(set(data) - {"spec", "recipe", "provenance"})
    if unknown:
        raise UserError("unknown key (expected spec, recipe, provenance)", file=path, key=unknown[0])
    spec = ArchSpec.from_dict(data["spec"], file=path, prefix="spec")
    try:
        recipe = Recipe.model_validate(data.get("recipe") or {})
    except ValidationError as exc:
        raise from_validation_error(exc, file=path, prefix="recipe") from None
    return spec, recipe, dict(data.get("provenance") or {})


# -- processes -----------------------------------------------------------------------------------------------

class Dist:
    """This process's place in the run: rank, world size, device; a process group when world > 1."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        else:
            self.device = pick_device("cpu")
        if self.world > 1:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def sync_buffers(model: nn.Module, pg: Dist) -> None:
    """Make every rank's BN statistics rank 0's (each rank's last training forward updated its own), so
    that all ranks evaluate the model the checkpoint holds."""
    if pg.world > 1:
        for buf in bare(model).buffers():
            dist.broadcast(buf, 0)


def normalizer(device: torch.device, fmt: torch.memory_format) -> Callable[[Tensor], Tensor]:
    """uint8 image batches (as the workers send them) -> normalised float32 on `device`, in `fmt`."""
    from sksearch.data.batches import uint8_normaliser
    from sksearch.data.imagenet import IMAGENET_MEAN, IMAGENET_STD

    return uint8_normaliser(IMAGENET_MEAN, IMAGENET_STD, device, fmt)


def _progress(loader: Iterable, enabled: bool, desc: str, total: int) -> Iterable:
    if not enabled:
        return loader
    try:
        from tqdm import tqdm
    except ImportError:
        print(desc, flush=True)
        return loader
    return tqdm(loader, desc=desc, total=total, leave=False, dynamic_ncols=True)


# -- one epoch -----------------------------------------------------------------------------------------------

def train_epoch(model: nn.Module, loader: DataLoader, opt: torch.optim.Optimizer,
                sched: torch.optim.lr_scheduler.LRScheduler, loss_fn: nn.Module, dtype: torch.dtype | None,
                prepare: Callable[[Tensor], Tensor], pg: Dist, desc: str) -> tuple[float, int, float]:
    """(mean loss over all processes, images over all processes, seconds)."""
    model.train()
    scaler = grad_scaler(pg.device, dtype)
    loss_sum = torch.zeros((), dtype=torch.float64, device=pg.device)
    seen = 0
    start = time.perf_counter()
    for x, y in _progress(loader, pg.main, desc, len(loader)):
        x = prepare(x.to(pg.device, non_blocking=True))
        y = y.to(pg.device, non_blocking=True)
        with autocast(pg.device, dtype):
            loss = loss_fn(model(x), y)
        sgd_step(loss, opt, scaler, sched)
        loss_sum += loss.detach().double() * y.shape[0]
        seen += y.shape[0]
    sync(pg.device)
    seconds = time.perf_counter() - start
    total_loss, total_seen = pg.sum([loss_sum.item(), float(seen)])
    return total_loss / max(total_seen, 1), int(total_seen), seconds


def validate(model: nn.Module, loader: Iterable, pg: Dist, dtype: torch.dtype | None,
             prepare: Callable[[Tensor], Tensor]) -> dict[str, float]:
    """Top-1, top-5 and loss over this process's share of the validation set, summed over all processes.
    The bare module runs (common.evaluate unwraps DDP), so each rank may run any number of batches."""
    sync_buffers(model, pg)
    s = evaluate(model, loader, pg.device, dtype=dtype, prepare=prepare)
    top1, top5, loss, n = pg.sum([s.top1, s.top5, s.loss, float(s.n)])
    n = max(n, 1.0)
    return {"top1": top1 / n, "top5": top5 / n, "val_loss": loss / n, "val_images": int(n)}


# -- guards ----------------------------------------------------------------------------------------------------

def check_out(out: Path, *, resume: bool, force: bool) -> None:
    """An --out that holds a run is continued (resume) or replaced (force), never silently overwritten."""
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held and not (resume or force):
        raise UserError(f"--out {out} already holds a run ({', '.join(held)}): pass --resume to continue it, "
                        f"--force to start over, or choose another --out")


def restore(ckpt: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
            *, spec: Any, recipe: Recipe, steps_per_epoch: int, device: torch.device) -> tuple[int, list[dict]]:
    """Resume from ckpt: (epochs done, history). Stops with one line when the checkpoint is of another spec,
    another global batch (the lr and the schedule's iterations were set for it) or has no scheduler state."""
    state = read_checkpoint(ckpt, map_location=device)
    extra = state.get("extra") or {} if isinstance(state, dict) else {}
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"--resume: {ckpt} is not a checkpoint of `sksearch train` (no model entry)")
    old_spec = extra.get("spec")
    if old_spec is not None and old_spec != spec.to_dict():
        raise UserError(f"--resume: {ckpt} is a run of another spec (it differs in "
                        f"{', '.join(_differing_keys(old_spec, spec.to_dict()))}): choose another --out, "
                        f"or --force to start over")
    old_batch = extra.get("global_batch")
    if old_batch is not None and int(old_batch) != recipe.batch_size:
        raise UserError(f"--resume: --batch-size {recipe.batch_size} differs from the checkpoint's {old_batch} "
                        f"(its lr and schedule were set for {old_batch}): resume with --batch-size {old_batch}")
    sched_state = extra.get("scheduler")
    if not isinstance(sched_state, dict) or "_schedulers" not in sched_state:
        raise UserError(f"--resume: {ckpt} has no per-iteration scheduler state (not written by this version "
                        f"of `sksearch train`): use --init-from {ckpt} to start a new schedule from its weights")
    # A checkpoint without a spec entry: its keys and shapes decide (load_checkpoint names what does not fit).
    epoch = int(load_checkpoint(ckpt, model, opt, state=state)["epoch"])
    _continue_schedule(sched, sched_state, epoch * steps_per_epoch)
    return epoch, list(extra.get("history", []))


def _differing_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            keys += _differing_keys(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            keys.append(f"{prefix}{k}")
    return keys


def _continue_schedule(sched: torch.optim.lr_scheduler.LRScheduler, saved: dict[str, Any], iteration: int) -> None:
    """Place a schedule built for this run's recipe at `iteration`. The lr itself comes back with the
    optimizer's state; milestones and the cosine length follow the current --epochs."""
    children = getattr(sched, "_schedulers", [sched])
    if len(saved["_schedulers"]) != len(children):
        raise UserError("--resume: the checkpoint's schedule has another warm-up than the recipe's")
    for child in children:
        child.last_epoch = iteration
    sched._last_lr = list(saved.get("_last_lr", sched.get_last_lr()))  # type: ignore[attr-defined]


def init_weights_from(path: str | Path, model: nn.Module, device: torch.device) -> None:
    """Fine-tuning: model weights only, from our checkpoint or a bare state dict of the same spec."""
    load_model_weights(path, model, what="--init-from:", map_location=device)


def run_datasets(data: str | Path, classes_file: str | None, resolution: int) -> tuple[Any, Any]:
    """(train, val) image folders whose items are uint8 tensors: the workers send 4x fewer bytes than
    normalised float32, and the device normalises them (normalizer)."""
    from sksearch.config import read_class_list
    from sksearch.data.imagenet import image_folder

    classes = read_class_list(classes_file) if classes_file else None
    return (image_folder(Path(data), "train", classes, resolution, train=True, normalize=False),
            image_folder(Path(data), "val", classes, resolution, train=False, normalize=False))


# -- the run -------------------------------------------------------------------------------------------------

def train(config: str, data: str | Path, *, out: str | Path | None = None, resume: bool = False,
          force: bool = False, init_from: str | None = None, epochs: int | None = None,
          batch_size: int | None = None, workers: int | None = None, classes_file: str | None = None,
          resolution: int | None = None) -> dict[str, Any]:
    """Train `config` on the ImageNet-style folder `data`; returns (and writes to <out>/summary.json) the
    summary. Under torchrun every process calls this."""
    from sksearch.complexity import count
    from sksearch.models import build_model

    if resume and (force or init_from):
        raise UserError("--resume continues a run: it cannot go with --force or --init-from")
    spec, recipe, provenance = load_config(config)
    updates = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("workers", workers),
                                  ("resolution", resolution)) if v is not None}
    try:
        recipe = Recipe.model_validate({**recipe.model_dump(), **updates})
    except ValidationError as exc:
        raise from_validation_error(exc, prefix="recipe") from None
    out = Path(out) if out else Path("runs") / "train" / Path(config).stem
    check_out(out, resume=resume, force=force)
    pg = Dist()
    try:
        if recipe.batch_size % pg.world:
            raise UserError(f"--batch-size {recipe.batch_size} is not divisible by the {pg.world} processes")
        train_ds, val_ds = run_datasets(data, classes_file, recipe.resolution)
        n_classes = len(train_ds.classes)  # type: ignore[attr-defined]
        if n_classes != spec.num_classes:
            if pg.main:
                print(f"note: {n_classes} classes in {data}/train, the spec has {spec.num_classes}: "
                      f"the classifier follows the data", flush=True)
            spec = spec.replace(num_classes=n_classes)

        per_rank = recipe.batch_size // pg.world
        sampler = DistributedSampler(train_ds, num_replicas=pg.world, rank=pg.rank, shuffle=True, seed=recipe.seed)
        pin = pg.device.type == "cuda"
        train_dl = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, num_workers=recipe.workers,
                              pin_memory=pin, drop_last=len(sampler) > per_rank,  # no 1-image BatchNorm batches
                              persistent_workers=recipe.workers > 0)
        val_dl = DataLoader(Subset(val_ds, range(pg.rank, len(val_ds), pg.world)), batch_size=per_rank,
                            num_workers=recipe.workers, pin_memory=pin)
        steps = len(train_dl)

        setup_backend(pg.device)
        dtype = amp_dtype(pg.device, recipe.amp)
        fmt = memory_format(recipe.channels_last)
        prepare = normalizer(pg.device, fmt)
        torch.manual_seed(recipe.seed)  # the same initial weights in every process
        model = build_model(spec).to(pg.device).to(memory_format=fmt)
        opt = make_optimizer(model, lr=recipe.scaled_lr(), momentum=recipe.momentum, nesterov=recipe.nesterov,
                             weight_decay=recipe.weight_decay)
        sched = make_schedule(opt, kind=recipe.schedule, total_steps=recipe.epochs * steps,
                              warmup_steps=recipe.warmup_epochs * steps,
                              milestones=every_k_epochs(recipe.step_epochs, recipe.epochs, steps),
                              gamma=recipe.step_gamma)
        ckpt = out / "checkpoint.pt"
        start, history = 0, []
        if resume and ckpt.is_file():
            start, history = restore(ckpt, model, opt, sched, spec=spec, recipe=recipe, steps_per_epoch=steps,
                                     device=pg.device)
            if pg.main:
                print(f"resuming from {ckpt}: epoch {start + 1} of {recipe.epochs}", flush=True)
        elif resume and pg.main:
            print(f"no checkpoint at {ckpt}: starting at epoch 1", flush=True)
        if init_from:
            init_weights_from(init_from, model, pg.device)
            if pg.main:
                print(f"initial weights from {init_from}", flush=True)
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[pg.device.index] if pg.device.type == "cuda" else None) if pg.world > 1 else model
        loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

        began = time.perf_counter()
        train_seconds, train_images = 0.0, 0
        for epoch in range(start, recipe.epochs):
            sampler.set_epoch(epoch)
            # Augmentation draws keyed by (seed, epoch, rank): a resumed epoch sees the crops and flips of an
            # uninterrupted run (exactly so with workers 0; persistent workers keep their own streams).
            torch.manual_seed(epoch_seed(recipe.seed, epoch) * 1024 + pg.rank)
            lr = opt.param_groups[0]["lr"]
            loss, images, seconds = train_epoch(ddp, train_dl, opt, sched, loss_fn, dtype, prepare, pg,
                                                f"epoch {epoch + 1}/{recipe.epochs}")
            metrics = validate(ddp, val_dl, pg, dtype, prepare)
            train_seconds, train_images = train_seconds + seconds, train_images + images
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss, **metrics,
                   "images_per_second": images / seconds if seconds else 0.0}
            history.append(row)
            if pg.main:
                save_checkpoint(ckpt, model, opt, epoch + 1, extra={
                    "scheduler": sched.state_dict(), "history": history, "spec": spec.to_dict(),
                    "global_batch": recipe.batch_size})
                print(f"epoch {epoch + 1}/{recipe.epochs}: train loss {loss:.4f}, top-1 {metrics['top1']:.2%}, "
                      f"top-5 {metrics['top5']:.2%}, {row['images_per_second']:.1f} img/s", flush=True)
            pg.barrier()

        c = count(spec.replace(input_size=[spec.input_size[0], recipe.resolution, recipe.resolution]))
        last = history[-1] if history else {}
        summary = {
            "config": str(config), "label": spec.label(), "params": c.params, "macs": c.macs,
            "resolution": recipe.resolution, "classes": n_classes, "train_images": len(train_ds),
            "val_images": len(val_ds), "world_size": pg.world, "device": str(pg.device),
            "global_batch": recipe.batch_size, "lr": recipe.scaled_lr(), "epochs": recipe.epochs,
            "start_epoch": start + 1, "epochs_run": recipe.epochs - start, "init_from": init_from,
            "top1": last.get("top1"), "top5": last.get("top5"), "val_loss": last.get("val_loss"),
            "train_loss": last.get("train_loss"),
            "best_top1": max((h["top1"] for h in history), default=None),
            "seconds": round(time.perf_counter() - began, 3),
            "images_per_second": train_images / train_seconds if train_seconds else None,
            "checkpoint": str(ckpt), "provenance": provenance, "history": history,
        }
        if pg.main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            print(json.dumps({k: v for k, v in summary.items() if k not in ("history", "provenance")}), flush=True)
        return summary
    finally:
        pg.close()
