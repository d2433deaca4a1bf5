"""The Python API: build and count SK networks, read a study's trials and front as tables, run a study.

Everything here calls the owner of its concept (the builder, the counter, the storage's read view, the
tuner); it adds no behaviour of its own beyond shaping results for a notebook. Re-exported from `sksearch`:

    import sksearch
    model = sksearch.create_model("sknet50", **{"sk.r": 8})
    sksearch.count(model_spec_or_name)           # Count(params=..., macs=..., select_macs=...)
    study = sksearch.load_study("studies/quickstart.yaml")
    study.trials(); study.front(); study.model(study.best_trial())
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sksearch.spec import ArchSpec

if TYPE_CHECKING:  # imported lazily: `import sksearch` stays light (no torch, Optuna or pandas at import)
    import optuna
    import pandas as pd
    from torch import nn

    from sksearch.config import StudyConfig

class Count(NamedTuple):
    """What `count` measures: learnable parameters, multiply-adds of convolutions and linear layers (MACs),
    and the SK attention's elementwise products, which are not in `macs` (the paper's convention)."""

    params: int
    macs: int
    select_macs: int


def as_spec(name_or_spec: Any, **overrides: Any) -> ArchSpec:
    """An ArchSpec from a preset name, a spec YAML file (or an exported training config), a mapping or an
    ArchSpec, with dotted-key overrides (`**{"sk.r": 8, "widths": [64, 128, 256]}`), validated."""
    from sksearch.spec import load_spec

    if isinstance(name_or_spec, ArchSpec):
        spec = name_or_spec
    elif isinstance(name_or_spec, Mapping):
        spec = ArchSpec.from_dict(dict(name_or_spec))
    elif isinstance(name_or_spec, (str, Path)):
        spec = load_spec(name_or_spec)
    else:
        raise TypeError(f"expected a preset name, a YAML path, a mapping or an ArchSpec, not {type(name_or_spec).__name__}")
    return spec.replace(**overrides) if overrides else spec


def create_model(name_or_spec: Any, **overrides: Any) -> "nn.Module":
    """The network a spec describes, with freshly initialised weights.

    Args:
        name_or_spec: a preset name (`"sknet50"`; `sksearch inspect NAME` lists them), a spec YAML file, a
            mapping of ArchSpec fields or an `ArchSpec`.
        **overrides: dotted ArchSpec keys, e.g. `**{"sk.r": 8, "num_classes": 100}`.

    Returns:
        A `torch.nn.Module` taking `(N, C, H, W)` images of the spec's `input_size` and returning logits.
    """
    from sksearch.models import build_model

    return build_model(as_spec(name_or_spec, **overrides))


def count(name_or_spec: Any, **overrides: Any) -> Count:
    """Params and MACs of a spec, measured on the meta device (no weights are allocated; memoised per unit).

    Takes what `create_model` takes. Example: `sksearch.count("sknet50").params == 27_479_784`.
    """
    from sksearch.complexity import count as measure

    c = measure(as_spec(name_or_spec, **overrides))
    return Count(c.params, c.macs, c.select_macs)


class Study:
    """A study read from its storage, read-only: its trials and front as pandas DataFrames, each trial's spec,
    kept weights and trained network, and the Optuna study itself (`.optuna`) for everything else.

    Get one with `load_study` or `run_study`; nothing here writes to the storage.
    """

    def __init__(self, config: "StudyConfig", optuna_study: "optuna.Study", storage_url: str):
        self.config = config
        self.optuna = optuna_study
        self._url = storage_url

    @property
    def name(self) -> str:
        return self.config.name

    def __repr__(self) -> str:
        from sksearch.storage.open import redact_url

        return f"<sksearch.Study {self.name!r} in {redact_url(self._url)}: {len(self.optuna.trials)} trials>"

    def trials(self) -> "pd.DataFrame":
        """One row per trial, in trial order. Columns: number, state (Optuna's), status (full, pruned,
        infeasible, duplicate, confirmation, failed, interrupted, ...), label, M, G, r, L, paths, attention,
        accuracy, macs, params, latency_ms (predicted on the study's latency target; None when it uses
        none), epochs, seconds, on_front."""
        import pandas as pd

        from sksearch.results.pareto import front_trials
        from sksearch.storage import records
        from sksearch.storage.open import metric_names

        names = metric_names(self.optuna, self.config)
        trials = self.optuna.get_trials(deepcopy=False)
        front = {t.number for t in front_trials(self.optuna, trials)}
        rows = []
        for t in trials:
            spec = records.arch_spec(t)
            sk = spec.sk if spec is not None else None
            rows.append({
                "number": t.number, "state": t.state.name, "status": records.status(t), "label": records.label(t),
                "M": spec.M if spec else None, "G": sk.G if sk else None, "r": sk.r if sk else None,
                "L": sk.L if sk else None,
                "paths": "+".join(b.name for b in sk.branches) if sk else None,
                "attention": sk.attention if sk else None,
                "accuracy": records.accuracy(t, names), "macs": records.cost(t, records.Key.MACS),
                "params": records.cost(t, records.Key.PARAMS),
                "latency_ms": records.cost(t, records.Key.LATENCY_MS), "epochs": records.epochs_done(t),
                "seconds": records.train_seconds(t), "on_front": t.number in front,
            })
        return pd.DataFrame(rows, columns=list(_COLUMNS))

    def front(self) -> "pd.DataFrame":
        """The full-fidelity Pareto front (what the report and the dashboard show): the rows of `trials()`
        with `on_front`, cheapest first."""
        table = self.trials()
        front = table[table["on_front"]]
        return front.sort_values(["macs", "accuracy"], ascending=[True, False]).reset_index(drop=True)

    def best_trial(self) -> int:
        """The number of the front's most accurate trial (what `--trial best` means to export and attention)."""
        from sksearch.results.pareto import front_trials
        from sksearch.results.picking import pick_trial
        from sksearch.storage.open import metric_names

        trials = self.optuna.get_trials(deepcopy=False)
        front = front_trials(self.optuna, trials)
        return pick_trial(trials, front, "best", names=metric_names(self.optuna, self.config)).number

    def _trial(self, number: int) -> "optuna.trial.FrozenTrial":
        trials = self.optuna.get_trials(deepcopy=False)
        match = [t for t in trials if t.number == number]
        if not match:
            raise KeyError(f"study {self.name!r} has no trial {number} (it has 0 to {len(trials) - 1})")
        return match[0]

    def spec(self, number: int) -> ArchSpec:
        """The ArchSpec that trial `number` trained."""
        from sksearch.storage import records

        spec = records.arch_spec(self._trial(number))
        if spec is None:
            raise ValueError(f"trial {number} of study {self.name!r} has no spec (it was not a valid network)")
        return spec

    def weights(self, number: int) -> dict[str, Any]:
        """The state dict trial `number` kept (full-fidelity trials keep theirs unless `tune.keep_weights:
        none`), loaded on the CPU with `weights_only=True`."""
        import torch

        from sksearch.storage import records

        path = records.cached_weights(self.config, records.require_weights(self.optuna, self._trial(number)))
        return torch.load(path, map_location="cpu", weights_only=True)

    def model(self, number: int) -> "nn.Module":
        """Trial `number`'s network with its kept weights, in eval mode."""
        from sksearch.models import build_model

        model = build_model(self.spec(number), init=False)
        model.load_state_dict(self.weights(number), strict=True)
        return model.eval()


