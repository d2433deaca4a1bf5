"""Full runs (training/ddp.py, `sksearch train`): evaluation outside the DDP wrapper (issue 14 fault 3),
uint8 workers (fault 9), --out / --resume / --force / --init-from guards (issue 11, 12), and torchrun with two
CPU processes (Gloo) resuming to exactly the weights and optimizer state of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml
from PIL import Image
from torch import nn

from sksearch.data.imagenet import imagenet_transforms
from sksearch.models import build_model
from sksearch.spec import ArchSpec
from sksearch.train import main as train_main
from sksearch.training import common, ddp
from sksearch.training.common import evaluate, save_checkpoint

TORCHRUN = Path(sys.executable).with_name("torchrun")
CPU = torch.device("cpu")
SPEC = {"backbone": "resnext", "depths": [1, 1, 1, 1], "widths": [8, 16, 32, 64], "out_channels": [16, 32, 64, 128],
        "num_classes": 3, "input_size": [3, 32, 32],
        "sk": {"G": 4, "r": 4, "L": 8, "branches": [{"kernel": 3}, {"kernel": 3, "dilation": 2}]}}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _image_folder(root: Path, classes=("n01440764", "n01443537", "n01484850"), per_class=(6, 3)) -> Path:
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"{c}_{i}.JPEG")
    return root


def _config(path: Path, **spec) -> Path:
    path.write_text(yaml.safe_dump({"spec": {**SPEC, **spec}, "recipe": {"epochs": 1}, "provenance": {}}))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _image_folder(tmp_path_factory.mktemp("imagenet"))


def _train(config: Path, data: Path, out: Path, *more: str) -> int:
    return train_main([str(config), "--data", str(data), "--out", str(out), "--batch-size", "4", "--workers", "0",
                       "--resolution", "32", *more])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_evaluation_does_not_go_through_the_ddp_wrapper(data):
    """DDP's forward broadcasts buffers (a collective): ranks with different numbers of validation batches
    would hang on NCCL. validate() must run the bare module."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = build_model(ArchSpec.from_dict(SPEC))
        wrapped = nn.parallel.DistributedDataParallel(model)
        calls = []
        wrapped.register_forward_pre_hook(lambda *_: calls.append(1))
        _, val = ddp.run_datasets(data, None, 32)
        loader = torch.utils.data.DataLoader(val, batch_size=4)
        pg = ddp.Dist()  # one process: no collectives of its own
        prepare = ddp.normalizer(CPU, torch.channels_last)
        metrics = ddp.validate(wrapped, loader, pg, None, prepare)
        assert calls == []
        assert metrics["val_images"] == 9
        assert metrics["top1"] == evaluate(model, loader, CPU, prepare=prepare).accuracy
    finally:
        dist.destroy_process_group()


def test_workers_send_uint8_and_the_device_normalises(data):
    train_ds, val_ds = ddp.run_datasets(data, None, 32)
    x, _ = val_ds[0]
    assert x.dtype == torch.uint8 and train_ds[0][0].dtype == torch.uint8  # 1 byte a value through the workers
    path, _ = val_ds.samples[0]
    reference = imagenet_transforms(32, train=False)(Image.open(path).convert("RGB"))  # the float32 transform
    out = ddp.normalizer(CPU, torch.channels_last)(x[None])
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out[0], reference, rtol=1e-5, atol=1e-5)


def test_out_guards_resume_checks_and_init_from(data, tmp_path, capsys):
    config, out = _config(tmp_path / "tiny.yaml"), tmp_path / "run"
    assert _train(config, data, out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["world_size"] == 1 and summary["val_images"] == 9
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["extra"]["spec"]["widths"] == SPEC["widths"] and state["extra"]["global_batch"] == 4
    capsys.readouterr()

    def refused(*args: str, config=config, out=out) -> str:
        assert _train(config, data, out, *args) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err, err
        return err

    assert "already holds a run" in refused() and "--force" in refused()
    assert "--batch-size 8 differs from the checkpoint's 4" in refused("--resume", "--batch-size", "8")  # last wins
    other = _config(tmp_path / "other.yaml", widths=[8, 16, 32, 32], out_channels=[16, 32, 64, 64])
    assert "another spec (it differs in out_channels, widths)" in refused("--resume", config=other)
    assert "does not fit this spec" in refused("--init-from", str(out / "checkpoint.pt"), "--force", config=other)

    legacy = tmp_path / "legacy"  # a checkpoint without a (per-iteration) scheduler entry
    save_checkpoint(legacy / "checkpoint.pt", build_model(ArchSpec.from_dict(SPEC)), None, 1, extra={})
    assert "no per-iteration scheduler state" in refused("--resume", out=legacy)

    # fine-tuning from the checkpoint (and from a bare state dict) of the same spec
    bare_state = tmp_path / "weights.pt"
    torch.save(state["model"], bare_state)
    assert _train(config, data, tmp_path / "tuned", "--init-from", str(bare_state)) == 0
    assert json.loads((tmp_path / "tuned" / "summary.json").read_text())["init_from"] == str(bare_state)
    assert _train(config, data, out, "--force", "--init-from", str(out / "checkpoint.pt")) == 0


def _torchrun(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--nproc_per_node=2", "--standalone", "-m", "sksearch.train", *args,
           "--batch-size", "4", "--workers", "0", "--resolution", "32"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not in the venv")
def test_torchrun_resume_restores_weights_and_optimizer_state(data, tmp_path):
    """Two epochs straight and one epoch + --resume for the second end in the same weights, momentum
    buffers and lr: the resume restored model, optimizer, schedule and sampler position."""
    config = _config(tmp_path / "tiny.yaml")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _torchrun(str(config), "--data", str(data), "--out", str(straight), "--epochs", "2")
    _torchrun(str(config), "--data", str(data), "--out", str(resumed), "--epochs", "1")
    _torchrun(str(config), "--data", str(data), "--out", str(resumed), "--epochs", "2", "--resume")
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-6, msg=k)
    ma, mb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert ma.keys() == mb.keys() and ma
    for k in ma:
        torch.testing.assert_close(mb[k]["momentum_buffer"], ma[k]["momentum_buffer"], rtol=1e-5, atol=1e-6)
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["start_epoch"] == 2 and summary["epochs_run"] == 1
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert summary["lr"] == pytest.approx(0.1 * 4 / 256)  # linear scaling rule


def test_a_resumed_schedule_continues_where_it_stopped():
    """Per-iteration cosine with warm-up: stop after 2 of 4 epochs, rebuild, restore: the same lrs follow."""
    def build():
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9)
        return opt, common.make_schedule(opt, kind="cosine", total_steps=40, warmup_steps=15)

    opt, sched = build()
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        if len(lrs) == 20:
            saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    opt2, sched2 = build()
    opt2.load_state_dict(saved_opt)
    ddp._continue_schedule(sched2, saved_sched, 20)
    resumed = []
    for _ in range(20):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert resumed == pytest.approx(lrs[20:], rel=1e-9, abs=1e-12)


@pytest.mark.slow
def test_sigterm_stops_training_with_143_and_resume_continues(data, tmp_path):
    # A scheduler's stop: the last finished epoch's checkpoint stays, exit 143, and --resume continues from it.
    config = _config(tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sksearch.train", str(config), "--data", str(data), "--out",
                             str(out), "--epochs", "200", "--batch-size", "4", "--workers", "0", "--resolution", "32"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err, err
    done = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= done < 200
    assert _train(config, data, out, "--epochs", str(done + 1), "--resume") == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == done + 1
