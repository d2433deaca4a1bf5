"""Small-image input pipeline: sksearch's device-resident batches vs a torchvision DataLoader.

Same data for both: 50,000 random CIFAR-shaped uint8 images (3x32x32) with labels, batch 256, the standard
CIFAR augmentation (random crop 32 with 4-pixel zero padding, horizontal flip) and normalisation to float.
  ours:     DeviceBatches (whole set as one uint8 tensor; per-batch gather with crop+flip folded into the
            indices; fused uint8->float normalisation) on the training device (CPU here, CUDA when present).
  baseline: torchvision's usual recipe: a Dataset returning PIL images, per-sample transforms
            RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize; DataLoader with
            --workers worker processes (default 2: this machine has 2 cores), persistent workers.
One repetition = one full epoch (a new shuffle each time; 195 batches of 256). Whole epochs matter for
fairness: a DataLoader stopped mid-epoch keeps its workers prefetching, which would steal the CPU from the
next (timed) repetition of the other pipeline. Repetitions are interleaved (ours, baseline, ours, ...) and
the figure is the ratio of median images/s.

    .venv/bin/python bench/bench_pipeline.py [--repeats 7] [--workers 2] [--device cpu]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from common import interleaved, machine_note, markdown_table, median
from sksearch.data.device_loader import DeviceBatches

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PILImages(Dataset):
    """How torchvision's CIFAR10 serves images: HWC uint8 array -> PIL image -> transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images_hwc, labels
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (args.n,), generator=g)

    ours = DeviceBatches(images, labels, batch_size=args.batch, device=device, mean=list(MEAN), std=list(STD),
                         train=True, seed=0)
    loader = DataLoader(PILImages(images.permute(0, 2, 3, 1).numpy().copy(), labels.numpy()),
                        batch_size=args.batch, shuffle=True, drop_last=True, num_workers=args.workers,
                        persistent_workers=args.workers > 0, pin_memory=device.type == "cuda")

    def run_ours() -> None:
        for x, y in ours:
            pass
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run_baseline() -> None:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = interleaved({"ours": run_ours, "baseline": run_baseline}, repeats=args.repeats)
    n_img = len(ours) * args.batch
    ips = {k: n_img / median(v) for k, v in times.items()}
    print(markdown_table(
        ["pipeline", "images/s (median)", "ratio vs DataLoader"],
        [["sksearch DeviceBatches", f"{ips['ours']:,.0f}", f"{ips['ours'] / ips['baseline']:.1f}x"],
         [f"DataLoader, per-sample transforms, {args.workers} workers", f"{ips['baseline']:,.0f}", "1.0x"]]))
    print(f"\n{args.n} images, batch {args.batch}, {len(ours)} batches (one epoch) a repetition, {args.repeats} repetitions, "
          f"device {device}; {machine_note()}")


if __name__ == "__main__":
    main()
