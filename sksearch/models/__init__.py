"""Model builders: an ArchSpec in, a torch.nn.Module out."""
from __future__ import annotations


from sksearch.models.layers import Block, Blueprint, SKConv, Sequence, init_weights
from sksearch.presets import PRESETS, preset_dict
from sksearch.models.resnext import resnext_blueprint
from sksearch.models.shufflenet import shufflenet_v2_blueprint
from sksearch.spec import ArchSpec

_BLUEPRINTS = {
    "resnext": resnext_blueprint,
    "resnext_cifar": resnext_blueprint,
    "shufflenet_v2": shufflenet_v2_blueprint,
}


def blueprint(spec: ArchSpec) -> Blueprint:
    """The spec as named parts of unit recipes, before anything is instantiated."""
    return _BLUEPRINTS[spec.backbone](spec)


def build_model(spec: ArchSpec, *, init: bool = True) -> Sequence:
    """The network a spec describes. Under `torch.device('meta')` no memory is allocated;
    pass init=False there, since initialising meta tensors is wasted work."""
    model = Sequence.from_blueprint(blueprint(spec))
    if init:
        init_weights(model)
    return model


def list_presets() -> list[str]:
    return sorted(PRESETS)


__all__ = ["ArchSpec", "Block", "Blueprint", "blueprint", "SKConv", "Sequence", "build_model", "init_weights", "list_presets", "preset_dict", "PRESETS"]