_COLUMNS = ("number", "state", "status", "label", "M", "G", "r", "L", "paths", "attention", "accuracy", "macs",
            "params", "latency_ms", "epochs", "seconds", "on_front")


def _config(study_file: "str | Path | StudyConfig") -> "StudyConfig":
    from sksearch.config import StudyConfig, load_study as load_config

    return study_file if isinstance(study_file, StudyConfig) else load_config(study_file)


def load_study(study_file: "str | Path | StudyConfig", storage: str | None = None) -> Study:
    """The study of a study file, read from its storage (`storage` beats `SKSEARCH_STORAGE` beats the
    file's `storage:`). Never creates a storage: a study that was never run is a `UserError` naming it."""
    from sksearch.storage.open import open_study

    cfg = _config(study_file)
    optuna_study, url = open_study(cfg, storage)
    return Study(cfg, optuna_study, url)


def run_study(study_file: "str | Path | StudyConfig", *, storage: str | None = None, address: str | None = None,
              n_trials: int | None = None, fresh: bool = False, confirm: int | None = None,
              out: Any = None) -> Study:
    """Run (or resume) a study as `sksearch run` does, then return it as `load_study` would.

    Args:
        study_file: the study YAML (or a loaded StudyConfig).
        storage: a SQLAlchemy URL (`--storage`).
        address: a Ray cluster to join (`--address`).
        n_trials: the budget, instead of the study file's (`--n-trials`).
        fresh: keep the old study under another name and start over (`--fresh`).
        confirm: retrain each front member with this many more seeds instead of searching (`--confirm K`).
        out: where the live view goes (default: standard output; `io.StringIO()` to keep it quiet).

    Raises:
        RuntimeError: the run ended with a non-zero status (too many failed trials, an exhausted Ray).
    """
    from sksearch.search.tune import run_study as run

    cfg = _config(study_file)
    status = run(cfg, storage=storage, address=address, n_trials=n_trials, fresh=fresh, confirm=confirm,
                 out=sys.stdout if out is None else out)
    if status != 0:
        raise RuntimeError(f"study {cfg.name!r} ended with status {status}")
    return load_study(cfg, storage)


__all__ = ["ArchSpec", "Count", "Study", "as_spec", "count", "create_model", "load_study", "run_study"]
