"""Latency known before training: a per-unit table measured on the target device, summed per network.

A network's inference time is predicted as the sum of its units' times (stem, each unit by its recipe and
input shape, head), each unit timed alone in eval mode with random weights (the values do not change the
time) on the study's target: device, batch, CPU threads, precision, memory format. The whole network is
timed for a sample of specs to report how far the sum is from the real thing (`check`).

Units are measured once per target and memoised three ways: in this process, in a JSON file under the
cache folder (what `sksearch inspect --latency` and later runs on this machine reuse) and, during a study,
in the study's storage (storage.records owns those keys), so reruns and other drivers share the table.
A target names the machine (CPU model or GPU name) and the torch version: a table is never reused on
other hardware.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from sksearch.complexity import count_unit
from sksearch.config import LatencyConfig
from sksearch.models import Block, blueprint, build_model
from sksearch.spec import ArchSpec

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cache_dir() -> Path:
    """Where memoised tables live: $SKSEARCH_CACHE, else $XDG_CACHE_HOME/sksearch, else ~/.cache/sksearch."""
    env = os.environ.get("SKSEARCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sksearch"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(device: str) -> str:
    """The hardware a figure belongs to (CUDA-only branch: the GPU's name)."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    return _cpu_name()


@dataclass(frozen=True)
class Target:
    """What a latency figure is measured on. `id` names the table: settings, hardware and torch version."""

    config: LatencyConfig
    hardware: str
    torch_version: str

    @classmethod
    def of(cls, config: LatencyConfig) -> "Target":
        return cls(config, _device_name(config.device), torch.__version__.split("+")[0])

    @property
    def id(self) -> str:
        c = self.config
        key = json.dumps([c.device, c.batch, c.threads, c.precision, c.channels_last, self.hardware,
                          self.torch_version])
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    def describe(self) -> str:
        c = self.config
        threads = f", {c.threads} thread{'s' * (c.threads > 1)}" if c.device == "cpu" else ""
        layout = ", channels_last" if c.channels_last else ""
        return f"{c.device} ({self.hardware}), batch {c.batch}{threads}, {c.precision}{layout}"

    def to_dict(self) -> dict:
        return {"id": self.id, "hardware": self.hardware, "torch": self.torch_version,
                **self.config.model_dump(include={"device", "batch", "threads", "precision", "channels_last"})}


@dataclass(frozen=True)
class Timing:
    """One measured module: median milliseconds and the spread (interquartile range) over `n` runs."""

    ms: float
    spread: float
    n: int

    def to_list(self) -> list:
        return [round(self.ms, 5), round(self.spread, 5), self.n]

    @classmethod
    def from_list(cls, data: list) -> "Timing":
        return cls(float(data[0]), float(data[1]), int(data[2]))


@dataclass(frozen=True)
class PartLatency:
    name: str
    ms: float
    spread: float


@dataclass(frozen=True)
class Prediction:
    """A network's predicted latency: the sum of its parts; spread = root sum of squares of the units'."""

    ms: float
    spread: float
    parts: list[PartLatency]


# -- timing ---------------------------------------------------------------------------------------------------

def _clock(c: LatencyConfig) -> Callable[[], float]:
    """One CPU thread: the timing thread's own CPU time, which a neighbour's process cannot inflate by
    preempting it (on an idle core it equals the wall time of a compute-bound forward pass). Several threads
    or a GPU: the wall clock, since the work runs outside this thread."""
    return time.thread_time if c.device == "cpu" and c.threads == 1 else time.perf_counter


def _sync(device: str) -> None:
    """Wait for queued kernels before reading the clock (CUDA-only branch; the CPU runs synchronously)."""
    if device == "cuda":
        torch.cuda.synchronize()


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _prepare(module: torch.nn.Module, input_shape: tuple[int, ...], c: LatencyConfig
             ) -> tuple[torch.nn.Module, torch.Tensor]:
    dtype = _DTYPES[c.precision]
    fmt = torch.channels_last if c.channels_last else torch.contiguous_format
    module = module.eval().to(device=c.device, dtype=dtype, memory_format=fmt)
    x = torch.randn(c.batch, *input_shape, device=c.device).to(dtype=dtype, memory_format=fmt)
    return module, x


_WARM: set[str] = set()


def _warm_up_process(c: LatencyConfig) -> None:
    """The first timing in a process runs slow (thread pool, allocator and kernel caches starting up): spend
    a fraction of a second on a plain conv first, once per device, so the first unit is timed like the rest."""
    if c.device in _WARM:
        return
    conv, x = _prepare(torch.nn.Conv2d(64, 64, 3, padding=1), (64, 32, 32), c.model_copy(update={"batch": 1}))
    with _threads(c.threads), torch.inference_mode():
        deadline = time.perf_counter() + 0.3
        while time.perf_counter() < deadline:
            conv(x)
            _sync(c.device)
    _WARM.add(c.device)


def time_module(module: torch.nn.Module, input_shape: tuple[int, ...], c: LatencyConfig) -> Timing:
    """Median and interquartile range of `module`'s forward pass, after warm-up; at least c.repeats runs
    and at least c.min_seconds of them, so that sub-millisecond units are timed over many runs."""
    _warm_up_process(c)
    module, x = _prepare(module, input_shape, c)
    with _threads(c.threads), torch.inference_mode():
        for _ in range(c.warmup):
            module(x)
        _sync(c.device)
        times: list[float] = []
        total = 0.0
        clock = _clock(c)
        while len(times) < c.repeats or (total < c.min_seconds and len(times) < 50 * c.repeats):
            start = clock()
            module(x)
            _sync(c.device)
            elapsed = clock() - start
            times.append(elapsed)
            total += elapsed
    q = statistics.quantiles(times, n=4)
    # rounded to 10 ns as stored, so a table read back predicts exactly what the one that timed it did
    return Timing(round(statistics.median(times) * 1e3, 5), round((q[2] - q[0]) * 1e3, 5), len(times))


def _read_file(path: Path, target_id: str) -> tuple[dict[str, Timing], float | None]:
    """The units and the scale of a table file, if it is one of this target (else none)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}, None
    if not isinstance(data, dict) or data.get("target", {}).get("id") != target_id:
        return {}, None
    scale = data.get("scale")
    units = {}
    for key, value in (data.get("units") or {}).items():
        try:
            units[key] = Timing.from_list(value)
        except (TypeError, ValueError, IndexError):
            continue
    return units, (float(scale) if isinstance(scale, (int, float)) and scale > 0 else None)


# -- the table ------------------------------------------------------------------------------------------------

class LatencyTable:
    """The per-unit table of one target: lookups, measurements of what is missing, and persistence.

    `sink`, when set (a study's storage, see share), receives every unit once so other drivers share it.
    `measured` counts the units this process timed itself (what the memo saves is visible in tests).
    """

    def __init__(self, config: LatencyConfig, *, path: Path | None = None):
        self.target = Target.of(config)
        self.config = config
        self.path = path if path is not None else cache_dir() / "latency" / f"{self.target.id}.json"
        self.units: dict[str, Timing] = {}
        self.measured = 0
        self.measured_while_training = 0
        self.training = False  # set by the driver once trials run: later measurements share the machine
        # Whole network / per-unit sum, fitted once per target (calibrate): timed alone, a unit keeps its
        # weights and activations in cache; in the network the units evict each other's.
        self.scale: float | None = None
        self.fitted_scale: float | None = None  # what calibrate() fitted here: the only scale save() writes
        self.sink: Callable[[str, Timing], None] | None = None
        self.shared: set[str] = set()  # units the sink already holds
        self._lock = threading.Lock()
        self._read_file()

    # persistence
    def _read_file(self) -> None:
        units, scale = _read_file(self.path, self.target.id)
        self.merge(units)
        self.scale = self.scale or scale
        self.fitted_scale = scale

    def save(self) -> None:
        """Merge this table into its file (written whole: a reader never sees half of it)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            on_disk, scale = _read_file(self.path, self.target.id)
            units = {**on_disk, **self.units}
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump({"target": self.target.to_dict(), "scale": scale or self.fitted_scale,
                           "units": {k: t.to_list() for k, t in units.items()}}, f)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only cache costs the next process a re-measurement, nothing else

    def share(self, sink: Callable[[str, Timing], None], *, already: set[str]) -> None:
        """Send every unit this table is asked for (timed now or read from the file) to `sink` once, e.g. the
        study's storage, so other drivers and reruns of the study reuse it."""
        self.sink, self.shared = sink, set(already)

    def detach(self) -> None:
        """The study is done: stop sending units to its storage (the table lives on in this process)."""
        self.sink, self.shared, self.training = None, set(), False

    def merge(self, units: dict[str, Timing]) -> None:
        with self._lock:
            for key, timing in units.items():
                self.units.setdefault(key, timing)

    # measurement
    def unit(self, block: Block, input_shape: tuple[int, ...]) -> Timing:
        key, _ = self._describe(block, input_shape)
        with self._lock:
            hit = self.units.get(key)
            if hit is None:
                with torch.device("cpu"):
                    module = block.build()
                hit = self.units[key] = time_module(module, input_shape, self.config)
                self.measured += 1
                self.measured_while_training += self.training
            if self.sink is None or key in self.shared:
                return hit
            self.shared.add(key)
        self.sink(key, hit)
        return hit

    def _describe(self, block: Block, input_shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        """The unit's table key (the module it builds: units that build the same module share an entry whatever
        the spec that names them, r and L that give the same attention width, say) and its output shape, from
        the meta build that counts its MACs (one per recipe and shape, memoised there)."""
        c = count_unit(block, tuple(input_shape))
        return c.structure, c.output_shape

    def predict(self, spec: ArchSpec) -> Prediction:
        """The spec's latency: the sum of its units' (measuring the units not in the table yet), times the
        target's calibrated scale."""
        raw = self.unit_sum(spec)
        k = self.scale or 1.0
        parts = [PartLatency(p.name, p.ms * k, p.spread * k) for p in raw.parts]
        return Prediction(raw.ms * k, raw.spread * k, parts)

    def unit_sum(self, spec: ArchSpec) -> Prediction:
        """The plain sum of the spec's units (no scale)."""
        shape = tuple(spec.input_size)
        parts = []
        before = self.measured
        for name, blocks in blueprint(spec).items():
            ms = var = 0.0
            for block in blocks:
                t = self.unit(block, shape)
                ms, var = ms + t.ms, var + t.spread ** 2
                shape = self._describe(block, shape)[1]
            parts.append(PartLatency(name, ms, var ** 0.5))
        if self.measured > before:
            self.save()
        return Prediction(sum(p.ms for p in parts), sum(p.spread ** 2 for p in parts) ** 0.5, parts)

    def measure_network(self, spec: ArchSpec) -> Timing:
        """The whole network timed as one module, for the table's error (not memoised)."""
        with torch.device("cpu"):
            model = build_model(spec)
        return time_module(model, tuple(spec.input_size), self.config)


@dataclass(frozen=True)
class CheckResult:
    """The table's prediction against whole-network timings: relative errors, one per spec."""

    errors: list[float]

    @property
    def median(self) -> float:
        return statistics.median(abs(e) for e in self.errors) if self.errors else 0.0

    @property
    def worst(self) -> float:
        return max((abs(e) for e in self.errors), default=0.0)

    def describe(self) -> str:
        return (f"per-unit sum vs whole network on {len(self.errors)} specs: median error {self.median:.1%}, "
                f"worst {self.worst:.1%}")


def check(table: LatencyTable, specs: list[ArchSpec]) -> CheckResult:
    """Relative errors of the table's predictions against the whole networks timed now."""
    return CheckResult([table.predict(s).ms / table.measure_network(s).ms - 1.0 for s in specs])


NOISY = 0.10  # whole networks that differ by more than this between two timings are too noisy to fit a scale
SPREAD = 1.25  # whole / sum ratios further apart than this across the check networks are no one factor


@dataclass(frozen=True)
class Calibration:
    """What calibrate() saw: the plain sums' errors, how far two timings of each whole network differed
    (the machine's own noise), and the scale it set (None when the noise was too high to fit one)."""

    errors: CheckResult
    noise: float
    scale: float | None
    ratios: tuple[float, ...] = ()

    def describe(self) -> str:
        if self.scale is not None:
            return f"{self.errors.describe()}; predictions scaled by {self.scale:g}"
        if self.noise > NOISY:
            return (f"{self.errors.describe()}; no scale fitted: two timings of the same networks differed by "
                    f"{self.noise:.0%} (median), too noisy to tell the table's error from the machine's")
        return (f"{self.errors.describe()}; no scale fitted: whole / sum runs from {min(self.ratios):.2f} to "
                f"{max(self.ratios):.2f} across the networks, no one factor")


def calibrate(table: LatencyTable, specs: list[ArchSpec]) -> Calibration:
    """Fit the target's scale, the median of whole network / per-unit sum over `specs`, and keep it in the
    table's file. Each whole network is timed twice (before and after its sum is read): a machine whose two
    timings differ by more than NOISY (median) is measuring its neighbours, and a sum whose error is not one
    factor (whole / sum ratios more than SPREAD apart: at large batches some networks run over their sum and
    some under) would be made worse by one; then no scale is fitted."""
    first = [table.measure_network(s).ms for s in specs]
    sums = [table.unit_sum(s).ms for s in specs]
    second = [table.measure_network(s).ms for s in specs]
    whole = [(a + b) / 2 for a, b in zip(first, second)]
    noise = statistics.median(abs(b / a - 1) for a, b in zip(first, second)) if specs else 0.0
    errors = CheckResult([s / w - 1.0 for s, w in zip(sums, whole)])
    ratios = tuple(w / s for w, s in zip(whole, sums))
    if not specs or noise > NOISY or max(ratios) / min(ratios) > SPREAD:
        return Calibration(errors, noise, None, ratios)
    table.scale = table.fitted_scale = round(statistics.median(ratios), 4)
    table.save()
    return Calibration(errors, noise, table.scale, ratios)


_TABLES: dict[str, LatencyTable] = {}


def table_for(config: LatencyConfig) -> LatencyTable:
    """The process's table for this target (one per target, so every caller shares its memo)."""
    target = Target.of(config)
    key = f"{target.id}:{cache_dir()}"
    if key not in _TABLES:
        _TABLES[key] = LatencyTable(config)
    table = _TABLES[key]
    # repeats and warm-up do not name the table but decide how new units are timed
    table.config = config
    return table
