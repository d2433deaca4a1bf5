from __future__ import annotations

import time

import pytest
import torch

from sksearch.config import DatasetConfig, TrainConfig
from sksearch.data import make_data
from sksearch.models import build_model
from sksearch.spec import ArchSpec
from sksearch.training.loop import (EpochResult, TrainingDiverged, evaluate, load_checkpoint, lr_factor, make_optimizer,
                              pick_device, save_checkpoint, train_trial)

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_sk(widths=(8, 16, 32)) -> ArchSpec:
    """resnext_cifar, one unit a stage, SK[2, 2, 4] with K3 + K5 paths."""
    return ArchSpec.from_dict({
        "backbone": "resnext_cifar", "depths": [1, 1, 1], "widths": list(widths),
        "out_channels": [4 * w for w in widths], "stem_channels": 16, "num_classes": 10, "input_size": [3, 32, 32],
        "sk": {"G": 2, "r": 4, "L": 8, "branches": [{"kernel": 3}, {"kernel": 3, "dilation": 2}]},
    })


def test_small_sk_network_learns_the_synthetic_set():
    start = time.perf_counter()
    data = make_data(DatasetConfig(name="synthetic", train_size=3000, test_size=200), batch_size=16, device=CPU)
    recipe = TrainConfig(epochs=3, batch_size=16, lr=0.05, nesterov=True, schedule="cosine", warmup_epochs=0.3)
    seen: list[EpochResult] = []
    result = train_trial(small_sk(), data, recipe, device=CPU, on_epoch=seen.append)
    elapsed = time.perf_counter() - start
    assert result.val_accuracy >= 0.5, result.history  # chance is 0.1
    assert elapsed < 60, f"{elapsed:.1f} s"
    assert result.epochs_done == 3 and seen == result.history
    assert result.images_per_second > 0 and result.train_seconds <= elapsed
    assert evaluate(result.model, data.val, CPU) == pytest.approx(result.val_accuracy)


def tiny_run(**recipe) -> list[EpochResult]:
    data = make_data(DatasetConfig(name="synthetic", train_size=256, test_size=10), batch_size=32, device=CPU)
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 32, **recipe})
    return train_trial(small_sk((4, 8, 8)), data, cfg, device=CPU).history


def test_seeded_runs_repeat_exactly_on_cpu():
    a, b = tiny_run(seed=7), tiny_run(seed=7)
    strip = lambda h: [(e.train_loss, e.val_accuracy) for e in h]  # noqa: E731 (timings differ)
    assert strip(a) == strip(b)
    assert strip(tiny_run(seed=8)) != strip(a)


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


def test_schedule_spans_the_full_budget_and_warms_up():
    # step: /10 at 50%, /100 at 75% of the steps; a shorter run sees the same prefix.
    assert [lr_factor(s, 100, 0, "step") for s in (0, 49, 50, 74, 75, 99)] == [1, 1, 0.1, 0.1, 0.01, 0.01]
    assert lr_factor(50, 100, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(0, 100, 10, "constant") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "constant") == 1.0
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


def test_pick_device():
    assert pick_device("cpu") == CPU
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
