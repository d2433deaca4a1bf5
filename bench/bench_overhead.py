"""Share of the quick start's wall time spent outside training (Ray start-up, scheduling, storage).

Runs studies/quickstart.yaml from scratch in a temporary folder, then reads the storage: each trial's
`train_seconds` is the time its Ray trainable spent building data and model and training; the slots'
total time is wall x max_concurrent. Baseline: that slot time; figure: 1 - trained / slot time.

    .venv/bin/python bench/bench_overhead.py [--runs 1]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import machine_note, markdown_table  # noqa: E402

from sksearch.config import load_study  # noqa: E402


def one_run(tmp: Path) -> dict:
    study = REPO / "studies" / "quickstart.yaml"
    cfg = load_study(study)
    url = f"sqlite:///{tmp / 'optuna.db'}"
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "sksearch.run", str(study), "--storage", url, "--fresh"],
                         cwd=tmp, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(run.stdout + run.stderr)
    trials = optuna.load_study(study_name=cfg.name, storage=url).get_trials()
    trained = sum(float(t.user_attrs.get("train_seconds", 0.0)) for t in trials)
    slots = cfg.tune.max_concurrent
    ray_line = next((ln for ln in run.stdout.splitlines() if ln.startswith("time:")), "")
    return {"wall": wall, "trained": trained, "slots": slots, "share": 1 - trained / (wall * slots),
            "trials": sum(1 for t in trials if t.user_attrs.get("slot")), "line": ray_line}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args()
    rows = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            r = one_run(Path(d))
        rows.append([i + 1, f"{r['wall']:.1f}", f"{r['trained']:.1f}", r["slots"], r["trials"], f"{r['share']:.1%}"])
        print(r["line"], flush=True)
    print(markdown_table(["run", "wall s (whole command)", "trials trained s", "slots", "trials", "outside training"], rows))
    print(machine_note())


if __name__ == "__main__":
    main()
