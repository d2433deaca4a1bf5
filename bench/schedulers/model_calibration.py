"""How well the ehvi proposer's accuracy model predicts the final accuracy of networks a rung stopped early:
the situation in which it decides whether to resume a paused trial, or which new network to try.

On each SK table (bench/tables/*.json), for several random splits: `--full` rows are "trained to max_t"
(their curve observed at epochs 1, 3, 9, as the proposer reads a full trial), every other row is "stopped at
epoch 1" (only its first epoch observed). The model is fitted on those observations, with the proposer's own
features (proposals.spec_features), epoch feature, fit and predict, and predicts each stopped row's final
accuracy (its mean over the table's seeds). Reported, averaged over splits: RMSE, the median predicted sd,
the share of stopped rows within 2 predicted sd (95 % for a calibrated Gaussian), Spearman's rank correlation
of predicted and true, and how many true-front members were missed by more than 3 sd.

Baseline in the same run: the kernel the proposer used before (a length scale per feature, noise free to go
to 1e-6 of the variance), everything else the same.

    .venv/bin/python bench/schedulers/model_calibration.py [--splits 6] [--full 10 30 60]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import sk_replay  # noqa: E402
from common import machine_note, markdown_table  # noqa: E402

from sksearch.search.proposals import FrontGainProposer, spec_features  # noqa: E402
from sksearch.spec import ArchSpec  # noqa: E402

TABLES = [sk_replay.REPO / "bench" / "tables" / "sk_bench.json", sk_replay.REPO / "bench" / "tables" / "sk_bench2.json"]
LADDER = (1, 3, 9)


class ARDProposer(FrontGainProposer):
    """The baseline: the proposer with its former kernel (one length scale per feature, no noise floor)."""

    def new_kernel(self, n_features: int) -> Any:
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        return (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(np.ones(n_features), (1e-2, 1e3), nu=2.5)
                + WhiteKernel(1e-2, (1e-6, 1.0)))


def one_split(table: sk_replay.SKTable, proposer: FrontGainProposer, seed: int, n_full: int) -> dict[str, float]:
    from scipy.stats import spearmanr

    order = np.random.default_rng(seed).permutation(len(table.rows))
    full, stopped = order[:n_full], order[n_full:]
    feats = [spec_features(ArchSpec.from_dict(r.spec), r.macs, r.params) for r in table.rows]
    x, y = [], []
    for i in full:
        curve = table.rows[i].curves[0]
        for epoch in (e for e in LADDER if e <= len(curve)):
            x.append(feats[i] + [proposer._epoch_feature(epoch)])
            y.append(curve[epoch - 1])
    for i in stopped:
        x.append(feats[i] + [proposer._epoch_feature(1)])
        y.append(table.rows[i].curves[0][0])
    proposer._kernel = None  # a fresh fit per split
    model = proposer.fit(np.array(x), np.array(y))
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
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    print(machine_note())
    out = []
    for path in TABLES:
        table = sk_replay.SKTable.load(path)
        checker = sk_replay._spec_sampler(table)  # the table's study and space
        cfg, space = checker.cfg, checker.space
        for n_full in args.full:
            for name, cls in (("former kernel (ARD, no noise floor)", ARDProposer), ("sksearch", FrontGainProposer)):
                rs = [one_split(table, cls(cfg, space), seed, n_full) for seed in range(args.splits)]
                m = {k: np.mean([r[k] for r in rs]) for k in ("rmse", "sd", "within", "rho")}
                missed = sum(r["missed"] for r in rs)
                front = sum(r["front"] for r in rs)
                out.append([path.stem, n_full, name, f"{m['rmse']:.3f}", f"{m['sd']:.3f}", f"{100 * m['within']:.0f} %",
                            f"{m['rho']:.2f}", f"{missed} / {front}"])
    print(markdown_table(["table", "rows full", "model", "RMSE", "median sd", "within 2 sd", "Spearman",
                          "front members off by > 3 sd"], out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
