"""The full-training recipe that `sksearch export` writes and `sksearch train` runs (ImageNet, DDP)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Recipe(BaseModel):
    """The ImageNet training recipe (defaults: the SKNet paper's, after ResNeXt / SENet)."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0, description="per lr_batch images; scaled linearly with batch_size")
    lr_batch: int = Field(256, ge=1)
    batch_size: int = Field(256, ge=1, description="global batch, over all processes")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0)
    epochs: int = Field(100, ge=1)
    schedule: Literal["step", "cosine"] = "step"
    step_epochs: int = Field(30, ge=1, description="step: lr x step_gamma every step_epochs epochs")
    step_gamma: float = Field(0.1, gt=0, le=1)
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up, per iteration, multiplying the schedule")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    resolution: int = Field(224, ge=8, description="training crop; evaluation resizes to 256/224 of it, centre crop")
    augment: Literal["random_resized_crop+flip"] = "random_resized_crop+flip"
    amp: bool = True
    channels_last: bool = True
    workers: int = Field(8, ge=0, description="DataLoader workers per process")
    seed: int = 0

    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / self.lr_batch
