"""The trial loop (training/loop.py) on CPU: learning, determinism, divergence, schedules, checkpoints, compile."""
from __future__ import annotations

import math
import os

import pytest
import torch

from sksearch.config import DatasetConfig, TrainConfig
from sksearch.data import make_data
from sksearch.errors import UserError
from sksearch.models import build_model
from sksearch.spec import ArchSpec
from sksearch.training.common import evaluate, load_checkpoint, pick_device, save_checkpoint
from sksearch.training.loop import EpochResult, TrainingDiverged, make_optimizer, train_trial, trial_schedule

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_sk(widths=(8, 16, 32)) -> ArchSpec:
    """resnext_cifar, one unit a stage, SK[2, 2, 4] with K3 + K5 paths."""
    return ArchSpec.from_dict({
        "backbone": "resnext_cifar", "depths": [1, 1, 1], "widths": list(widths),
        "out_channels": [4 * w for w in widths], "stem_channels": 16, "num_classes": 10, "input_size": [3, 32, 32],
        "sk": {"G": 2, "r": 4, "L": 8, "branches": [{"kernel": 3}, {"kernel": 3, "dilation": 2}]},
    })


@pytest.mark.slow
def test_small_sk_network_learns_the_synthetic_set():
    data = make_data(DatasetConfig(name="synthetic", train_size=3000, test_size=200), batch_size=16, device=CPU)
    recipe = TrainConfig(epochs=3, batch_size=16, lr=0.05, nesterov=True, schedule="cosine", warmup_epochs=0.3)
    seen: list[EpochResult] = []
    result = train_trial(small_sk(), data, recipe, device=CPU, on_epoch=seen.append)
    assert result.val_accuracy >= 0.5, result.history  # chance is 0.1 (its speed is bench_train_throughput's)
    assert result.epochs_done == 3 and seen == result.history
    assert result.images_per_second > 0
    assert 0 < sum(e.seconds for e in result.history) <= result.train_seconds  # the epochs lie inside the run
    assert evaluate(result.model, data.val, CPU).accuracy == pytest.approx(result.val_accuracy)


def tiny_run(**recipe) -> list[EpochResult]:
    data = make_data(DatasetConfig(name="synthetic", train_size=256, test_size=10), batch_size=32, device=CPU)
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 32, **recipe})
    return train_trial(small_sk((4, 8, 8)), data, cfg, device=CPU).history


def test_seeded_runs_repeat_exactly_on_cpu():
    a, b = tiny_run(seed=7), tiny_run(seed=7)
    strip = lambda h: [(e.train_loss, e.val_accuracy) for e in h]  # noqa: E731 (timings differ)
    assert strip(a) == strip(b)
    assert strip(tiny_run(seed=8)) != strip(a)


def test_a_paused_run_resumed_from_its_state_repeats_the_uninterrupted_curve(tmp_path):
    """tune.scheduler.pause: a trial stopped at epoch 1 and resumed later trains epochs 2-3 exactly as a run that
    never stopped (weights, momentum, the per-step lr schedule and the warm-up all restored)."""
    data = make_data(DatasetConfig(name="synthetic", train_size=256, test_size=40), batch_size=32, device=CPU)
    recipe = TrainConfig(epochs=3, batch_size=32, schedule="cosine", warmup_epochs=1.5, seed=3)
    strip = lambda h: [(e.epoch, e.train_loss, e.val_accuracy) for e in h]  # noqa: E731 (timings differ)
    whole = train_trial(small_sk((4, 8, 8)), data, recipe, device=CPU).history

    def pause_after_one(r: EpochResult) -> None:
        r.save_state(tmp_path / "state.pt")
        raise KeyboardInterrupt  # the scheduler's stop, as Ray delivers it: an exception from the report

    with pytest.raises(KeyboardInterrupt):
        train_trial(small_sk((4, 8, 8)), data, recipe, device=CPU, on_epoch=pause_after_one)
    rest = train_trial(small_sk((4, 8, 8)), data, recipe, device=CPU, resume_from=tmp_path / "state.pt").history
    assert strip(rest) == strip(whole)[1:]
    with pytest.raises(UserError, match="no lr schedule state"):  # a plain checkpoint is not a training state
        save_checkpoint(tmp_path / "plain.pt", build_model(small_sk((4, 8, 8))), None, 1)
        train_trial(small_sk((4, 8, 8)), data, recipe, device=CPU, resume_from=tmp_path / "plain.pt")


