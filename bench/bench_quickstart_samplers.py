"""The quick start with each sampler: `sksearch run studies/quickstart.yaml` as shipped (TPE) and with
`tune.sampler.type: ehvi`, the rest unchanged, `--runs` times each with sampler seeds 0, 1, ... (the same
training seed), interleaved so that both see the same machine load.

Per run: wall time, the full-fidelity front (members, hypervolume with the MACs budget as the cost scale, as
the report computes it), the best accuracy. Baseline: the shipped sampler (TPE) on the same seeds.

    .venv/bin/python bench/bench_quickstart_samplers.py [--runs 3] [--samplers tpe ehvi]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import machine_note, markdown_table  # noqa: E402

from sksearch.config import load_study  # noqa: E402
from sksearch.results.pareto import Normaliser, front_trials, hypervolume  # noqa: E402
from sksearch.storage.open import metric_names  # noqa: E402

STUDY = REPO / "studies" / "quickstart.yaml"


def one_run(folder: Path, sampler: str, seed: int) -> dict:
    data = yaml.safe_load(STUDY.read_text())
    data["search_space"] = str((STUDY.parent / data["search_space"]).resolve())
    data["tune"]["sampler"] = {**data["tune"]["sampler"], "type": sampler, "seed": seed}
    data["output_dir"] = str(folder / "runs")
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "sksearch.run", str(path)], cwd=folder, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(run.stdout + run.stderr)
    cfg = load_study(path)
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url())
    norm = Normaliser.for_study(study, metric_names(study, cfg), cfg)
    front = front_trials(study)
    return {"wall": wall, "hv": hypervolume(study.get_trials(), norm), "front": len(front),
            "best": max((t.values[0] for t in front), default=0.0),
            "labels": sorted(t.user_attrs.get("label", "") for t in front)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--samplers", nargs="+", default=["tpe", "ehvi"])
    args = p.parse_args()
    results: dict[str, list[dict]] = {s: [] for s in args.samplers}
    for seed in range(args.runs):
        for sampler in args.samplers:
            with tempfile.TemporaryDirectory() as d:
                r = one_run(Path(d), sampler, seed)
            results[sampler].append(r)
            print(f"{sampler} seed {seed}: {r['wall']:.0f} s, hypervolume {r['hv']:.4f}, front {r['front']} "
                  f"({', '.join(r['labels'])}), best {r['best']:.3f}", flush=True)
    rows = []
    for sampler, rs in results.items():
        rows.append([sampler, ", ".join(f"{r['hv']:.4f}" for r in rs), f"{statistics.mean(r['hv'] for r in rs):.4f}",
                     ", ".join(str(r["front"]) for r in rs), ", ".join(f"{r['best']:.3f}" for r in rs),
                     ", ".join(f"{r['wall']:.0f}" for r in rs)])
    print()
    print(markdown_table(["sampler", "hypervolume per run", "mean", "front members", "best accuracy", "wall s"], rows))
    print(machine_note())


if __name__ == "__main__":
    main()
