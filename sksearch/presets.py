"""Named architectures, registered like timm's model entry points: `@register` a function returning a spec dict."""
from __future__ import annotations

from typing import Any, Callable

PRESETS: dict[str, Callable[[], dict[str, Any]]] = {}


def register(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    PRESETS[fn.__name__] = fn
    return fn


def preset_dict(name: str) -> dict[str, Any]:
    return PRESETS[name]()


K3 = {"kernel": 3, "dilation": 1, "relu": True}
K5 = {"kernel": 3, "dilation": 2, "relu": True}  # 3x3 dilated by 2: a 5x5 receptive field at 3x3 cost
PLAIN = {"attention": "sum", "branches": [K3]}  # M = 1, no attention: a plain grouped conv


def _imagenet_resnext(depths: list[int], sk: dict[str, Any]) -> dict[str, Any]:
    return {
        "backbone": "resnext",
        "depths": depths,
        "widths": [128, 256, 512, 1024],
        "out_channels": [256, 512, 1024, 2048],
        "num_classes": 1000,
        "input_size": [3, 224, 224],
        "sk": sk,
    }


SK_2_32_16 = {"G": 32, "r": 16, "L": 32, "attention": "softmax", "branches": [K3, K5]}


@register
def resnext50_32x4d() -> dict[str, Any]:
    return _imagenet_resnext([3, 4, 6, 3], {"G": 32, **PLAIN})


@register
def sknet26() -> dict[str, Any]:
    return _imagenet_resnext([2, 2, 2, 2], dict(SK_2_32_16))


@register
def sknet50() -> dict[str, Any]:
    return _imagenet_resnext([3, 4, 6, 3], dict(SK_2_32_16))


@register
def sknet101() -> dict[str, Any]:
    return _imagenet_resnext([3, 4, 23, 3], dict(SK_2_32_16))


def _cifar_resnext(cardinality: int, base_width: int, sk: dict[str, Any], num_classes: int = 10) -> dict[str, Any]:
    # Inner width of stage i = cardinality x base width x 2^i (Xie et al. 2017, CIFAR ResNeXt-29).
    return {
        "backbone": "resnext_cifar",
        "depths": [3, 3, 3],
        "widths": [cardinality * base_width * 2**i for i in range(3)],
        "out_channels": [256, 512, 1024],
        "num_classes": num_classes,
        "input_size": [3, 32, 32],
        "sk": sk,
    }


@register
def resnext29_16x32d() -> dict[str, Any]:
    return _cifar_resnext(16, 32, {"G": 16, **PLAIN})


@register
def resnext29_8x64d() -> dict[str, Any]:
    return _cifar_resnext(8, 64, {"G": 8, **PLAIN})


@register
def resnext29_16x64d() -> dict[str, Any]:
    return _cifar_resnext(16, 64, {"G": 16, **PLAIN})


@register
def sknet29() -> dict[str, Any]:
    # SK[2, 16, 32]; against over-fitting on CIFAR the second path is a 1x1 conv instead of K5.
    one_by_one = {"kernel": 1, "dilation": 1, "relu": True}
    return _cifar_resnext(16, 32, {"G": 16, "r": 32, "L": 32, "attention": "softmax", "branches": [K3, one_by_one]})


def _shufflenet(width_mult: float, sk: dict[str, Any]) -> dict[str, Any]:
    return {
        "backbone": "shufflenet_v2",
        "depths": [4, 6, 6],  # the SK paper's variant (the original uses 4, 8, 4)
        "width_mult": width_mult,
        "num_classes": 1000,
        "input_size": [3, 224, 224],
        "sk": sk,
    }


DW_K3 = {"kernel": 3, "dilation": 1, "relu": False}
DW_K5 = {"kernel": 3, "dilation": 2, "relu": False}
SHUFFLE_PLAIN = {"G": "depthwise", "attention": "sum", "branches": [DW_K3]}
# Paper: M = 2 (K3, K5), r = 4, depthwise paths, no ReLU in either path (Table S8). L is not stated for
# this family; 16 keeps d = max(C/4, L) close to C/4 at these small widths.
SHUFFLE_SK = {"G": "depthwise", "r": 4, "L": 16, "attention": "softmax", "branches": [DW_K3, DW_K5]}


@register
def shufflenet_v2_x0_5() -> dict[str, Any]:
    return _shufflenet(0.5, dict(SHUFFLE_PLAIN))


@register
def shufflenet_v2_x1_0() -> dict[str, Any]:
    return _shufflenet(1.0, dict(SHUFFLE_PLAIN))


@register
def shufflenet_v2_x0_5_sk() -> dict[str, Any]:
    return _shufflenet(0.5, dict(SHUFFLE_SK))


@register
def shufflenet_v2_x1_0_sk() -> dict[str, Any]:
    return _shufflenet(1.0, dict(SHUFFLE_SK))
