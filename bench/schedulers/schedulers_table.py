"""Record real learning curves on the built-in synthetic data, for a tabular scheduler benchmark.

Samples specs from search_spaces/tiny_cifar.yaml (random, seeded), trains each for --epochs epochs with
sksearch's own trainer and the quick start's recipe, and writes every per-epoch validation accuracy to a JSON
table that `bench_schedulers_tabular.py` replays through the real schedulers (as tabular NAS benchmarks do).

    .venv/bin/python bench/schedulers/schedulers_table.py [--specs 32] [--epochs 4] [--jobs 2] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import optuna  # noqa: E402

from sksearch.config import Constraints, DatasetConfig, TrainConfig  # noqa: E402
from sksearch.search.feasibility import check_spec  # noqa: E402
from sksearch.search.space import SearchSpace  # noqa: E402

DATA = DatasetConfig(name="synthetic", train_size=2000, test_size=100, seed=0)


def sample_specs(n: int, seed: int) -> list[dict]:
    space = SearchSpace.load(REPO / "search_spaces" / "tiny_cifar.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    specs, keys = [], set()
    while len(specs) < n:
        trial = study.ask()
        feas = check_spec(space.sample(trial), Constraints(), num_classes=10, input_size=[3, 32, 32])
        study.tell(trial, 0.0)
        if feas.feasible and feas.spec.key() not in keys:
            keys.add(feas.spec.key())
            specs.append({"spec": feas.spec.to_dict(), "label": feas.spec.sk.label(), "macs": feas.macs,
                          "params": feas.params})
    return specs


def train_one(args: tuple[dict, int]) -> dict:
    import torch

    from sksearch.data import make_data
    from sksearch.spec import ArchSpec
    from sksearch.training.loop import train_trial

    entry, epochs = args
    torch.set_num_threads(1)
    recipe = TrainConfig(epochs=epochs, batch_size=32, lr=0.05, nesterov=True, schedule="cosine", warmup_epochs=0.3)
    data = make_data(DATA, batch_size=recipe.batch_size, device=torch.device("cpu"))
    t0 = time.perf_counter()
    result = train_trial(ArchSpec.from_dict(entry["spec"]), data, recipe, device=torch.device("cpu"))
    return {**entry, "curve": [round(r.val_accuracy, 4) for r in result.history],
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--specs", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "bench" / "tables" / "synthetic_curves.json"))
    args = p.parse_args()
    specs = sample_specs(args.specs, args.seed)
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        rows = []
        for row in pool.imap_unordered(train_one, [(s, args.epochs) for s in specs]):
            rows.append(row)
            print(f"{len(rows):3d}/{len(specs)} {row['label']:<34} {row['macs'] / 1e6:6.1f}M MACs "
                  f"{row['seconds']:5.1f}s  {row['curve']}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"data": DATA.model_dump(), "epochs": args.epochs, "trials": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
