"""The same stand-in trials driven through real Ray Tune (Tuner + function trainable), to check the
simulator: with one trial at a time the two must take the same stop decisions trial for trial."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from schedulers_standin import CurveModel

BENCH_DIR = Path(__file__).resolve().parent


def _trainable(config: dict) -> None:
    from ray import tune

    model = CurveModel(**config["model"])
    draw = model.draw(config["seed"], config["index"])
    for epoch in range(1, config["max_t"] + 1):
        result = model.result(draw, epoch, config["seed"])
        del result["training_iteration"]  # Ray fills it in
        tune.report(result)


def run_real(make_scheduler, model: CurveModel, *, seed: int, n_trials: int, max_t: int) -> dict[int, tuple[int, float]]:
    """Trial index -> (epochs trained, last accuracy), trials run one at a time in index order."""
    import ray
    from ray import tune

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(BENCH_DIR), str(BENCH_DIR.parent)])}})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tuner = tune.Tuner(
                _trainable,
                param_space={"index": tune.grid_search(list(range(n_trials))), "seed": seed,
                             "max_t": max_t, "model": model.to_dict()},
                tune_config=tune.TuneConfig(scheduler=make_scheduler(), max_concurrent_trials=1, reuse_actors=True),
                run_config=tune.RunConfig(storage_path=tmp, name="standin", verbose=0),
            )
            results = tuner.fit()
            return {r.config["index"]: (int(r.metrics["training_iteration"]), float(r.metrics["accuracy"]))
                    for r in results}
    finally:
        if started_here:
            ray.shutdown()