def test_nan_loss_raises_training_diverged():
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step \d+"):
        tiny_run(lr=1e6, momentum=0.9)


def test_callback_exceptions_stop_the_trial():
    class Stop(Exception):
        pass

    def stop(result: EpochResult) -> None:
        raise Stop(result.epoch)

    data = make_data(DatasetConfig(name="synthetic", train_size=128, test_size=10), batch_size=32, device=CPU)
    with pytest.raises(Stop):
        train_trial(small_sk((4, 8, 8)), data, TrainConfig(epochs=3, batch_size=32), device=CPU, on_epoch=stop)


def documented_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """The trial schedule as the docs state it: step = /10 at 50% and 75% of the full budget; cosine to
    zero; a linear warm-up (s + 1) / warmup multiplies either."""
    t = step / total
    base = {"step": 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01,
            "cosine": 0.5 * (1 + math.cos(math.pi * t)), "constant": 1.0}[kind]
    return base * ((step + 1) / warmup if step < warmup else 1.0)


@pytest.mark.parametrize("kind", ["step", "cosine", "constant"])
@pytest.mark.parametrize("warmup_epochs", [0, 0.3])
def test_schedule_follows_the_documented_rule(kind: str, warmup_epochs: float):
    recipe = TrainConfig(epochs=4, lr=0.2, schedule=kind, warmup_epochs=warmup_epochs)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched = trial_schedule(opt, recipe, steps_per_epoch=25)  # 100 steps, warm-up 0 or 8
    warmup = round(warmup_epochs * 25)
    for step in range(100):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * documented_factor(step, 100, warmup, kind),
                                                          rel=1e-9, abs=1e-12), step
        opt.step()
        sched.step()


def test_schedule_spans_the_full_budget_and_warms_up():
    # Stopping early replays the full run's prefix exactly (same schedule, same batches).
    full = tiny_run(schedule="cosine", epochs=2)
    data = make_data(DatasetConfig(name="synthetic", train_size=256, test_size=10), batch_size=32, device=CPU)
    result = train_trial(small_sk((4, 8, 8)), data, TrainConfig(epochs=2, batch_size=32, schedule="cosine"),
                         epochs=1, device=CPU)
    assert result.epochs_done == 1
    assert (result.history[0].train_loss, result.history[0].val_accuracy) == (full[0].train_loss, full[0].val_accuracy)
    opt = make_optimizer(result.model, TrainConfig())
    assert opt.param_groups[1]["weight_decay"] == 0.0  # BN and biases are not decayed
    assert all(p.ndim <= 1 for p in opt.param_groups[1]["params"])


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = build_model(small_sk((4, 8, 8)))
    opt = make_optimizer(model, TrainConfig())
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, model, opt, epoch=3, extra={"val_accuracy": 0.5, "spec": small_sk().to_dict()})
    state = torch.load(path, weights_only=True)  # plain state dicts: nothing to unpickle
    assert set(state) == {"model", "optimizer", "epoch", "extra"}
    fresh = build_model(small_sk((4, 8, 8)))
    fresh_opt = make_optimizer(fresh, TrainConfig())
    info = load_checkpoint(path, fresh, fresh_opt)
    assert info["epoch"] == 3 and info["extra"]["val_accuracy"] == 0.5
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert fresh_opt.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


