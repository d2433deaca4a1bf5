"""ArchSpec: the one description of an architecture that flows through sksearch.

The search space produces it, the builder consumes it, the complexity counter measures it, the storage
records it (as a dict), the exporter rescales it. YAML layout: see ../shared/design/architecture.md.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sksearch.errors import UserError, from_validation_error
from sksearch.presets import PRESETS, preset_dict
from sksearch.yamlio import apply_overrides, dump_yaml, load_yaml, set_dotted

Backbone = Literal["resnext", "resnext_cifar", "shufflenet_v2"]
Groups = Union[int, Literal["depthwise"]]

# ShuffleNetV2 stage widths by multiplier (Ma et al. 2018, Table 5); the final 1x1 conv is 1024 except 2.0x.
SHUFFLENET_WIDTHS: dict[float, tuple[list[int], int]] = {
    0.5: ([48, 96, 192], 1024),
    1.0: ([116, 232, 464], 1024),
    1.5: ([176, 352, 704], 1024),
    2.0: ([244, 488, 976], 2048),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, validate_assignment=True)


class Branch(_Strict):
    """One path of an SK unit: conv(kernel, dilation, groups) -> BN -> optional ReLU."""

    kernel: int = Field(3, description="odd kernel size")
    dilation: int = Field(1, ge=1)
    groups: Groups | None = Field(None, description="this path's group count; default: sk.G")
    relu: bool = True

    @field_validator("kernel")
    @classmethod
    def _odd_kernel(cls, v: int) -> int:
        if v < 1 or v % 2 == 0:
            raise ValueError("kernel must be an odd integer >= 1 (padding keeps the spatial size)")
        return v

    @field_validator("groups")
    @classmethod
    def _positive_groups(cls, v: Groups | None) -> Groups | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("groups must be >= 1 or 'depthwise'")
        return v

    @property
    def name(self) -> str:
        """The paper's short name: K3 (3x3), K5 (3x3 dilation 2), K7 (3x3 dilation 3); else e.g. 5x5d1."""
        if self.kernel == 3:
            return f"K{1 + 2 * self.dilation}"
        return f"{self.kernel}x{self.kernel}" + (f"d{self.dilation}" if self.dilation > 1 else "")


