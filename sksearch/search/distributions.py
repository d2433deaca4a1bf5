"""The distributions of a search-space file, and the Dimension each one becomes.

    {choices: [a, b, ...]}                  any YAML values (lists and mappings too), no repeats
    {int: [low, high], step: 2, log: true}  whole numbers; log and a step other than 1 do not mix
    {float: [low, high], step: 0.5}         numbers; log needs low > 0

Each kind is a pydantic model with unknown keys forbidden; errors come back as a UserError naming the file
and the key (`search.sk.r.int`), like every other file sksearch reads. Whether a value suits the ArchSpec
field it sets is the space's business (sksearch.search.space), not this module's.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import optuna
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, field_validator,
                      model_validator)

from sksearch.errors import UserError, from_validation_error

KINDS = ("choices", "int", "float")
ENUMERATE_LIMIT = 512  # int ranges up to this many values are checked value by value at load time


def encode_choice(value: Any) -> Any:
    """Optuna categorical choices must be None/bool/int/float/str: lists become readable JSON strings."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Dimension:
    """One searched value: an Optuna parameter `name` that sets `key` (a dotted spec key or a path field)."""

    name: str
    key: str
    kind: Literal["choices", "int", "float"]
    choices: tuple[Any, ...] = ()
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "choices":
            encoded = [encode_choice(c) for c in self.choices]
            picked = trial.suggest_categorical(self.name, encoded)
            return self.choices[encoded.index(picked)]
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def values(self) -> list[Any] | None:
        """Every value it can take, when that is a short list (choices, small int ranges); else None."""
        if self.kind == "choices":
            return list(self.choices)
        if self.kind == "int":
            step = int(self.step or 1)
            if (self.high - self.low) // step < ENUMERATE_LIMIT:
                return list(range(int(self.low), int(self.high) + 1, step))
        return None

    def bounds(self) -> list[Any]:
        """Values worth type-checking: all of them when enumerable, else the two ends."""
        return self.values() or [self.low, self.high]

    def describe(self) -> str:
        if self.kind == "choices":
            text = "{" + ", ".join(json.dumps(c) for c in self.choices) + "}"
        else:
            text = f"{self.kind} [{_number(self.low)}, {_number(self.high)}]"
            if self.step:
                text += f" step {self.step:g}"
            if self.log:
                text += " log"
        return f"{self.name}: {text}"


# -- the file syntax, one pydantic model per kind -------------------------------------------------------------

class _Kind(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)
    kind: ClassVar[str]

    def dimension(self, name: str, key: str) -> Dimension:
        raise NotImplementedError


class Choices(_Kind):
    kind: ClassVar[str] = "choices"
    choices: list[Any] = Field(description="The values to choose from (any type, distinct).")

    @field_validator("choices")
    @classmethod
    def _distinct(cls, v: list[Any]) -> list[Any]:
        if not v:
            raise ValueError("expected a non-empty list")
        encoded = [json.dumps(c, sort_keys=True) for c in v]
        if len(set(encoded)) != len(encoded):
            raise ValueError(f"duplicate values in {v}")
        return v

    def dimension(self, name: str, key: str) -> Dimension:
        return Dimension(name, key, "choices", tuple(self.choices))


class _Range(_Kind):
    """[low, high] with an optional step and log scale; subclasses type the bounds and the step."""

    bounds: tuple[float, float]
    step: float | None = None
    log: StrictBool = Field(False, description="Sample on a log scale (low > 0; not with step).")

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"low {v[0]} > high {v[1]}")
        return v

    @model_validator(mode="after")
    def _step_and_log(self) -> "_Range":
        # "key: message" names the key (see errors.from_validation_error).
        low, high = self.bounds
        if self.log and low <= 0:
            raise ValueError(f"log: a log scale needs low > 0 (got {low})")
        if self.step is None:
            return self
        if self.log and not (self.kind == "int" and self.step == 1):
            raise ValueError("step: log and step cannot be combined (Optuna samples a log range continuously)")
        rest = ((high - low) / self.step) % 1
        if not (math.isclose(rest, 0, abs_tol=1e-9) or math.isclose(rest, 1, abs_tol=1e-9)):
            raise ValueError(f"step: high - low ({high} - {low}) is not a multiple of step {self.step}")
        return self

    def dimension(self, name: str, key: str) -> Dimension:
        low, high = self.bounds
        return Dimension(name, key, self.kind, low=low, high=high, step=self.step, log=self.log)  # type: ignore[arg-type]


class IntRange(_Range):
    kind: ClassVar[str] = "int"
    bounds: tuple[StrictInt, StrictInt] = Field(alias="int", description="[low, high], both included.")
    step: StrictInt | None = Field(None, gt=0, description="Only low, low + step, ... high.")


class FloatRange(_Range):
    kind: ClassVar[str] = "float"
    bounds: tuple[StrictFloat, StrictFloat] = Field(alias="float", description="[low, high].")
    step: StrictFloat | None = Field(None, gt=0, description="Only low, low + step, ... high.")


MODELS: dict[str, type[_Kind]] = {"choices": Choices, "int": IntRange, "float": FloatRange}


def parse_distribution(raw: Any, *, name: str, key: str, file: str, where: str) -> Dimension:
    """{choices: [...]}, {int: [low, high], step, log} or {float: [low, high], step, log} at `where` in `file`."""
    if not isinstance(raw, dict):
        raise UserError(
            f"expected a distribution such as {{choices: [...]}}, {{int: [low, high]}} or {{float: [low, high]}} "
            f"(got {raw!r}); fixed values go under `set`", file=file, key=where)
    kinds = [k for k in KINDS if k in raw]
    if not kinds:
        unknown = ", ".join(repr(k) for k in raw) or "none"
        raise UserError(f"unknown distribution kind {unknown}; use choices, int or float", file=file, key=where)
    if len(kinds) > 1:
        raise UserError(f"one distribution kind per key (got {', '.join(kinds)})", file=file, key=where)
    model = MODELS[kinds[0]]
    try:
        return model.model_validate(raw).dimension(name, key)
    except ValidationError as exc:
        raise _user_error(exc, model, file=file, where=where) from None


def _user_error(exc: ValidationError, model: type[_Kind], *, file: str, where: str) -> UserError:
    error = from_validation_error(exc, file=file, prefix=where)
    first = exc.errors(include_url=False)[0]
    if first["type"] == "extra_forbidden":
        allowed = sorted(f.alias or n for n, f in model.model_fields.items())
        return UserError(f"unknown key in a {model.kind} distribution (allowed: {', '.join(allowed)})",
                         file=file, key=error.key)
    if first["loc"]:
        # The file's key, as written: format_loc would drop an `int` or `float` part as pydantic noise.
        return UserError(error.detail, file=file, key=f"{where}.{first['loc'][0]}")
    return error
