"""The SK benchmark table (issue 13): real 9-epoch learning curves of random specs from studies/sk_bench.yaml.

Each row is one spec trained with one training seed by sksearch's own trainer, exactly as a trial of that
study (search.trial.train_as_trial), with the validation accuracy of every epoch:

    {"study": <studies/sk_bench.yaml as a mapping>,
     "rows": [{"spec": <ArchSpec mapping>, "seed": S, "accuracy": [...], "macs": M, "params": P,
               "train_seconds": T}, ...]}

Specs are drawn at random (seeded) from the study's space, kept if feasible and distinct as networks
(r and L do not change a network without attention, so such specs are written with the base's r and L).
The first --seeded specs are trained with --seeds seeds, the rest with seed 0. The script is resumable:
it skips every (spec, seed) already in the table and writes the table after each row, so it can run in the
background over several sittings. `--reproduce N` retrains row N through the public command instead
(`sksearch run` on the study with a space holding only `base:`) and compares the curves.

    .venv/bin/python bench/sk_table.py [--specs 96] [--seeded 16] [--seeds 3] [--jobs 2]
    .venv/bin/python bench/sk_table.py --reproduce 0

CPU cost of the committed table (128 rows): 4,294 s of training at one thread per row (median row 31 s,
14-77 s), 36 minutes of wall time with --jobs 2 on the 2-core machine of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STUDY = REPO / "studies" / "sk_bench.yaml"
TABLE = REPO / "bench" / "tables" / "sk_bench.json"


class SpecChecker:
    """The study's space, and sksearch's feasibility verdict (spec, MACs, constraints) of a sampled spec,
    cached by the spec as sampled: shared by the replay's Optuna-driven searchers. Not by the network it
    builds: two specs of one network (r and L giving the same attention widths, paths in another order) answer
    with different nearest rows, and a verdict cached for the first would make a replay depend on what other
    replays in the same process sampled before it."""

    def __init__(self, cfg: Any) -> None:
        from sksearch.search.space import SearchSpace

        self.cfg = cfg
        self.space = SearchSpace.load(cfg.space_path())
        self.geometry = cfg.geometry()
        self._checked: dict[str, Any] = {}

    def check(self, spec: dict[str, Any]) -> Any:
        from sksearch.search.feasibility import check_spec

        key = json.dumps(spec, sort_keys=True, default=str)
        if key not in self._checked:
            n, size = self.geometry
            self._checked[key] = check_spec(spec, self.cfg.constraints, num_classes=n, input_size=size)
        return self._checked[key]


def sample_specs(n: int, seed: int, study: Path = STUDY) -> list[dict[str, Any]]:
    """n feasible specs of the study's space that build n different networks, in the order the dry run's
    seeded random sampler draws them (sksearch.search.dryrun.distinct_networks)."""
    from sksearch.config import load_study
    from sksearch.search.dryrun import distinct_networks

    found = distinct_networks(load_study(study), n, seed=seed, max_draws=100 * n)
    if len(found) < n:
        raise SystemExit(f"only {len(found)} distinct feasible networks in {100 * n} draws")
    return [{"spec": f.spec.to_dict(), "macs": int(f.macs), "params": int(f.params)} for f in found]


def train_row(job: tuple[dict[str, Any], int]) -> dict[str, Any]:
    import torch

    from sksearch.config import load_study
    from sksearch.search.trial import train_as_trial
    from sksearch.spec import ArchSpec

    entry, seed, study = job
    cfg = load_study(study)
    torch.set_num_threads(max(1, int(cfg.tune.resources_per_trial.cpu)))  # as a trial's worker does
    t0 = time.perf_counter()
    result = train_as_trial(cfg, ArchSpec.from_dict(entry["spec"]), seed=seed, epochs=cfg.max_epochs(),
                            device=torch.device("cpu"))
    return {"spec": entry["spec"], "seed": seed, "accuracy": [round(r.val_accuracy, 4) for r in result.history],
            "macs": entry["macs"], "params": entry["params"], "train_seconds": round(time.perf_counter() - t0, 1)}


def row_key(row: dict[str, Any]) -> str:
    """One row per network and seed: specs that build the same network (ArchSpec.identity) share a key."""
    from sksearch.spec import ArchSpec

    return json.dumps([ArchSpec.from_dict(row["spec"]).identity(), row["seed"]])


def load_table(path: Path, study: Path = STUDY) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"study": yaml.safe_load(study.read_text()), "rows": []}


def write_table(path: Path, table: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(table, indent=None, separators=(",", ":")).replace('},{"spec"', '},\n{"spec"'))
    os.replace(tmp, path)  # a killed run leaves the last complete table


def build(args: argparse.Namespace) -> None:
    study = Path(args.study)
    out = Path(args.out or REPO / "bench" / "tables" / f"{study.stem}.json")
    table = load_table(out, study)
    done = {row_key(r) for r in table["rows"]}
    specs = sample_specs(args.specs, args.sample_seed, study)
    jobs = [(s, 0, study) for s in specs] + [(s, k, study) for s in specs[:args.seeded] for k in range(1, args.seeds)]
    todo = [j for j in jobs if row_key({"spec": j[0]["spec"], "seed": j[1]}) not in done]
    print(f"{len(jobs)} rows planned ({args.specs} specs, {args.seeded} of them x {args.seeds} seeds); "
          f"{len(jobs) - len(todo)} in {out} already, {len(todo)} to train", flush=True)
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=8) as pool:
        for i, row in enumerate(pool.imap_unordered(train_row, todo), 1):
            table["rows"].append(row)
            write_table(out, table)
            print(f"{i:3d}/{len(todo)} seed {row['seed']} {row['macs'] / 1e6:5.1f}M MACs {row['train_seconds']:6.1f}s "
                  f"acc {row['accuracy'][0]:.3f} {row['accuracy'][2]:.3f} {row['accuracy'][-1]:.3f}  "
                  f"({(time.perf_counter() - started) / 60:.0f} min)", flush=True)


def reproduce(args: argparse.Namespace) -> None:
    """Retrain one row with `sksearch run` (a base-only space, the row's seed) and compare the curves."""
    import optuna

    from sksearch.storage import records

    row = load_table(Path(args.out or TABLE))["rows"][args.reproduce]
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "row.yaml"
        space.write_text(yaml.safe_dump({"description": f"row {args.reproduce}", "base": row["spec"]}))
        # The table's study with two keys changed: the space (this row's spec only) and the training seed.
        study = yaml.safe_load(STUDY.read_text())
        study.update(search_space=str(space), output_dir=f"{tmp}/out")
        study["train"]["seed"] = row["seed"]
        study_file = Path(tmp) / "sk_bench_row.yaml"
        study_file.write_text(yaml.safe_dump(study, sort_keys=False))
        cmd = [sys.executable, "-m", "sksearch.run", str(study_file)]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=REPO)
        from sksearch.config import load_study

        cfg = load_study(study_file)
        study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
        trial = next(t for t in study.trials if t.user_attrs.get(records.Key.FULL_FIDELITY))
        curve = [round(v, 4) for v in trial.user_attrs[records.Key.ACCURACY_HISTORY]]
    print(f"table  : {row['accuracy']}\nsksearch run: {curve}")
    same = curve == row["accuracy"]
    print("identical" if same else "DIFFERENT")
    sys.exit(0 if same else 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--specs", type=int, default=96)
    p.add_argument("--seeded", type=int, default=16, help="how many specs are trained with every seed")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--study", default=str(STUDY), help="the study whose space and recipe make the table")
    p.add_argument("--out", help="the table (default bench/tables/<study file name>.json)")
    p.add_argument("--reproduce", type=int, metavar="ROW", help="retrain row ROW with `sksearch run` and compare")
    args = p.parse_args()
    reproduce(args) if args.reproduce is not None else build(args)


if __name__ == "__main__":
    main()
