"""`sksearch train CONFIG.yaml --data DIR [--out DIR] [--resume] [--epochs N] [--batch-size N] [--workers N]
[--classes-file F] [--resolution N]`: a full training run of one spec, data-parallel under torchrun.

    torchrun --nproc_per_node=8 -m sksearch.train sknet.yaml --data /data/imagenet

CONFIG is what `sksearch export` writes ({spec, recipe, provenance}); a bare spec file or a preset name gets
the default recipe (the paper's ImageNet one). DIR holds train/<wnid>/*.JPEG and val/<wnid>/*.JPEG.
- DDP: NCCL on GPUs, Gloo on CPU; without torchrun it runs as one process. DistributedSampler for training;
  validation is split by rank without padding, so top-1 / top-5 count every image exactly once.
- lr is per 256 images and scaled linearly with the global batch; step schedule: lr x step_gamma every
  step_epochs epochs; optional linear warm-up; SGD with weight decay on conv / linear weights only.
- CUDA: bf16 autocast (recipe.amp), channels_last (recipe.channels_last).
- <out>/checkpoint.pt after every epoch (state dicts: model, optimizer, scheduler, epoch; loadable with
  weights_only=True); --resume continues from it. <out>/summary.json at the end (also printed).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Literal

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from sksearch.errors import UserError, cli_entry, from_validation_error
from sksearch.training.recipe import Recipe


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
            from sksearch.training.loop import pick_device

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


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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

def train_epoch(model: nn.Module, loader: DataLoader, opt: torch.optim.Optimizer, loss_fn: nn.Module,
                recipe: Recipe, pg: Dist, desc: str) -> tuple[float, int, float]:
    """(mean loss over all processes, images over all processes, seconds)."""
    model.train()
    cl = recipe.channels_last and pg.device.type == "cuda"
    loss_sum = torch.zeros((), dtype=torch.float64, device=pg.device)
    seen = 0
    start = time.perf_counter()
    for x, y in _progress(loader, pg.main, desc, len(loader)):
        x = x.to(pg.device, non_blocking=True, memory_format=torch.channels_last if cl else torch.preserve_format)
        y = y.to(pg.device, non_blocking=True)
        with _autocast(pg.device, recipe.amp):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach().double() * y.shape[0]
        seen += y.shape[0]
    if pg.device.type == "cuda":
        torch.cuda.synchronize(pg.device)
    seconds = time.perf_counter() - start
    total_loss, total_seen = pg.sum([loss_sum.item(), float(seen)])
    return total_loss / max(total_seen, 1), int(total_seen), seconds


def evaluate(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, recipe: Recipe, pg: Dist) -> dict[str, float]:
    """Top-1, top-5 and loss over this process's share of the validation set, summed over all processes."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=pg.device)  # top1, top5, loss, n
    with torch.inference_mode(), _autocast(pg.device, recipe.amp):
        for x, y in loader:
            x, y = x.to(pg.device, non_blocking=True), y.to(pg.device, non_blocking=True)
            logits = model(x).float()
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hit = top == y[:, None]
            batch = [hit[:, 0].sum(), hit.any(1).sum(), loss_fn(logits, y) * y.shape[0],
                     torch.tensor(y.shape[0], device=pg.device)]
            sums += torch.stack([v.double() for v in batch])
    top1, top5, loss, n = pg.sum(sums.tolist())
    n = max(n, 1.0)
    return {"top1": top1 / n, "top5": top5 / n, "val_loss": loss / n, "val_images": int(n)}


