"""Share of the quick start's wall time spent outside training (Ray start-up, scheduling, storage).

Runs studies/quickstart.yaml from scratch in a temporary folder, then reads the storage: each trial's
`train_seconds` is the time its Ray trainable spent building data and model and training; the slots'
total time is wall x max_concurrent (the baseline). The slot time outside training splits into:
- start: from the command's start to the first trial (imports, storage, Ray start-up);
- between: idle slots and per-trial costs while trials were still being handed out (scheduling, Ray
  actors, storage writes, sampling);
- tail: slots left idle after the last trial was handed out (the budget is spent, one trial still runs):
  load imbalance at the end of a fixed budget, which no framework speed-up removes;
- end: from the last trial's end to the command's end (the Pareto table and the HTML report).

    .venv/bin/python bench/bench_overhead.py [--runs 1]
"""
from __future__ import annotations

import argparse
import datetime as dt
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
    began = dt.datetime.now()
    run = subprocess.run([sys.executable, "-m", "sksearch.run", str(study), "--storage", url, "--fresh"],
                         cwd=tmp, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ended = dt.datetime.now()
    if run.returncode != 0:
        raise SystemExit(run.stdout + run.stderr)
    trials = [t for t in optuna.load_study(study_name=cfg.name, storage=url).get_trials() if t.user_attrs.get("slot")]
    trained = sum(float(t.user_attrs.get("train_seconds", 0.0)) for t in trials)
    slots = cfg.tune.max_concurrent
    sec = lambda d: (d - began).total_seconds()  # noqa: E731
    first = min(sec(t.datetime_start) for t in trials)
    last_start = max(sec(t.datetime_start) for t in trials)
    last_end = max(sec(t.datetime_complete) for t in trials)
    # Idle slot-seconds after the last hand-out: slots minus trials still running, integrated.
    ends = sorted(sec(t.datetime_complete) for t in trials if sec(t.datetime_complete) > last_start)
    tail, t_prev, running = 0.0, last_start, len(ends)
    for e in ends:
        tail += (slots - running) * (e - t_prev)
        t_prev, running = e, running - 1
    parts = {"start": first * slots, "tail": tail, "end": ((ended - began).total_seconds() - last_end) * slots}
    parts["between"] = wall * slots - trained - sum(parts.values())
    ray_line = next((ln for ln in run.stdout.splitlines() if ln.startswith("time:")), "")
    total = wall * slots
    return {"wall": wall, "trained": trained, "slots": slots, "share": 1 - trained / total,
            "trials": len(trials), "line": ray_line, **{k: v / total for k, v in parts.items()},
            "framework": (total - trained - parts["tail"]) / total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args()
    rows = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            r = one_run(Path(d))
        rows.append([i + 1, f"{r['wall']:.1f}", f"{r['trained']:.1f}", r["slots"], r["trials"], f"{r['share']:.1%}",
                     f"{r['start']:.1%}", f"{r['between']:.1%}", f"{r['tail']:.1%}", f"{r['end']:.1%}",
                     f"{r['framework']:.1%}"])
        print(r["line"], flush=True)
    print(markdown_table(["run", "wall s", "trained s", "slots", "trials", "outside training", "start", "between",
                          "tail", "end", "outside training, tail excluded"], rows))
    print(machine_note())


if __name__ == "__main__":
    main()
