"""How well the ehvi proposer's accuracy model predicts the final accuracy of networks a rung stopped early:
the situation in which it decides whether to resume a paused trial, or which new network to try.

On each SK table (bench/tables/*.json), for several random splits: `--full` rows are "trained to max_t"
(their curve observed to the end), every other row is "stopped at epoch E" (`--stopped-at`: its curve
observed up to E). The model is fitted on those observations, with the proposer's own features
(proposals.spec_features), fit and predict, and predicts each stopped row's final accuracy (its mean over the
table's seeds). Reported, averaged over splits: RMSE, the median predicted sd, the share of stopped rows within
2 predicted sd (95 % for a calibrated Gaussian), Spearman's rank correlation of predicted and true, and how many
true-front members were missed by more than 3 sd.

Three ways of reading the rungs: "rungs as points" (every ladder epoch a point in (features, epoch): the
proposer's model before RungToFinal, and still its model until it has proposals.MIN_CURVES curves trained in
full), "predicted finals alone" (each stopped row's last rung mapped to a final accuracy with its error variance
by proposals.RungToFinal, one point per row) and "both" (the proposer's model from then on).

    .venv/bin/python bench/schedulers/model_calibration.py [--splits 6] [--full 10 30 60] [--stopped-at 1 3]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import sk_replay  # noqa: E402
from common import machine_note, markdown_table  # noqa: E402

from sksearch.search.proposals import FrontGainProposer, RungToFinal, spec_features  # noqa: E402
from sksearch.spec import ArchSpec  # noqa: E402

TABLES = [sk_replay.REPO / "bench" / "tables" / "sk_bench.json", sk_replay.REPO / "bench" / "tables" / "sk_bench2.json"]
LADDER = (1, 3, 9)


def observations(table: sk_replay.SKTable, proposer: FrontGainProposer, feats: list[list[float]], full: np.ndarray,
                 stopped: np.ndarray, stopped_at: int, mode: str) -> tuple[list, list, list]:
    """What the proposer's GP is fitted on. "points": every ladder epoch of every row as a point in (features,
    epoch), the model before this change; "final": one point per row at the budget, the stopped rows' finals
    predicted by RungToFinal from the full rows' curves, with its variance; "both": the points and the
    predicted finals, as FrontGainProposer.observations builds them. feats: each row's spec_features."""
    curves = RungToFinal([list(table.rows[i].curves[0]) for i in full], table.max_t)
    x, y, noise = [], [], []

    def add(i: int, epoch: int, accuracy: float, var: float) -> None:
        x.append(feats[i] + [proposer._epoch_feature(epoch)])
        y.append(accuracy)
        noise.append(var)

    for rows, last in ((full, table.max_t), (stopped, stopped_at)):
        for i in rows:
            curve = table.rows[i].curves[0]
            if mode != "final":  # the ladder's epochs as points
                for epoch in (e for e in LADDER if e <= last):
                    add(i, epoch, curve[epoch - 1], 0.0)
            elif last == table.max_t:  # a full row's final accuracy alone
                add(i, last, curve[-1], 0.0)
            if mode != "points" and last < table.max_t:  # a stopped row's final, predicted from its last rung
                add(i, table.max_t, *curves.predict(last, curve[last - 1]))
    return x, y, noise


def one_split(table: sk_replay.SKTable, proposer: FrontGainProposer, feats: list[list[float]], seed: int, n_full: int,
              stopped_at: int, mode: str) -> dict[str, float]:
    from scipy.stats import spearmanr

    order = np.random.default_rng(seed).permutation(len(table.rows))
    full, stopped = order[:n_full], order[n_full:]
    x, y, noise = observations(table, proposer, feats, full, stopped, stopped_at, mode)
    proposer._kernel = None  # a fresh fit per split
    model = proposer.fit(np.array(x), np.array(y), np.array(noise))
    mean, sd = proposer.predict(model, np.array([feats[i] for i in stopped]))
    true = np.array([table.rows[i].final for i in stopped])
    z = (true - mean) / sd
    front = table.front_rows()
    on_front = np.array([table.rows[i] in front for i in stopped])
    return {"rmse": float(np.sqrt(np.mean((true - mean) ** 2))), "sd": float(np.median(sd)),
            "within": float(np.mean(np.abs(z) < 2)), "rho": float(spearmanr(mean, true).correlation),
            "missed": int(np.sum(on_front & (np.abs(z) > 3))), "front": int(on_front.sum())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--splits", type=int, default=6)
    p.add_argument("--full", type=int, nargs="+", default=[10, 30, 60], help="rows trained in full, per setting")
    p.add_argument("--stopped-at", type=int, nargs="+", default=[1, 3], help="the epoch the other rows stopped at")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    print(machine_note())
    out = []
    for path in TABLES:
        table = sk_replay.SKTable.load(path)
        checker = sk_replay._spec_sampler(table)  # the table's study and space
        cfg, space = checker.cfg, checker.space
        feats = [spec_features(ArchSpec.from_dict(r.spec), r.macs, r.params) for r in table.rows]
        for n_full, stopped_at in itertools.product(args.full, args.stopped_at):
            for name, mode in (("rungs as points (before)", "points"), ("predicted finals alone", "final"),
                               ("both (sksearch)", "both")):
                rs = [one_split(table, FrontGainProposer(cfg, space), feats, seed, n_full, stopped_at, mode)
                      for seed in range(args.splits)]
                m = {k: np.mean([r[k] for r in rs]) for k in ("rmse", "sd", "within", "rho")}
                missed = sum(r["missed"] for r in rs)
                front = sum(r["front"] for r in rs)
                out.append([path.stem, n_full, stopped_at, name, f"{m['rmse']:.3f}", f"{m['sd']:.3f}",
                            f"{100 * m['within']:.0f} %", f"{m['rho']:.2f}", f"{missed} / {front}"])
    print(markdown_table(["table", "rows full", "others stopped at", "model", "RMSE", "median sd", "within 2 sd",
                          "Spearman", "front members off by > 3 sd"], out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
