"""Study files (studies/*.yaml): what to search, on which data, how to train a trial, how to schedule.

Every block is a pydantic model with unknown keys forbidden, so a typo is an error naming its key.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from sksearch.errors import UserError, from_validation_error
from sksearch.units import parse_count
from sksearch.yamlio import load_yaml

Count = Annotated[int, BeforeValidator(parse_count), Field(gt=0)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Block):
    name: Literal["synthetic", "cifar10", "cifar100", "imagenet_subset"] = "synthetic"
    root: str = "data"                      # cifar: torchvision's folder; imagenet_subset: has train/ and val/
    download: bool = False                  # cifar only: use torchvision's downloader
    val_fraction: float = Field(0.1, gt=0, lt=1)  # held out from the training set; search selects on it
    classes_file: str | None = None         # imagenet_subset: one wnid a line, selects the subset
    resolution: int = Field(64, ge=16)      # imagenet_subset: training crop size
    train_size: int | None = Field(None, ge=10)  # synthetic: images (default 10000); others: optional cap
    test_size: int | None = Field(None, ge=10)   # synthetic: default 2000
    workers: int = Field(4, ge=0)           # imagenet_subset DataLoader workers
    seed: int = 0                           # data generation and the validation split

    def geometry(self, base_dir: Path | None = None) -> tuple[int, list[int]]:
        """(num_classes, input_size) of this data set, so sampled specs can be fitted to it."""
        if self.name in ("synthetic", "cifar10"):
            return 10, [3, 32, 32]
        if self.name == "cifar100":
            return 100, [3, 32, 32]
        root = Path(self.root) if base_dir is None or Path(self.root).is_absolute() else base_dir / self.root
        if self.classes_file:
            cf = Path(self.classes_file)
            cf = cf if cf.is_absolute() or base_dir is None else base_dir / cf
            try:
                n = len([ln for ln in cf.read_text().splitlines() if ln.strip() and not ln.startswith("#")])
            except OSError:
                raise UserError(f"cannot read the class list {cf}", key="dataset.classes_file") from None
        else:
            train = root / "train"
            if not train.is_dir():
                raise UserError(f"no ImageNet-style folder at {train} (expected train/<wnid>/*.JPEG)", key="dataset.root")
            n = sum(1 for d in train.iterdir() if d.is_dir())
        return n, [3, self.resolution, self.resolution]


class TrainConfig(_Block):
    """One trial's training recipe (defaults: the paper's CIFAR recipe, at a search-sized budget)."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["step", "cosine", "constant"] = "step"  # step: lr / 10 at 50% and 75%
    warmup_epochs: float = Field(0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    amp: bool = True                        # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True              # on CUDA
    compile: bool = False                   # torch.compile the model
    seed: int = 0


class Objective(_Block):
    metric: Literal["accuracy", "macs", "params", "latency"]
    direction: Literal["maximize", "minimize"]


class Constraints(_Block):
    max_macs: Count | None = None
    max_params: Count | None = None


class SchedulerConfig(_Block):
    type: Literal["fifo", "asha", "pareto_asha"] = "fifo"
    grace_period: int = Field(1, ge=1)      # epochs before the first rung
    reduction_factor: float = Field(3, gt=1)
    max_epochs: int | None = Field(None, ge=1)  # default: train.epochs
    cost: Literal["macs", "params"] = "macs"   # pareto_asha: the cost axis of the dominance sort


class SamplerConfig(_Block):
    type: Literal["tpe", "nsga2", "random", "gp"] = "tpe"
    seed: int | None = 0
    n_startup_trials: int | None = Field(None, ge=0)  # tpe/gp: random trials before modelling


class Resources(_Block):
    cpu: float = Field(1, gt=0)
    gpu: float = Field(0, ge=0)


class TuneConfig(_Block):
    n_trials: int = Field(8, ge=1)
    max_concurrent: int = Field(1, ge=1)
    resources_per_trial: Resources = Field(default_factory=Resources)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    max_failures: int = Field(3, ge=0)      # failed trials tolerated before the study stops


class StudyConfig(_Block):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    search_space: str                       # relative to the study file
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    objectives: list[Objective] = Field(
        default_factory=lambda: [Objective(metric="accuracy", direction="maximize"),
                                 Objective(metric="macs", direction="minimize")],
        min_length=1,
    )
    constraints: Constraints = Field(default_factory=Constraints)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    storage: str | None = None              # SQLAlchemy URL; default sqlite:///<output_dir>/optuna.db
    output_dir: str | None = None           # default runs/<name> under the working directory

    # Set by load_study, not by the file.
    source: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check(self) -> "StudyConfig":
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"objectives: each metric may appear once (got {metrics})")
        sched = self.tune.scheduler
        if sched.max_epochs is not None and sched.max_epochs > self.train.epochs:
            raise ValueError(f"tune.scheduler.max_epochs: {sched.max_epochs} exceeds train.epochs ({self.train.epochs})")
        if sched.type != "fifo" and sched.grace_period > (sched.max_epochs or self.train.epochs):
            raise ValueError(f"tune.scheduler.grace_period: {sched.grace_period} exceeds the epochs a trial trains "
                             f"({sched.max_epochs or self.train.epochs})")
        if sched.type != "fifo" and metrics[0] != "accuracy":
            raise ValueError(f"tune.scheduler: {sched.type} stops trials on the first objective, which must be accuracy")
        return self

    # -- paths and storage --------------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        return Path(self.source).parent if self.source else Path(".")

    def space_path(self) -> Path:
        p = Path(self.search_space)
        return p if p.is_absolute() else self.base_dir / p

    def data_root(self) -> Path:
        """dataset.root relative to the study file."""
        p = Path(self.dataset.root).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def classes_path(self) -> Path | None:
        """dataset.classes_file relative to the study file, or None."""
        if not self.dataset.classes_file:
            return None
        p = Path(self.dataset.classes_file).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def out_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.name

    def max_epochs(self) -> int:
        return self.tune.scheduler.max_epochs or self.train.epochs

    def storage_url(self, override: str | None = None) -> str:
        """--storage beats SKSEARCH_STORAGE beats the study's `storage` beats the SQLite default."""
        url = override or os.environ.get("SKSEARCH_STORAGE") or self.storage
        return url or f"sqlite:///{self.out_dir() / 'optuna.db'}"


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file; errors name the file and key."""
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise UserError("a study file must be a mapping of keys (name, search_space, dataset, ...)", file=str(path))
    try:
        study = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, file=str(path)) from None
    study.source = str(path)
    if not study.space_path().exists():
        raise UserError(f"search space file not found: {study.space_path()}", file=str(path), key="search_space")
    classes = study.classes_path()
    if classes is not None and not classes.is_file():
        raise UserError(f"class list not found: {classes}", file=str(path), key="dataset.classes_file")
    return study


def redact_url(url: str) -> str:
    """A storage URL safe to print: the password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
