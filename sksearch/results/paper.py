"""Figures the SKNet paper reports (Li et al., CVPR 2019, arXiv 1903.06586): reference points for reports.

These are paper-reported, not measured by sksearch. Sources and checks:
- ImageNet-1k, 224x224 single crop, top-1 error / #P / GFLOPs (multiply-adds): the paper's Table 2, as
  reproduced in the authors' README (github.com/implus/SKNet); every figure below matches it.
- CIFAR-10 / CIFAR-100 error / #P: the paper's Table 7. The CIFAR-100 errors of SENet-29 (17.78), ResNeXt-29
  8x64d (17.77) and SKNet-29 (17.33) with their #P match later papers that cite them (as 82.22, 82.23, 82.67
  accuracy); the CIFAR-10 errors and the ResNeXt-29 16x32d / 16x64d rows could not be checked against a copy
  of the table. The paper gives no FLOPs for CIFAR: MACs of our presets are counted by sksearch instead, and
  SENet-29 (no preset) has none, so it appears on params plots only.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

SOURCE = "Li et al., Selective Kernel Networks, CVPR 2019"


@dataclass(frozen=True)
class PaperModel:
    name: str
    dataset: str                 # cifar10 | cifar100 | imagenet
    top1_error: float            # percent
    params: int
    macs: int | None             # None: not reported and no preset to count
    macs_source: str             # "paper" | "sksearch" | "none"
    table: str

    @property
    def accuracy(self) -> float:
        return round(1.0 - self.top1_error / 100.0, 6)

    def note(self) -> str:
        macs = {"paper": "MACs paper-reported", "sksearch": "MACs counted by sksearch",
                "none": "no MACs reported"}[self.macs_source]
        return f"paper-reported (not measured), {SOURCE}, {self.table}; {macs}"


# (name, #P in millions, CIFAR-10 error, CIFAR-100 error, preset to count MACs with)
_CIFAR = [
    ("ResNeXt-29, 16x32d", 25.2, 3.87, 18.56, "resnext29_16x32d"),
    ("ResNeXt-29, 8x64d", 34.4, 3.65, 17.77, "resnext29_8x64d"),
    ("ResNeXt-29, 16x64d", 68.1, 3.58, 17.31, "resnext29_16x64d"),
    ("SENet-29", 35.0, 3.68, 17.78, None),
    ("SKNet-29", 27.7, 3.47, 17.33, "sknet29"),
]

# (name, top-1 error at 224, #P in millions, GFLOPs = multiply-adds)
_IMAGENET = [
    ("ResNeXt-50", 22.23, 25.0, 4.24),
    ("SENet-50", 21.12, 27.7, 4.25),
    ("SKNet-50", 20.79, 27.5, 4.47),
    ("ResNeXt-101", 21.11, 44.3, 7.99),
    ("SENet-101", 20.58, 49.2, 8.00),
    ("SKNet-101", 20.19, 48.9, 8.46),
]


def dataset_family(dataset_name: str) -> str | None:
    """Which of the paper's benchmarks a study's data set is comparable to, if any."""
    if dataset_name in ("cifar10", "cifar100"):
        return dataset_name
    if dataset_name.startswith("imagenet"):
        return "imagenet"
    return None


@functools.lru_cache(maxsize=4)
def reference_models(dataset_name: str) -> tuple[PaperModel, ...]:
    """The paper's models for this data set (empty when the paper has none, e.g. synthetic data)."""
    family = dataset_family(dataset_name)
    if family == "imagenet":
        return tuple(PaperModel(n, "imagenet", err, round(p * 1e6), round(g * 1e9), "paper", "Table 2 (224x224)")
                     for n, err, p, g in _IMAGENET)
    if family is None:
        return ()
    from sksearch.complexity import count
    from sksearch.spec import load_spec

    classes = 100 if family == "cifar100" else 10
    out = []
    for name, p, err10, err100, preset in _CIFAR:
        macs = count(load_spec(preset, [f"num_classes={classes}"])).macs if preset else None
        err = err100 if family == "cifar100" else err10
        out.append(PaperModel(name, family, err, round(p * 1e6), macs, "sksearch" if preset else "none", "Table 7"))
    return tuple(out)
