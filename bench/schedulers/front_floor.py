"""The floor under issue 22's goal: the fewest epochs in which any method could reach 90 / 95 / 99 % of an SK
table's true front hypervolume, and what each rung says about the networks that make those fractions.

A method's front is scored on its trials trained to max_t (sk_replay's scoring), so reaching a fraction needs
at least k rows trained in full, where k is the smallest number of rows whose front alone reaches it: an oracle
that trains only those k, and nothing else, spends k x max_t epochs. Exhaustive over subsets of the true front
(a row off it adds nothing to a front that holds the front rows). Then, for the rows that matter most alone,
their rank among all rows by each rung's accuracy (mean over the table's seeds): what an early rung lets a
scheduler see of them. Read with BENCHMARKS.md's replay figures (median epochs of each method), the floor says
how much of a method's cost is search and how much is the budget itself.

    .venv/bin/python bench/schedulers/front_floor.py [--table bench/tables/sk_bench2.json ...] [--top 5]
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata, spearmanr

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import sk_replay  # noqa: E402
from common import machine_note, markdown_table  # noqa: E402

GOALS = (0.90, 0.95, 0.99)
TABLES = [sk_replay.TABLE, sk_replay.REPO / "bench" / "tables" / "sk_bench2.json"]


def fewest_rows(table: sk_replay.SKTable, goal: float) -> int:
    """The smallest k such that some k rows of the true front reach `goal` of its hypervolume."""
    front = [(r.final, r.macs) for r in table.front_rows()]
    target = goal * table.true_hypervolume()
    for k in range(1, len(front) + 1):
        if any(table.hypervolume(list(c)) >= target - 1e-12 for c in itertools.combinations(front, k)):
            return k
    return len(front)


def rung_accuracy(table: sk_replay.SKTable, rungs: list[int]) -> np.ndarray:
    """rows x rungs: each row's mean accuracy (over the table's seeds) at that epoch."""
    return np.array([[np.mean([c[e - 1] for c in r.curves]) for e in rungs] for r in table.rows])


def rung_ranks(acc: np.ndarray) -> np.ndarray:
    """rows x rungs: each row's rank (1 = best) by its accuracy at that rung."""
    return np.column_stack([rankdata(-acc[:, j], method="min") for j in range(acc.shape[1])]).astype(int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, nargs="+", default=TABLES)
    parser.add_argument("--top", type=int, default=5, help="rows shown by their hypervolume alone")
    args = parser.parse_args()
    for path in args.table:
        if not path.is_file():
            parser.error(f"--table {path}: no such file (an SK table, e.g. bench/tables/sk_bench.json)")
    print(machine_note())
    tables = {path: sk_replay.SKTable.load(path) for path in args.table}
    floor_rows = []
    for path, table in tables.items():
        ks = [fewest_rows(table, g) for g in GOALS]
        floor_rows.append([path.name, len(table.rows), len(table.front_rows()), table.max_t,
                           *[f"{k} rows, {k * table.max_t}" for k in ks]])
    print("\nThe floor: rows that must be trained in full, and their epochs\n")
    print(markdown_table(["table", "rows", "true front", "max_t", *[f"to {g:.0%}" for g in GOALS]], floor_rows))
    for path, table in tables.items():
        rungs = [e for e in (1, 3, table.max_t) if e <= table.max_t]
        acc = rung_accuracy(table, rungs)
        ranks = rung_ranks(acc)
        true = table.true_hypervolume()
        alone = sorted(((table.hypervolume([(r.final, r.macs)]) / true, i) for i, r in enumerate(table.rows)),
                       reverse=True)[:args.top]
        rows = []
        for share, i in alone:
            r = table.rows[i]
            sk = r.spec["sk"]
            rows.append([f"{share:.1%}", f"{r.final:.3f}", f"{r.macs / 1e6:.1f}M", str(r.spec["widths"]),
                         f"M={len(sk['branches'])} G={sk['G']} {sk['attention']}",
                         *[f"{k} / {len(table.rows)}" for k in ranks[i]]])
        print(f"\n{path.name}: the rows worth most alone, and their rank by each rung's accuracy\n")
        headers = ["hypervolume alone", "final", "MACs", "widths", "SK", *[f"rank at epoch {e}" for e in rungs]]
        print(markdown_table(headers, rows))
        rho = [float(spearmanr(acc[:, j], acc[:, -1]).correlation) for j in range(len(rungs) - 1)]
        print("\nSpearman of each rung's accuracy with the final accuracy: "
              + ", ".join(f"epoch {e}: {p:.2f}" for e, p in zip(rungs, rho)))


if __name__ == "__main__":
    main()