# -- the run -------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    from sksearch.complexity import count
    from sksearch.config import read_class_list
    from sksearch.data.imagenet import image_folder
    from sksearch.models import build_model
    from sksearch.training.loop import load_checkpoint, make_optimizer, save_checkpoint

    spec, recipe, provenance = load_config(args.config)
    updates = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                  ("workers", args.workers), ("resolution", args.resolution)) if v is not None}
    try:
        recipe = Recipe.model_validate({**recipe.model_dump(), **updates})
    except ValidationError as exc:
        raise from_validation_error(exc, prefix="recipe") from None
    out = Path(args.out) if args.out else Path("runs") / "train" / Path(args.config).stem
    pg = Dist()
    try:
        if recipe.batch_size % pg.world:
            raise UserError(f"--batch-size {recipe.batch_size} is not divisible by the {pg.world} processes")
        classes = read_class_list(args.classes_file) if args.classes_file else None
        train_ds = image_folder(Path(args.data), "train", classes, recipe.resolution, train=True)
        val_ds = image_folder(Path(args.data), "val", classes, recipe.resolution, train=False)
        n_classes = len(train_ds.classes)  # type: ignore[attr-defined]
        if n_classes != spec.num_classes:
            if pg.main:
                print(f"note: {n_classes} classes in {args.data}/train, the spec has {spec.num_classes}: "
                      f"the classifier follows the data", flush=True)
            spec = spec.replace(num_classes=n_classes)

        torch.manual_seed(recipe.seed)  # the same initial weights in every process
        model = build_model(spec).to(pg.device)
        if recipe.channels_last and pg.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if pg.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        opt = make_optimizer(model, recipe.model_copy(update={"lr": recipe.scaled_lr()}))  # type: ignore[arg-type]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, recipe.lr_factor)
        ckpt = out / "checkpoint.pt"
        start, history = 0, []
        if args.resume and ckpt.is_file():
            info = load_checkpoint(ckpt, model, opt, map_location=pg.device)
            sched.load_state_dict(info["extra"]["scheduler"])
            start, history = int(info["epoch"]), list(info["extra"].get("history", []))
            if pg.main:
                print(f"resuming from {ckpt}: epoch {start + 1} of {recipe.epochs}", flush=True)
        elif args.resume and pg.main:
            print(f"no checkpoint at {ckpt}: starting at epoch 1", flush=True)
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[pg.device.index] if pg.device.type == "cuda" else None) if pg.world > 1 else model

        per_rank = recipe.batch_size // pg.world
        sampler = DistributedSampler(train_ds, num_replicas=pg.world, rank=pg.rank, shuffle=True, seed=recipe.seed)
        pin = pg.device.type == "cuda"
        train_dl = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, num_workers=recipe.workers,
                              pin_memory=pin, drop_last=len(sampler) > per_rank,  # no 1-image BatchNorm batches
                              persistent_workers=recipe.workers > 0)
        val_dl = DataLoader(Subset(val_ds, range(pg.rank, len(val_ds), pg.world)), batch_size=per_rank,
                            num_workers=recipe.workers, pin_memory=pin)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        eval_loss = nn.CrossEntropyLoss()

        began = time.perf_counter()
        train_seconds, train_images = 0.0, 0
        for epoch in range(start, recipe.epochs):
            sampler.set_epoch(epoch)
            lr = opt.param_groups[0]["lr"]
            loss, images, seconds = train_epoch(ddp, train_dl, opt, loss_fn, recipe, pg,
                                                f"epoch {epoch + 1}/{recipe.epochs}")
            sched.step()
            metrics = evaluate(ddp, val_dl, eval_loss, recipe, pg)
            train_seconds, train_images = train_seconds + seconds, train_images + images
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss, **metrics,
                   "images_per_second": images / seconds if seconds else 0.0}
            history.append(row)
            if pg.main:
                save_checkpoint(ckpt, model, opt, epoch + 1, extra={"scheduler": sched.state_dict(),
                                                                    "history": history})
                print(f"epoch {epoch + 1}/{recipe.epochs}: train loss {loss:.4f}, top-1 {metrics['top1']:.2%}, "
                      f"top-5 {metrics['top5']:.2%}, {row['images_per_second']:.1f} img/s", flush=True)
            pg.barrier()

        c = count(spec.replace(input_size=[spec.input_size[0], recipe.resolution, recipe.resolution]))
        last = history[-1] if history else {}
        summary = {
            "config": str(args.config), "label": spec.label(), "params": c.params, "macs": c.macs,
            "resolution": recipe.resolution, "classes": n_classes, "train_images": len(train_ds),
            "val_images": len(val_ds), "world_size": pg.world, "device": str(pg.device),
            "global_batch": recipe.batch_size, "lr": recipe.scaled_lr(), "epochs": recipe.epochs,
            "start_epoch": start + 1, "epochs_run": recipe.epochs - start,
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sksearch train", description=__doc__.splitlines()[0])
    p.add_argument("config", help="a config from `sksearch export`, a spec YAML or a preset name")
    p.add_argument("--data", required=True, help="folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")
    p.add_argument("--out", help="checkpoints and summary.json (default runs/train/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument("--epochs", type=int, help="override recipe.epochs")
    p.add_argument("--batch-size", type=int, help="override recipe.batch_size (global; lr scales with it)")
    p.add_argument("--workers", type=int, help="override recipe.workers (per process)")
    p.add_argument("--classes-file", help="one wnid a line: train on these classes only, in this order")
    p.add_argument("--resolution", type=int, help="override recipe.resolution (training crop)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