def test_pick_device_honours_a_request_and_refuses_a_missing_gpu():
    assert pick_device("cpu") == CPU
    if torch.cuda.is_available():
        assert pick_device().type == "cuda" and pick_device("cuda:0") == torch.device("cuda", 0)
    else:  # the default falls back to the CPU; an explicit CUDA request is a clear error, not a crash later
        assert pick_device() == CPU
        with pytest.raises(UserError, match="'cuda:1' requested but CUDA is not available"):
            pick_device("cuda:1")


def test_cpu_bf16_autocast_trains_channels_last():
    """The CPU twin of the GPU path: autocast bf16 + channels_last through the whole loop."""
    data = make_data(DatasetConfig(name="synthetic", train_size=256, test_size=10), batch_size=32, device=CPU)
    # No dilated path here: on CPUs with native bf16 (AVX512-BF16), torch 2.14.1's channels_last bf16 backward
    # of a grouped dilated 3x3 conv returns NaN weight gradients (e.g. 4 channels, groups 2, dilation 2,
    # 32x32). sksearch never autocasts on CPU (common.amp_dtype), so only this CPU twin of the GPU path meets it.
    spec = small_sk((4, 8, 8))
    spec = spec.model_copy(update={"sk": spec.sk.model_copy(update={"branches": [
        spec.sk.branches[0], spec.sk.branches[1].model_copy(update={"kernel": 5, "dilation": 1})]})})
    result = train_trial(ArchSpec.from_dict(spec.to_dict()), data, TrainConfig(epochs=1, batch_size=32), device=CPU,
                         dtype=torch.bfloat16)
    assert math.isfinite(result.history[0].train_loss) and 0 <= result.val_accuracy <= 1
    assert next(result.model.parameters()).dtype == torch.float32  # autocast, not a bf16 model
    stem_conv = next(m for m in result.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem_conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("mode", [True, "reduce-overhead"])
def test_compile_plumbing_times_the_first_step_apart(monkeypatch, mode):
    """recipe.compile goes through compile_model after a compiler reset, and the compiling steps are timed
    apart from images/s. (A backend that only traces keeps this fast; inductor runs in the slow test.)"""
    import torch._dynamo

    from sksearch.training import common

    monkeypatch.setattr(common, "compile_model",
                        lambda model, mode: torch.compile(model, backend="eager"))
    torch._dynamo.reset()
    data = make_data(DatasetConfig(name="synthetic", train_size=256, test_size=10), batch_size=32, device=CPU)
    compiled = train_trial(small_sk((4, 8, 8)), data, TrainConfig(epochs=2, batch_size=32, compile=mode), device=CPU)
    first, second = compiled.history  # 7 steps an epoch: 1 (dynamo) or 3 (CUDA graphs' warm-up) compile
    assert first.compile_seconds > 0 and second.compile_seconds == 0
    assert compiled.compile_seconds == first.compile_seconds
    assert first.images_per_second > 0
    eager = tiny_run()
    for c, e in zip(compiled.history, eager):  # the same curve: tracing changes no arithmetic here
        assert c.train_loss == pytest.approx(e.train_loss, rel=1e-4) and c.val_accuracy == e.val_accuracy


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SKSEARCH_TEST_INDUCTOR"),
                    reason="inductor compiles for ~3 min on 2 shared cores: SKSEARCH_TEST_INDUCTOR=1 runs it")
def test_inductor_compile_gives_the_eager_curve():
    """compile: true with inductor on CPU (needs a C compiler): the same seeds give the same curve."""
    import shutil

    if shutil.which("cc") is None:
        pytest.skip("no C compiler for inductor")
    data = make_data(DatasetConfig(name="synthetic", train_size=256, test_size=10), batch_size=32, device=CPU)
    compiled = train_trial(small_sk((4, 8, 8)), data, TrainConfig(epochs=2, batch_size=32, compile=True), device=CPU)
    eager = tiny_run()
    assert compiled.compile_seconds > 0
    for c, e in zip(compiled.history, eager):
        assert c.train_loss == pytest.approx(e.train_loss, rel=2e-3)
        assert abs(c.val_accuracy - e.val_accuracy) <= 0.2  # 10 validation images
