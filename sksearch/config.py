"""Study files (studies/*.yaml): what to search, on which data, how to train a trial, how to schedule.

Every block is a pydantic model with unknown keys forbidden, so a typo is an error naming its key.

Paths are resolved here and nowhere else: after validation every path is absolute, with ~ expanded.
search_space, dataset.root and dataset.classes_file are relative to the study file's folder; output_dir
(default runs/<name>) and artifacts (default <output_dir>/artifacts) are relative to the working directory,
as the storage contract says. The data geometry (num_classes, input size) is derived once per load and
cached: the class list is read once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic.json_schema import SkipJsonSchema
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError,
                      ValidationInfo, WithJsonSchema, field_validator, model_validator)

from sksearch.errors import UserError, from_validation_error
from sksearch.units import parse_count
from sksearch.yamlio import load_yaml

# the schema says what a user may write (8000000 or "8M"); parse_count turns it into an int
Count = Annotated[int, BeforeValidator(parse_count), Field(gt=0),
                  WithJsonSchema({"anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "string"}]})]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Geometry(NamedTuple):
    num_classes: int
    input_size: list[int]  # [3, H, W]


def absolute(path: str | Path, base: Path) -> Path:
    """`path` with ~ expanded, relative to `base`; normalised but symlinks kept (messages show the user's path)."""
    return Path(os.path.abspath(base / Path(path).expanduser()))


def display_path(path: str | Path) -> str:
    """An absolute path as a message shows it: relative to the working directory when it lies below it."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def _base_dir(info: ValidationInfo) -> Path:
    """The folder relative paths start from: the study file's (load_study passes it), else the working directory."""
    base = (info.context or {}).get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def read_class_list(path: str | Path) -> list[str]:
    """One class folder name (wnid) a line; blank lines and '#' comments ignored; order = label order."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read the class list {path}: {exc.strerror}", key="dataset.classes_file") from None
    classes = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    classes = [c for c in classes if c]
    if not classes:
        raise UserError(f"the class list {path} names no classes", key="dataset.classes_file")
    dupes = sorted({c for c in classes if classes.count(c) > 1})
    if dupes:
        raise UserError(f"the class list {path} repeats {', '.join(dupes)}", key="dataset.classes_file")
    return classes


class DatasetConfig(_Block):
    # root and classes_file: ~ expanded, relative to the study file; absolute once in a StudyConfig.
    name: Literal["synthetic", "cifar10", "cifar100", "imagenet_subset"] = Field(
        "synthetic", description="The data set: built-in synthetic shapes (no download), CIFAR-10/100 or an "
                                 "ImageNet-style folder.")
    root: str = Field("data", description="Where the files are, relative to the study file: torchvision's CIFAR "
                                          "folder, or a folder with train/ and val/ for imagenet_subset.")
    download: bool = Field(False, description="CIFAR only: let torchvision download the archives into root.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Share of the training set held out (stratified, "
                                                             "seeded) as the validation split the search selects on.")
    classes_file: str | None = Field(None, description="imagenet_subset: one wnid a line; selects the subset and "
                                                       "its label order.")
    resolution: int = Field(64, ge=16, description="imagenet_subset: the training crop size in pixels.")
    train_size: int | None = Field(None, ge=10, description="synthetic: training images (default 10000); others: "
                                                            "an optional seeded cap.")
    test_size: int | None = Field(None, ge=10, description="synthetic: test images (default 2000); others: an "
                                                           "optional seeded cap.")
    workers: int = Field(4, ge=0, description="imagenet_subset: DataLoader worker processes.")
    seed: int = Field(0, description="Seed of the data generation and of the validation split.")

    # Derived once, cached: the class list is read (and the train/ folder counted) at most once per load.
    # Keyed by what they derive from, so a model_copy(update=...) never serves a stale value.
    _classes: dict[str, list[str]] = PrivateAttr(default_factory=dict)
    _geometry: dict[tuple, Geometry] = PrivateAttr(default_factory=dict)

    def _make_absolute(self, base: Path) -> None:
        # Called by StudyConfig's validator (a default DatasetConfig is built without the study's folder).
        self.root = str(absolute(self.root, base))
        if self.classes_file:
            self.classes_file = str(absolute(self.classes_file, base))

    def class_names(self) -> list[str] | None:
        """The wnids of dataset.classes_file in label order (read once), or None when no list is given."""
        if not self.classes_file:
            return None
        if self.classes_file not in self._classes:
            self._classes[self.classes_file] = read_class_list(self.classes_file)
        return self._classes[self.classes_file]

    def geometry(self) -> Geometry:
        """(num_classes, input_size) of this data set, so sampled specs can be fitted to it."""
        key = (self.name, self.root, self.classes_file, self.resolution)
        if key not in self._geometry:
            self._geometry[key] = self._derive_geometry()
        return self._geometry[key]

    def _derive_geometry(self) -> Geometry:
        if self.name in ("synthetic", "cifar10"):
            return Geometry(10, [3, 32, 32])
        if self.name == "cifar100":
            return Geometry(100, [3, 32, 32])
        classes = self.class_names()
        if classes is not None:
            n = len(classes)
        else:
            train = Path(self.root) / "train"
            if not train.is_dir():
                raise UserError(f"no ImageNet-style folder at {train} (expected train/<wnid>/*.JPEG)", key="dataset.root")
            n = sum(1 for d in train.iterdir() if d.is_dir())
        return Geometry(n, [3, self.resolution, self.resolution])

    def needs_images_for_geometry(self) -> bool:
        """An ImageNet subset without a class list counts its classes in train/, which may not be here
        (report and export run on machines without the images): then geometry waits for first use."""
        return self.name == "imagenet_subset" and not self.classes_file


COMPILE_MODES = (True, False, "default", "reduce-overhead", "max-autotune")


def _compile_mode(value: object) -> object:
    # A union's own error ("should be a valid boolean ... and 1 more problem") hides the choices.
    if isinstance(value, bool) or value in COMPILE_MODES:
        return value
    raise ValueError("expected true, false, default, reduce-overhead or max-autotune")


class TrainConfig(_Block):
    """One trial's training recipe (defaults: the paper's CIFAR recipe, at a search-sized budget)."""

    epochs: int = Field(10, ge=1, description="Epochs of a trial trained for the full budget.")
    batch_size: int = Field(128, ge=1, description="Training batch size.")
    lr: float = Field(0.1, gt=0, description="Peak learning rate of SGD.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    nesterov: bool = Field(False, description="Nesterov momentum.")
    weight_decay: float = Field(5e-4, ge=0, description="Weight decay on conv and linear weights (not on "
                                                        "BatchNorm parameters or biases).")
    schedule: Literal["step", "cosine", "constant"] = Field(
        "step", description="Learning-rate schedule over the full train.epochs; step: lr / 10 at 50 % and 75 %.")
    warmup_epochs: float = Field(0, ge=0, description="Linear warm-up, in epochs (fractions allowed).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    amp: bool = Field(True, description="Mixed precision on CUDA (bf16, or fp16 with loss scaling before "
                                        "Ampere); CPU trials stay fp32.")
    channels_last: bool = Field(True, description="NHWC memory format on every device (oneDNN is faster that "
                                                  "way on CPU too).")
    compile: Annotated[bool | Literal["default", "reduce-overhead", "max-autotune"],
                       BeforeValidator(_compile_mode)] = Field(
        False, description="torch.compile the training step: true/default, max-autotune, or reduce-overhead "
                           "(CUDA graphs, for small launch-bound nets on a GPU); false runs eager.")
    seed: int = Field(0, description="Seed of weight initialisation and batch order.")


class Objective(_Block):
    metric: Literal["accuracy", "macs", "params", "latency"] = Field(
        description="What to optimise; accuracy comes first and is maximised.")
    direction: Literal["maximize", "minimize"] = Field(description="maximize for accuracy, minimize for costs.")


class Constraints(_Block):
    max_macs: Count | None = Field(None, description="Budget on multiply-adds (e.g. 300M, 1.5G), checked on the "
                                                     "meta device before a trial trains.")
    max_params: Count | None = Field(None, description="Budget on learnable parameters (e.g. 5M).")
    max_latency_ms: float | None = Field(None, gt=0, description="Budget on the predicted inference time in "
                                                                 "milliseconds on the `latency` target, checked "
                                                                 "before a trial trains.")


class LatencyConfig(_Block):
    device: Literal["cpu", "cuda"] = Field("cpu", description="Where latency is measured: cpu, or cuda (the "
                                                             "driver's GPU; the driver must have one).")
    batch: int = Field(1, ge=1, description="Images per forward pass (1: one request at a time).")
    threads: int = Field(1, ge=1, description="cpu: torch threads while timing.")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="The dtype of weights and inputs.")
    channels_last: bool = Field(False, description="Time in the NHWC memory format.")
    warmup: int = Field(3, ge=0, description="Untimed runs before timing each unit.")
    repeats: int = Field(20, ge=4, description="Timed runs per unit at least; the median is kept, the "
                                               "interquartile range is its spread.")
    min_seconds: float = Field(0.1, ge=0, description="Time each unit for at least this long (more runs for "
                                                       "fast units).")
    presample: int = Field(256, ge=0, description="Specs drawn from the space before any trial starts whose "
                                                  "units are timed then, while no trial shares the machine.")
    check: int = Field(6, ge=0, description="Whole networks timed before trials start: the first run of a study "
                                            "fits the target's scale on them (the median of whole / per-unit "
                                            "sum), later runs report the table's error on them.")


class SchedulerConfig(_Block):
    type: Literal["fifo", "asha", "pareto_asha"] = Field(
        "fifo", description="fifo trains every trial to the end; asha stops by accuracy; pareto_asha by "
                            "accuracy vs cost.")
    grace_period: int = Field(1, ge=1, description="Epochs before the first rung.")
    reduction_factor: float = Field(3, gt=1, description="Rungs at grace_period x rf^k epochs; about 1 in rf "
                                                         "continues at each.")
    max_epochs: int | None = Field(None, ge=1, description="The last rung; default train.epochs.")
    cost: Literal["macs", "params", "latency"] = Field(
        "macs", description="pareto_asha: the cost axis of the dominance sort (latency: the predicted "
                            "milliseconds on the `latency` target).")
    keep_most_accurate: bool = Field(True, description="pareto_asha: also promote a rung's top 1/rf by accuracy "
                                                       "alone.")
    pause: bool = Field(False, description="pareto_asha with the ehvi sampler: a trial a rung stops keeps its "
                                           "training state, and the sampler resumes it when that promises more "
                                           "front than a new spec.")


class SamplerConfig(_Block):
    type: Literal["tpe", "nsga2", "random", "gp", "ehvi"] = Field(
        "tpe", description="tpe, nsga2, random and gp are Optuna's samplers; ehvi ranks candidate specs by the "
                           "expected gain of the front's hypervolume.")
    seed: int | None = Field(0, description="Sampler seed; null for a new one every run.")
    n_startup_trials: int | None = Field(None, ge=0, description="tpe/gp/ehvi: random trials before modelling.")
    pool_size: int = Field(256, ge=8, description="ehvi: candidate specs drawn per proposal (each counted on "
                                                  "the meta device).")


def _one_gpu_at_most(gpu: float) -> float:
    if gpu > 1:  # a trial trains on one device; a second reserved GPU would sit idle
        raise ValueError(f"{gpu:g} GPUs per trial: a trial trains on one GPU; use at most 1 (or a fraction, "
                         "0.5 or 0.25, to share one GPU between trials)")
    return gpu


class Resources(_Block):
    cpu: float = Field(1, gt=0, description="CPUs per trial; torch uses that many threads.")
    gpu: Annotated[float, AfterValidator(_one_gpu_at_most)] = Field(
        0, ge=0, description="GPUs per trial: 0 trains on the CPU; a fraction (0.5, 0.25) shares one GPU.")


class TuneConfig(_Block):
    n_trials: int = Field(8, ge=1, description="The budget: trials trained (full or pruned) over all runs and "
                                               "drivers of the study.")
    max_concurrent: int = Field(1, ge=1, description="Trials trained at once by this driver.")
    resources_per_trial: Resources = Field(default_factory=Resources, description="What Ray reserves per trial.")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="Early stopping.")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="Who proposes the next spec.")
    max_failures: int = Field(3, ge=0, description="The study stops when more trials than this fail in one run.")
    keep_weights: Literal["full", "all", "none"] = Field(
        "full", description="Which trials keep their final weights as Optuna artifacts: full (trained for the "
                            "full budget), all (pruned ones too), none.")


class StorageConfig(_Block):
    url: str | None = Field(None, description="A SQLAlchemy URL; default sqlite:///<output_dir>/optuna.db.")
    retry_seconds: float = Field(300, ge=0, description="How long the driver retries a storage that stops "
                                                        "answering (a database restart, a failover) before it "
                                                        "stops with exit 1; 0 stops at the first error.")


class StudyConfig(_Block):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="The study's name in the storage.")
    search_space: str = Field(description="The space file, relative to the study file.")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig, description="The data every trial trains on.")
    objectives: list[Objective] = Field(
        default_factory=lambda: [Objective(metric="accuracy", direction="maximize"),
                                 Objective(metric="macs", direction="minimize")],
        min_length=1, description="accuracy first, then the costs the front trades it against.",
    )
    constraints: Constraints = Field(default_factory=Constraints, description="Budgets checked before training.")
    latency: LatencyConfig | None = Field(None, description="The target latency is predicted for (used when an "
                                                            "objective, a constraint or the scheduler's cost "
                                                            "names latency; default cpu, batch 1, 1 thread, "
                                                            "fp32).")
    train: TrainConfig = Field(default_factory=TrainConfig, description="One trial's training recipe.")
    tune: TuneConfig = Field(default_factory=TuneConfig, description="How Ray Tune schedules the trials.")
    storage: StorageConfig | None = Field(
        None, description="A SQLAlchemy URL (default sqlite:///<output_dir>/optuna.db), or {url, retry_seconds}. "
                          "--storage and SKSEARCH_STORAGE take precedence over the URL.")
    @field_validator("storage", mode="before", json_schema_input_type=str | StorageConfig | None)
    @classmethod
    def _storage_url_alone(cls, value: object) -> object:
        # A bare URL is the short form of {url: ...}: one model, so an error names its key (storage.retry_seconds).
        return {"url": value} if isinstance(value, str) else value

    # Relative to the WORKING directory (not the study file), as the storage contract says. Absolute after
    # validation, so a Ray worker or a later chdir sees the same folder.
    output_dir: str | None = Field(None, description="Storage, report and Ray's files; default runs/<name>, "
                                                     "relative to the working directory.")
    # On a cluster it must be a path every node sees (Ray workers stage weights there).
    artifacts: str | None = Field(None, description="The kept weights' artifact store (a folder every node "
                                                    "sees); default <output_dir>/artifacts.")

    # Set by load_study, not by the file.
    source: SkipJsonSchema[str | None] = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check(self) -> "StudyConfig":
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"objectives: each metric may appear once (got {metrics})")
        # The schedulers, the report and the front all read accuracy as the first, maximised objective.
        if "accuracy" not in metrics:
            raise ValueError("objectives: accuracy must be one of the objectives (the first, maximised)")
        if metrics[0] != "accuracy":
            raise ValueError(f"objectives[0].metric: accuracy must be the first objective (got {metrics[0]})")
        if self.objectives[0].direction != "maximize":
            raise ValueError("objectives[0].direction: accuracy is maximised (direction: maximize)")
        sched = self.tune.scheduler
        if sched.max_epochs is not None and sched.max_epochs > self.train.epochs:
            raise ValueError(f"tune.scheduler.max_epochs: {sched.max_epochs} exceeds train.epochs ({self.train.epochs})")
        if sched.type != "fifo" and sched.grace_period > (sched.max_epochs or self.train.epochs):
            raise ValueError(f"tune.scheduler.grace_period: {sched.grace_period} exceeds the epochs a trial trains "
                             f"({sched.max_epochs or self.train.epochs})")
        if sched.type != "fifo" and metrics[0] != "accuracy":
            raise ValueError(f"tune.scheduler: {sched.type} stops trials on the first objective, which must be accuracy")
        # Only pareto_asha skips the rungs a continuation passed before it paused, and only ehvi chooses to resume.
        if sched.pause and (sched.type != "pareto_asha" or self.tune.sampler.type != "ehvi"):
            raise ValueError(f"tune.scheduler.pause: needs tune.scheduler.type pareto_asha and tune.sampler.type ehvi "
                             f"(got {sched.type} and {self.tune.sampler.type})")
        return self

    @model_validator(mode="after")
    def _absolute_paths(self, info: ValidationInfo) -> "StudyConfig":
        """Every path absolute, once: relative ones against the study file's folder (load_study passes it as
        the validation context; without one, the working directory), output_dir against the working
        directory. Idempotent, so the dict a Ray worker validates again keeps the same paths."""
        base = _base_dir(info)
        self.search_space = str(absolute(self.search_space, base))
        self.dataset = self.dataset.model_copy()  # a DatasetConfig passed in by the caller stays as it was
        self.dataset._make_absolute(base)
        self.output_dir = str(absolute(self.output_dir or Path("runs") / self.name, Path.cwd()))
        self.artifacts = str(absolute(self.artifacts or Path(self.output_dir) / "artifacts", Path.cwd()))
        return self

    # -- paths and storage (all absolute: see _absolute_paths) --------------------------------------------
    def space_path(self) -> Path:
        return Path(self.search_space)

    def out_dir(self) -> Path:
        return Path(self.output_dir or Path("runs") / self.name)

    def artifact_dir(self) -> Path:
        """The kept weights' artifact store (absolute)."""
        return Path(self.artifacts or self.out_dir() / "artifacts")

    def geometry(self) -> Geometry:
        """The data set's (num_classes, input_size), derived once; errors name the study file."""
        try:
            return self.dataset.geometry()
        except UserError as exc:
            raise exc.in_file(self.source) if self.source else exc

    def max_epochs(self) -> int:
        return self.tune.scheduler.max_epochs or self.train.epochs

    def uses_latency(self) -> bool:
        """Whether anything in the study reads latency (an objective, a constraint, pareto_asha's cost)."""
        return ("latency" in [o.metric for o in self.objectives] or self.constraints.max_latency_ms is not None
                or (self.tune.scheduler.type == "pareto_asha" and self.tune.scheduler.cost == "latency"))

    def latency_target(self) -> LatencyConfig | None:
        """The latency target when the study uses latency (its `latency` block, or the default one)."""
        return (self.latency or LatencyConfig()) if self.uses_latency() else None

    def storage_url(self, override: str | None = None) -> str:
        """--storage beats SKSEARCH_STORAGE beats the study's `storage` beats the SQLite default."""
        own = self.storage.url if self.storage else None
        url = override or os.environ.get("SKSEARCH_STORAGE") or own
        return url or f"sqlite:///{self.out_dir() / 'optuna.db'}"

    def storage_retry_seconds(self) -> float:
        return (self.storage or StorageConfig()).retry_seconds


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file; errors name the file and key.

    Every path comes back absolute (see StudyConfig._absolute_paths) and the data geometry is derived here,
    once (unless it needs the image folder: DatasetConfig.needs_images_for_geometry)."""
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise UserError("a study file must be a mapping of keys (name, search_space, dataset, ...)", file=str(path))
    try:
        study = StudyConfig.model_validate(data, context={"base_dir": absolute(path, Path.cwd()).parent})
    except ValidationError as exc:
        raise from_validation_error(exc, file=str(path)) from None
    study.source = str(path)
    if not study.space_path().exists():
        raise UserError(f"search space file not found: {study.space_path()}", file=str(path), key="search_space")
    ds = study.dataset
    if ds.classes_file is not None and not Path(ds.classes_file).is_file():
        raise UserError(f"class list not found: {ds.classes_file}", file=str(path), key="dataset.classes_file")
    if not ds.needs_images_for_geometry():
        study.geometry()
    target = study.latency_target()
    if target is not None:
        require_latency_device(target, key="latency.device", file=str(path))
    return study


def require_latency_device(target: LatencyConfig, *, key: str, file: str | None = None) -> None:
    """A CUDA latency target needs a GPU where the timing runs (the driver, or `inspect`): else a UserError."""
    if target.device != "cuda":
        return
    import torch  # only here: a study file without a CUDA latency target loads without torch

    if not torch.cuda.is_available():
        raise UserError("latency on cuda needs a GPU where it is timed (the driver, or inspect), and torch sees "
                        "none here; "
                        "use device: cpu", file=file, key=key)
