"""A dry run of 200 specs from search_spaces/sk_full.yaml: wall time and specs per second (goal: < 20 s).

Two cases, interleaved round by round (bench/common.py) so that outside load hits both alike:
- dry run: sksearch.search.dryrun.sample_specs, i.e. sample + validate + count on the meta device + budget check,
  with the complexity caches cleared first (a cold start, as a fresh `sksearch run --dry-run` sees);
- baseline: sampling alone (the same 200 Optuna trials, SearchSpace.sample, no validation or counting).
The ratio dry run / baseline is the cost of checking a spec relative to sampling it. Then the real command
runs once in a subprocess (imports included), which is the figure a user sees.

    .venv/bin/python bench/bench_dryrun.py [--specs 200] [--repeats 3] [--seed 0]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from common import interleaved, machine_note, markdown_table, median, ratio
from sksearch import complexity
from sksearch.config import load_study
from sksearch.search.dryrun import sample_specs
from sksearch.search.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
STUDY = """# written by bench/bench_dryrun.py
name: bench_dryrun
search_space: {space}
dataset: {{name: cifar10}}
constraints: {{max_macs: 2G}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_dryrun_"))
    study_path = folder / "study.yaml"
    study_path.write_text(STUDY.format(space=ROOT / "search_spaces" / "sk_full.yaml"))
    study = load_study(study_path)
    space = SearchSpace.load(study.space_path())
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def dry_run() -> None:
        complexity._BLOCK_CACHE.clear()
        complexity._count_cached.cache_clear()
        sample_specs(study, args.specs, seed=args.seed)

    def sampling_only() -> None:
        scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
        for _ in range(args.specs):
            space.sample(scratch.ask())

    times = interleaved({"dry run": dry_run, "sampling only": sampling_only}, repeats=args.repeats)
    rows = sample_specs(study, args.specs, seed=args.seed)
    feasible = sum(f.feasible for _, f in rows)

    command = [sys.executable, "-m", "sksearch.run", str(study_path), "--dry-run", str(args.specs),
               "--seed", str(args.seed)]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    cli = time.perf_counter() - start

    dry, base = median(times["dry run"]), median(times["sampling only"])
    print(machine_note())
    print(f"{args.specs} specs from sk_full.yaml (seed {args.seed}): {feasible} feasible under max_macs 2G\n")
    print(markdown_table(
        ["case", "median s", "specs/s", "ratio to sampling only"],
        [["dry run (cold caches, in-process)", f"{dry:.2f}", f"{args.specs / dry:.0f}", f"{ratio(times['dry run'], times['sampling only']):.1f}"],
         ["sampling only (baseline)", f"{base:.2f}", f"{args.specs / base:.0f}", "1.0"],
         ["`sksearch run ... --dry-run` subprocess, imports included", f"{cli:.2f}", f"{args.specs / cli:.0f}", "-"]],
    ))


if __name__ == "__main__":
    main()
