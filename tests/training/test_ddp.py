"""torchrun with 2 CPU processes (Gloo) trains an exported config for one epoch, checkpoints, and resumes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sksearch.export import main as export_main

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _image_folder(root: Path, classes=("n01440764", "n01443537", "n01484850"), per_class=(6, 3)) -> Path:
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"{c}_{i}.JPEG")
    return root


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--nproc_per_node=2", "--standalone", "-m", "sksearch.train", *args,
           "--batch-size", "4", "--workers", "0", "--resolution", "32"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not in the venv")
def test_torchrun_trains_checkpoints_and_resumes(results_study, tmp_path):
    config = tmp_path / "tiny.yaml"
    # The exported best trial, shrunk so that two CPU processes train it in seconds.
    assert export_main([results_study.source, "--out", str(config), "--set", "depths=[1,1,1,1]",
                        "--set", "widths=[16,32,64,128]", "--set", "out_channels=[32,64,128,256]"]) == 0
    data, out = _image_folder(tmp_path / "imagenet"), tmp_path / "run"

    first = _torchrun(str(config), "--data", str(data), "--out", str(out), "--epochs", "1")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["classes"] == 3 and summary["epochs_run"] == 1
    assert summary["val_images"] == 9 and 0 <= summary["top1"] <= summary["top5"] <= 1
    assert summary["lr"] == pytest.approx(0.1 * 4 / 256)  # linear scaling rule
    assert '"top1"' in first.stdout  # the summary is printed too
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and {"model", "optimizer", "extra"} <= set(state)
    assert "scheduler" in state["extra"]

    second = _torchrun(str(config), "--data", str(data), "--out", str(out), "--epochs", "2", "--resume")
    assert "epoch 2 of 2" in second.stdout and "epoch 1/2" not in second.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["start_epoch"] == 2 and summary["epochs_run"] == 1
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2
