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

from sksearch.config import DatasetConfig, StudyConfig, TrainConfig  # noqa: E402
from sksearch.search.dryrun import distinct_networks  # noqa: E402

DATA = DatasetConfig(name="synthetic", train_size=2000, test_size=100, seed=0)


def curve_study() -> StudyConfig:
    """The study the table's specs are drawn from: tiny_cifar.yaml on DATA, no budgets."""
    return StudyConfig.model_validate({"name": "synthetic_curves", "dataset": DATA.model_dump(),
                                       "search_space": str(REPO / "search_spaces" / "tiny_cifar.yaml")})


def sample_specs(n: int, seed: int) -> list[dict]:
    """n feasible specs of search_spaces/tiny_cifar.yaml that build n different networks, in the order the dry
    run's seeded sampler draws them (sksearch.search.dryrun.distinct_networks, ArchSpec.identity).

    The committed bench/tables/synthetic_curves.json was drawn before, by a copy of this loop that told specs
    apart by their dictionaries: it holds 2 pairs of equal networks, and this function draws 24 of its 32 specs
    in the same order (seed 0); rebuilding it would move bench_schedulers_tabular.py's figures."""
    found = distinct_networks(curve_study(), n, seed=seed, max_draws=100 * n)
    if len(found) < n:
        raise SystemExit(f"only {len(found)} distinct feasible networks in {100 * n} draws")
    return [{"spec": f.spec.to_dict(), "label": f.spec.sk.label(), "macs": f.macs, "params": f.params}
            for f in found]


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