class SKConfig(_Strict):
    """The SK unit's settings, shared by every unit of the network."""

    G: Groups = Field(32, description="groups per path (cardinality); 'depthwise' = one group per channel")
    r: int = Field(16, ge=1, description="reduction ratio")
    L: int = Field(32, ge=1, description="minimum attention width; d = max(C // r, L)")
    attention: Literal["softmax", "sum"] = "softmax"
    branches: list[Branch] = Field(default_factory=lambda: [Branch(), Branch(dilation=2)])

    @field_validator("G")
    @classmethod
    def _positive_g(cls, v: Groups) -> Groups:
        if isinstance(v, int) and v < 1:
            raise ValueError("G must be >= 1 or 'depthwise'")
        return v

    @model_validator(mode="after")
    def _check_paths(self) -> "SKConfig":
        if not self.branches:
            raise ValueError("branches: an SK unit needs at least one path (M >= 1)")
        if self.attention == "softmax" and len(self.branches) == 1:
            raise ValueError(
                "attention: softmax over a single path is always 1 (degenerate); use attention: sum for M = 1"
            )
        return self

    @property
    def M(self) -> int:
        return len(self.branches)

    def attention_width(self, channels: int) -> int:
        """d = max(C / r, L), the width of the fuse layer."""
        return max(channels // self.r, self.L)

    def groups_for(self, branch: Branch, channels: int) -> int:
        g = self.G if branch.groups is None else branch.groups
        return channels if g == "depthwise" else int(g)

    def label(self) -> str:
        g = "dw" if self.G == "depthwise" else self.G
        paths = "+".join(b.name for b in self.branches)
        att = "" if self.attention == "softmax" else ", sum"
        return f"SK[{self.M}, {g}, {self.r}] L={self.L} {paths}{att}"


class ArchSpec(_Strict):
    """A complete architecture: backbone layout plus the SK unit's settings."""

    backbone: Backbone
    depths: list[int] = Field(description="units per stage")
    widths: list[int] = Field(description="inner width of each stage (resnext) or stage output (shufflenet_v2)")
    out_channels: list[int] | None = Field(None, description="unit outputs per stage (resnext layouts only)")
    num_classes: int = Field(1000, ge=1)
    input_size: list[int] = Field(default_factory=lambda: [3, 224, 224])
    stem_channels: int | None = Field(None, ge=1, description="default: 64 (resnext), 24 (shufflenet_v2)")
    final_channels: int | None = Field(None, ge=1, description="shufflenet_v2's last 1x1 conv (default 1024)")
    width_mult: float | None = Field(None, description="shufflenet_v2: sets widths from the standard table")
    sk: SKConfig = Field(default_factory=SKConfig)

    @model_validator(mode="before")
    @classmethod
    def _fill_shufflenet_widths(cls, data: Any) -> Any:
        # width_mult is a convenience: it fills widths/final_channels when they are not given.
        if isinstance(data, dict) and data.get("backbone") == "shufflenet_v2" and data.get("width_mult") is not None:
            # "width_mult: ..." so that the error names the key (this check runs before field validation).
            choices = sorted(SHUFFLENET_WIDTHS)
            try:
                mult = float(data["width_mult"])
            except (TypeError, ValueError):
                raise ValueError(f"width_mult: expected one of {choices} (got {data['width_mult']!r})") from None
            if mult not in SHUFFLENET_WIDTHS:
                raise ValueError(f"width_mult: must be one of {choices} (got {data['width_mult']!r})")
            widths, final = SHUFFLENET_WIDTHS[mult]
            data = dict(data)
            data.setdefault("widths", list(widths))
            data.setdefault("final_channels", final)
        return data

    @model_validator(mode="after")
    def _check_layout(self) -> "ArchSpec":
        n = len(self.depths)
        if n == 0:
            raise ValueError("depths: at least one stage is needed")
        if any(d < 1 for d in self.depths):
            raise ValueError(f"depths: every stage needs at least one unit (got {self.depths})")
        if len(self.widths) != n:
            raise ValueError(f"widths: {len(self.widths)} entries for {n} stages (depths has {n})")
        if any(w < 1 for w in self.widths):
            raise ValueError(f"widths: must be positive (got {self.widths})")
        if len(self.input_size) != 3 or any(v < 1 for v in self.input_size):
            raise ValueError(f"input_size: expected [channels, height, width] of positive ints (got {self.input_size})")
        if self.backbone == "shufflenet_v2":
            if self.out_channels is not None:
                raise ValueError("out_channels: not used by shufflenet_v2 (widths are the stage outputs)")
            if any(w % 2 for w in self.widths):
                raise ValueError(f"widths: shufflenet_v2 splits channels in half, widths must be even (got {self.widths})")
        else:
            if self.width_mult is not None or self.final_channels is not None:
                key = "width_mult" if self.width_mult is not None else "final_channels"
                raise ValueError(f"{key}: only used by shufflenet_v2")
            if self.out_channels is None:
                raise ValueError("out_channels: required for the resnext layouts")
            if len(self.out_channels) != n:
                raise ValueError(f"out_channels: {len(self.out_channels)} entries for {n} stages")
        for ch in self.sk_channels():
            for i, b in enumerate(self.sk.branches):
                g = self.sk.G if b.groups is None else b.groups
                if g != "depthwise" and ch % int(g):
                    key = "sk.G" if b.groups is None else f"sk.branches[{i}].groups"
                    raise ValueError(f"{key}: {g} groups do not divide the SK width {ch} (widths: {self.sk_channels()})")
        return self

    # -- derived values ---------------------------------------------------------------------------------
    @property
    def M(self) -> int:
        return self.sk.M

    def stem_width(self) -> int:
        if self.stem_channels is not None:
            return self.stem_channels
        return 24 if self.backbone == "shufflenet_v2" else 64

    def sk_channels(self) -> list[int]:
        """Every distinct channel count an SK unit of this network runs at."""
        if self.backbone != "shufflenet_v2":
            return sorted(set(self.widths))
        # ShuffleNetV2: the right branch runs at width/2; a downsampling unit's left branch at its input width.
        ins = [self.stem_width()] + self.widths[:-1]
        return sorted(set(w // 2 for w in self.widths) | set(ins))

    def label(self) -> str:
        return f"{self.backbone} {self.depths} {self.sk.label()}"

    # -- (de)serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    def key(self) -> str:
        """A canonical string, equal for equal specs (a cache key). Equal networks: identity()."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def identity_dict(self) -> dict[str, Any]:
        """The network this spec builds, up to the order of its SK paths: what makes two specs the same network.

        Resolved here so that no caller compares raw spec dicts: r and L become the attention width d of
        each SK width (and vanish without attention: M = 1 or summed paths), a 1x1 path has no dilation,
        each path's groups are resolved per SK width (G, its own `groups`, 'depthwise'), defaults such as
        the stem width are filled in, and the paths are a sorted multiset (the select treats its paths
        symmetrically; path 1 is not special)."""
        channels = self.sk_channels()
        sk = self.sk
        paths = sorted(
            (b.kernel, b.dilation if b.kernel > 1 else 1, tuple(sk.groups_for(b, c) for c in channels), b.relu)
            for b in sk.branches
        )
        attention = ([[c, sk.attention_width(c)] for c in channels] if sk.attention == "softmax" else None)
        return {
            "backbone": self.backbone,
            "depths": list(self.depths),
            "widths": list(self.widths),
            "out_channels": None if self.out_channels is None else list(self.out_channels),
            "num_classes": self.num_classes,
            "input_size": list(self.input_size),
            "stem_channels": self.stem_width(),
            "final_channels": (self.final_channels or 1024) if self.backbone == "shufflenet_v2" else None,
            "sk_channels": channels,
            "paths": [[k, d, list(g), relu] for k, d, g, relu in paths],
            "attention": attention,
        }

    def identity(self) -> str:
        """A string equal for two specs exactly when they build the same network up to path order."""
        return json.dumps(self.identity_dict(), sort_keys=True, separators=(",", ":"))

    def same_network(self, other: "ArchSpec") -> bool:
        return self.identity() == other.identity()

    @classmethod
    def from_dict(cls, data: Any, *, file: str | None = None, prefix: str = "") -> "ArchSpec":
        if not isinstance(data, dict):
            raise UserError(f"expected a mapping of spec keys, got {type(data).__name__}", file=file, key=prefix or None)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise from_validation_error(exc, file=file, prefix=prefix) from None

    def replace(self, **overrides: Any) -> "ArchSpec":
        """A validated copy with dotted-key overrides: spec.replace(**{'sk.r': 8})."""
        data = self.to_dict()
        for key, value in overrides.items():
            set_dotted(data, key, value)
        return ArchSpec.from_dict(data)


def load_spec(name_or_path: str | Path, overrides: list[str] | None = None) -> ArchSpec:
    """A preset name or a spec YAML file, with optional `key=value` overrides, validated."""
    text = str(name_or_path)
    if text in PRESETS:
        data, file = preset_dict(text), None
    else:
        path = Path(text)
        if not path.exists():
            if path.suffix in (".yaml", ".yml") or "/" in text:
                raise UserError("file not found", file=text)
            raise UserError(f"unknown preset {text!r}; presets: {', '.join(sorted(PRESETS))}")
        data, file = load_yaml(path), text
        if isinstance(data, dict) and "spec" in data and "backbone" not in data:
            data = data["spec"]  # an exported training config holds its spec under `spec`
    if overrides:
        if not isinstance(data, dict):
            raise UserError("expected a mapping of spec keys", file=file)
        data = apply_overrides(data, overrides)
    return ArchSpec.from_dict(data, file=file)
