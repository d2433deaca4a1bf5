"""Fit the stand-in's learning-curve parameters to a handful of real trials on the built-in synthetic data.

Trains small CIFAR-layout SK-ResNeXts of different widths (so different MACs) with sksearch's own
trainer and data pipeline, fits acc(t) = A * (1 - exp(-t / tau)) to each, then A(x) and log tau(x) across
them, x being the normalised log-MACs. Prints the per-spec fits and the CurveModel they imply.

    .venv/bin/python bench/schedulers/schedulers_fit.py [--widths 2 4 8 16] [--epochs 6] [--train-size 2000]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from scipy.optimize import curve_fit

from schedulers_standin import CurveModel
from sksearch.complexity import count
from sksearch.config import DatasetConfig, TrainConfig
from sksearch.data import make_data
from sksearch.spec import ArchSpec
from sksearch.training.loop import train_trial


def small_spec(width: int) -> ArchSpec:
    """One unit per stage; inner widths 4w, 8w, 16w; SK with a 3x3 and a 1x1 path (as sknet29)."""
    return ArchSpec.from_dict({
        "backbone": "resnext_cifar", "depths": [1, 1, 1],
        "widths": [width * 4 * 2**i for i in range(3)], "out_channels": [width * 8 * 2**i for i in range(3)],
        "num_classes": 10, "input_size": [3, 32, 32],
        "sk": {"G": 4, "r": 8, "L": 8, "attention": "softmax",
               "branches": [{"kernel": 3, "dilation": 1, "relu": True}, {"kernel": 1, "dilation": 1, "relu": True}]},
    })


def learning_curve(t: np.ndarray, a: float, tau: float) -> np.ndarray:
    return a * (1 - np.exp(-t / tau))


def fit_model(curves: dict[int, list[float]], macs: dict[int, int]) -> tuple[CurveModel, list[dict]]:
    per_spec = []
    for width, accs in curves.items():
        t = np.arange(1, len(accs) + 1, dtype=float)
        (a, tau), _ = curve_fit(learning_curve, t, np.asarray(accs), p0=[max(accs), 1.0],
                                bounds=([0.0, 0.05], [1.0, 50.0]))
        per_spec.append({"width": width, "macs": macs[width], "A": float(a), "tau": float(tau), "curve": accs})
    lo, hi = min(macs.values()), max(macs.values())
    x = np.array([math.log(s["macs"] / lo) / math.log(hi / lo) for s in per_spec])
    big_a = np.array([s["A"] for s in per_spec])
    log_tau = np.log([s["tau"] for s in per_spec])
    slope, intercept = np.polyfit(x, log_tau, 1)

    def a_of_x(xs: np.ndarray, floor: float, gain: float, sat: float) -> np.ndarray:
        return floor + gain * (1 - np.exp(-sat * xs)) / (1 - np.exp(-sat))

    (floor, gain, sat), _ = curve_fit(a_of_x, x, big_a, p0=[big_a.min(), np.ptp(big_a), 2.0],
                                      bounds=([0, -1, 0.01], [1, 1, 20]))
    model = CurveModel(cost_min=lo, cost_max=hi, floor=float(floor), gain=float(gain), sat=float(sat),
                       tau_cheap=float(math.exp(intercept)), tau_big=float(math.exp(intercept + slope)))
    return model, per_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = make_data(DatasetConfig(name="synthetic", train_size=args.train_size, test_size=100),
                     batch_size=args.batch_size, device=torch.device("cpu"))
    # The quick start's recipe: small batches give enough SGD steps to learn within a few epochs.
    recipe = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=0.05, nesterov=True, schedule="cosine",
                         warmup_epochs=0.3)
    curves: dict[int, list[float]] = {}
    macs: dict[int, int] = {}
    for width in args.widths:
        spec = small_spec(width)
        macs[width] = count(spec).macs
        start = time.perf_counter()
        result = train_trial(spec, data, recipe, device=torch.device("cpu"))
        curves[width] = [r.val_accuracy for r in result.history]
        print(f"width {width}: {macs[width] / 1e6:.1f} M MACs, {time.perf_counter() - start:.0f} s, "
              f"val accuracy per epoch {[round(a, 3) for a in curves[width]]}", flush=True)
    model, per_spec = fit_model(curves, macs)
    for s in per_spec:
        print(f"  {s['macs'] / 1e6:7.1f} M MACs: A = {s['A']:.3f}, tau = {s['tau']:.2f} epochs")
    print("fitted CurveModel:", json.dumps(model.to_dict()))


if __name__ == "__main__":
    main()
