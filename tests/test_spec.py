"""ArchSpec: validation names the key, YAML round trips, overrides, presets and files."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sksearch.errors import UserError
from sksearch.models import list_presets, preset_dict
from sksearch.spec import ArchSpec, load_spec

SKNET50 = preset_dict("sknet50")
SHUFFLE_SK = preset_dict("shufflenet_v2_x0_5_sk")


def with_sk(**sk: Any) -> dict[str, Any]:
    return {**SKNET50, "sk": {**SKNET50["sk"], **sk}}


def with_branches(*branches: dict[str, Any], **sk: Any) -> dict[str, Any]:
    return with_sk(branches=list(branches), **sk)


GE1 = "greater than or equal to 1"  # pydantic's wording for Field(ge=1)

# (case id, spec dict, key the message must name, words the message must contain)
BAD_SPECS = [
    ("unknown top-level key", {**SKNET50, "depth": [3]}, "depth", "unknown key"),
    ("unknown sk key", with_sk(M=2), "sk.M", "unknown key"),
    ("unknown branch key", with_branches({"kernel": 3, "size": 5}, {"kernel": 3}), "sk.branches[0].size", "unknown key"),
    ("M < 1", with_branches(), "sk.branches", "at least one path"),
    ("softmax with M = 1", with_branches({"kernel": 3}), "sk.attention", "single path"),
    ("even kernel", with_branches({"kernel": 3}, {"kernel": 4}), "sk.branches[1].kernel", "odd"),
    ("kernel 0", with_branches({"kernel": 0}, {"kernel": 3}), "sk.branches[0].kernel", "odd"),
    ("dilation 0", with_branches({"kernel": 3}, {"kernel": 3, "dilation": 0}), "sk.branches[1].dilation", GE1),
    ("r = 0", with_sk(r=0), "sk.r", GE1),
    ("r < 0", with_sk(r=-4), "sk.r", GE1),
    ("L = 0", with_sk(L=0), "sk.L", GE1),
    ("G = 0", with_sk(G=0), "sk.G", ">= 1"),
    ("G not an int", with_sk(G="many"), "sk.G", "integer"),
    ("G does not divide a width", with_sk(G=3), "sk.G", "do not divide"),
    ("G divides some widths only", with_sk(G=256), "sk.G", "128"),
    ("path groups do not divide", with_branches({"kernel": 3}, {"kernel": 3, "groups": 48}),
     "sk.branches[1].groups", "do not divide"),
    ("path groups 0", with_branches({"kernel": 3}, {"kernel": 3, "groups": 0}), "sk.branches[1].groups", ">= 1"),
    ("bad attention", with_sk(attention="max"), "sk.attention", "softmax"),
    ("relu not a bool", with_branches({"kernel": 3, "relu": "maybe"}, {"kernel": 3}), "sk.branches[0].relu", "boolean"),
    ("widths shorter than depths", {**SKNET50, "widths": [128, 256, 512]}, "widths", "3 entries for 4 stages"),
    ("out_channels shorter", {**SKNET50, "out_channels": [256, 512]}, "out_channels", "2 entries for 4 stages"),
    ("out_channels missing", {k: v for k, v in SKNET50.items() if k != "out_channels"}, "out_channels", "required"),
    ("depths empty", {**SKNET50, "depths": [], "widths": [], "out_channels": []}, "depths", "at least one stage"),
    ("depth 0", {**SKNET50, "depths": [3, 0, 6, 3]}, "depths", "at least one unit"),
    ("width 0", {**SKNET50, "widths": [128, 0, 512, 1024]}, "widths", "positive"),
    ("depths missing", {k: v for k, v in SKNET50.items() if k != "depths"}, "depths", "required key is missing"),
    ("unknown backbone", {**SKNET50, "backbone": "vgg"}, "backbone", "resnext"),
    ("num_classes 0", {**SKNET50, "num_classes": 0}, "num_classes", GE1),
    ("input_size of 2", {**SKNET50, "input_size": [3, 224]}, "input_size", "[channels, height, width]"),
    ("out_channels on shufflenet", {**SHUFFLE_SK, "out_channels": [96, 192, 384]}, "out_channels", "not used"),
    ("odd shufflenet width", {**SHUFFLE_SK, "width_mult": None, "widths": [48, 97, 192]}, "widths", "even"),
    ("bad width_mult", {**SHUFFLE_SK, "width_mult": 0.7}, "width_mult", "one of"),
    ("width_mult not a number", {**SHUFFLE_SK, "width_mult": "big"}, "width_mult", "one of"),
    ("width_mult on resnext", {**SKNET50, "width_mult": 1.0}, "width_mult", "shufflenet_v2"),
    ("final_channels on resnext", {**SKNET50, "final_channels": 1024}, "final_channels", "shufflenet_v2"),
]


@pytest.mark.parametrize("data, key, words", [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_bad_values_name_their_key(data: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(UserError) as info:
        ArchSpec.from_dict(data, file="spec.yaml")
    err = info.value
    assert err.key == key, str(err)
    assert err.file == "spec.yaml"
    assert words in err.detail, str(err)
    assert str(err).startswith(f"spec.yaml: {key}: ")


def test_prefix_is_prepended_to_the_key() -> None:
    with pytest.raises(UserError) as info:
        ArchSpec.from_dict(with_sk(r=0), file="study.yaml", prefix="spec")
    assert info.value.key == "spec.sk.r"


def test_not_a_mapping() -> None:
    with pytest.raises(UserError, match="expected a mapping"):
        ArchSpec.from_dict([1, 2], file="spec.yaml")


@pytest.mark.parametrize("name", list_presets())
def test_yaml_round_trip(name: str, tmp_path: Path) -> None:
    spec = load_spec(name)
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    again = load_spec(str(path))
    assert again == spec
    assert again.key() == spec.key()


def test_yaml_is_readable() -> None:
    text = load_spec("sknet50").to_yaml()
    assert "depths: [3, 4, 6, 3]" in text  # short lists inline
    assert "- kernel: 3" in text  # branches in block style
    assert "groups" not in text  # unset optional keys are left out


def test_width_mult_fills_the_standard_widths() -> None:
    spec = ArchSpec.from_dict({**SHUFFLE_SK, "width_mult": 1.0})
    assert spec.widths == [116, 232, 464] and spec.final_channels == 1024
    assert ArchSpec.from_dict({**SHUFFLE_SK, "width_mult": 2.0}).final_channels == 2048
    explicit = ArchSpec.from_dict({**SHUFFLE_SK, "width_mult": None, "widths": [64, 128, 256]})
    assert explicit.widths == [64, 128, 256]


def test_derived_values() -> None:
    spec = load_spec("sknet50")
    assert spec.M == 2
    assert spec.sk.attention_width(128) == 32 and spec.sk.attention_width(1024) == 64  # max(C // r, L)
    assert spec.sk_channels() == [128, 256, 512, 1024]
    assert spec.label() == "resnext [3, 4, 6, 3] SK[2, 32, 16] L=32 K3+K5"
    assert load_spec("sknet29").sk.label() == "SK[2, 16, 32] L=32 K3+1x1"
    # ShuffleNetV2 SK units run at half the stage width, and at the input width in downsampling units.
    assert load_spec("shufflenet_v2_x0_5_sk").sk_channels() == [24, 48, 96]
    assert load_spec("shufflenet_v2_x0_5_sk").sk.label() == "SK[2, dw, 4] L=16 K3+K5"


def test_replace_validates_and_leaves_the_original() -> None:
    spec = load_spec("sknet50")
    smaller = spec.replace(**{"sk.r": 8, "sk.branches.1.dilation": 3})
    assert smaller.sk.r == 8 and smaller.sk.branches[1].name == "K7"
    assert spec.sk.r == 16 and spec.sk.branches[1].dilation == 2
    assert smaller.key() != spec.key()
    with pytest.raises(UserError) as info:
        spec.replace(**{"sk.G": 5})
    assert info.value.key == "sk.G"


def test_key_is_canonical() -> None:
    a = ArchSpec.from_dict(SKNET50)
    b = ArchSpec.from_dict(dict(reversed(list(SKNET50.items()))))
    assert a.key() == b.key()
    assert a.key() != a.replace(num_classes=10).key()


def test_load_spec_from_file_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(load_spec("sknet26").to_yaml())
    spec = load_spec(path, ["sk.r=4"])
    assert spec.depths == [2, 2, 2, 2] and spec.sk.r == 4
    # An exported training config keeps its spec under `spec:`.
    wrapped = tmp_path / "train.yaml"
    wrapped.write_text("epochs: 100\nspec:\n" + "".join(f"  {line}\n" for line in spec.to_yaml().splitlines()))
    assert load_spec(wrapped) == spec


def test_load_spec_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown preset 'sknet51'"):
        load_spec("sknet51")
    with pytest.raises(UserError, match="file not found"):
        load_spec(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: resnext\ndepths: [3, 4\n")
    with pytest.raises(UserError) as info:
        load_spec(bad)
    assert info.value.file == str(bad) and "line" in info.value.detail
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(load_spec("sknet26").to_yaml().replace("r: 16", "r: 0"))
    with pytest.raises(UserError) as info:
        load_spec(wrong)
    assert info.value.file == str(wrong) and info.value.key == "sk.r"
