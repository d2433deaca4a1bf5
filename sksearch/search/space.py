"""Search-space files (search_spaces/*.yaml): a base ArchSpec plus distributions over its fields.

A file has up to five top-level keys (full example: docs/fragments/search-spaces.md):

    description: free text
    base: sknet29                 # a preset name, or an inline ArchSpec mapping
    set: {stem_channels: 16}      # optional fixed overrides of the base, by dotted key
    search:                       # distributions over ArchSpec fields, by dotted key
      sk.G: {choices: [8, 16, 32, 64]}
      sk.r: {int: [4, 32], log: true}
      depths: {choices: [[1, 1, 1], [2, 2, 2]]}
    paths:                        # the SK unit's paths; M and per-path values, conditional on M
      M: {choices: [1, 2, 3]}
      kernel: 3                   # every path (a fixed value or a distribution)
      dilation: {choices: [1, 2, 3]}
      path1: {dilation: 1}        # one path (1-based), overrides the every-path value

Only `base` is required: a file with nothing to search is a baseline, one spec that the searcher trains once
(SearchSpace.fixed). The distribution syntax ({choices}, {int}, {float}) is sksearch.search.distributions'.

Sampling is define-by-run on an Optuna trial, so a path beyond the sampled M asks the trial nothing,
`sk.attention` is asked only when M > 1 (an M = 1 unit always uses `sum`: softmax over one path is 1), and a
path's dilation is asked only when its kernel is larger than 1.
Impossibilities visible from the file alone (an even kernel, a G that divides no reachable width, ...) fail
at load time; combinations that are only sometimes invalid are left to sksearch.search.feasibility.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import optuna
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sksearch.errors import UserError, from_validation_error
from sksearch.search.distributions import Dimension, parse_distribution
from sksearch.presets import PRESETS, preset_dict
from sksearch.spec import SHUFFLENET_WIDTHS, ArchSpec, Branch, SKConfig
from sksearch.yamlio import load_yaml, set_dotted

TOP_LEVEL_KEYS = ("description", "base", "set", "search", "paths")
PATH_FIELDS = ("kernel", "dilation", "groups", "relu")
MAX_PATHS = 8          # a guard against typos such as M: {int: [1, 30]}
# Keys whose values decide the SK widths: checked together with the group counts at load time.
LAYOUT_KEYS = ("backbone", "widths", "width_mult", "stem_channels")
STAGE_LIST_KEYS = ("depths", "widths", "out_channels")

_SK_FIELDS = tuple(f for f in SKConfig.model_fields if f != "branches")
# num_classes and input_size come from the study's data set, so they are neither searched nor set.
_FITTED = ("num_classes", "input_size")
_SPEC_FIELDS = tuple(f for f in ArchSpec.model_fields if f not in ("sk", *_FITTED))


def param_name(key: str) -> str:
    """The Optuna parameter name of a searched key: sk.G -> G; other keys are their own name."""
    return key.removeprefix("sk.")


# -- per-value type checks ------------------------------------------------------------------------------------

def _field_adapter(key: str) -> TypeAdapter:
    field = ArchSpec.model_fields[key]
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)


def _check_value(key: str, value: Any) -> str | None:
    """Why `value` can never be valid for `key` (a dotted spec key or 'path.<field>'), or None."""
    try:
        if key.startswith("path."):
            Branch.model_validate({key.removeprefix("path."): value})
        elif key.startswith("sk."):
            SKConfig.model_validate({key.removeprefix("sk."): value, "branches": [{}, {}]})
        else:
            value = _field_adapter(key).validate_python(value)
            if key in STAGE_LIST_KEYS and value is not None and (not value or min(value) < 1):
                return "every stage needs a positive entry"
            if key == "width_mult" and value is not None and float(value) not in SHUFFLENET_WIDTHS:
                return f"width_mult must be one of {sorted(SHUFFLENET_WIDTHS)}"
    except ValidationError as exc:
        return exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
    return None


def _check_dimension(dim: Dimension, key: str, *, file: str, where: str) -> None:
    values = dim.bounds()
    if dim.kind == "float" and dim.high > dim.low:
        values.append(dim.low + (dim.high - dim.low) / math.pi)  # a fractional value: is the field a float?
    for value in values:
        problem = _check_value(key, value)
        if problem:
            raise UserError(f"{json.dumps(value)} can never be valid: {problem}", file=file, key=where)


# -- the search space -----------------------------------------------------------------------------------------

class SpaceFile(BaseModel):
    """A space file's top level; the blocks' contents are checked against ArchSpec below."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)
    description: Any = Field(None, description="Free text, shown by the dry run and the report.")
    base: Any = Field(description="A preset name (`sksearch inspect NAME`) or an inline ArchSpec mapping.")
    fixed: dict[Any, Any] | None = Field(None, alias="set", description="Fixed changes to the base, by dotted "
                                                                       "key (sk.L: 16).")
    search: dict[Any, Any] | None = Field(None, description="Distributions over ArchSpec fields, by dotted key: "
                                                            "{choices: [...]}, {int: [lo, hi]} or {float: [lo, hi]}, "
                                                            "with optional step and log.")
    paths: dict[Any, Any] | None = Field(None, description="The SK unit's paths: M (a distribution or a number), "
                                                           "kernel, dilation, relu and groups for every path, and "
                                                           "pathN blocks that override one path.")

    @classmethod
    def read(cls, path: str | Path) -> "SpaceFile":
        file = str(path)
        data = load_yaml(path)
        if not isinstance(data, dict):
            raise UserError("a search space file must be a mapping with `base` and `search` and/or `paths`", file=file)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            error = from_validation_error(exc, file=file)
            if exc.errors()[0]["type"] == "extra_forbidden":
                error = UserError(f"unknown key (allowed: {', '.join(TOP_LEVEL_KEYS)})", file=file, key=error.key)
            elif error.key == "base":
                error = UserError(f"{error.detail} (a preset name or an ArchSpec mapping)", file=file, key="base")
            raise error from None


@dataclass(frozen=True)
class _PathValue:
    """What one path field is: a Dimension (searched) or a fixed value."""

    dim: Dimension | None = None
    fixed: Any = None
    where: str = ""  # the file key it came from, for messages


class SearchSpace:
    """A base spec and the distributions a trial samples around it."""

    def __init__(self, *, file: str, base: ArchSpec, base_dict: dict[str, Any], dims: list[Dimension],
                 m: Dimension | int | None, path_values: dict[tuple[int, str], _PathValue], description: str = ""):
        self.file = file
        self.base = base
        self._base_dict = base_dict
        self.dims = dims                # file order; `sk.attention` is skipped when M = 1
        self.m = m                      # a Dimension, a fixed M, or None (the base's paths, unchanged)
        self._path_values = path_values  # (path index from 1, field) -> value; missing: the base's path
        self.description = description

    # -- loading ----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "SearchSpace":
        """Read a space file; anything impossible from the file alone is a UserError naming file and key.
        A file with only `base` is legal: a baseline, the one spec sampled every time."""
        file = str(path)
        top = SpaceFile.read(path)
        base_dict = _base_dict(top.base, file)
        _apply_set(base_dict, top.fixed or {}, file)
        dims = _parse_search(top.search or {}, file)
        searched = {d.key for d in dims}
        if "width_mult" in searched:
            if "widths" in searched:
                raise UserError("search width_mult or widths, not both (width_mult sets widths)", file=file,
                                key="search.width_mult")
            # width_mult fills widths and final_channels only when they are absent.
            base_dict.pop("widths", None)
            base_dict.pop("final_channels", None)

        base = ArchSpec.from_dict(copy.deepcopy(base_dict), file=file, prefix="base")
        m, path_values = _parse_paths(top.paths, base, file)
        space = cls(file=file, base=base, base_dict=base_dict, dims=dims, m=m, path_values=path_values,
                    description=str(top.description or ""))
        if "sk.attention" in searched and space.max_paths() == 1:
            raise UserError("M is always 1 here, and one path always uses attention: sum; search paths.M too",
                            file=file, key="search.sk.attention")
        space._check_reachable()
        return space

    # -- sampling ---------------------------------------------------------------------------------------
    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask the trial for every searched value (define-by-run) and return the spec dict, not validated."""
        data = copy.deepcopy(self._base_dict)
        m = self.m.suggest(trial) if isinstance(self.m, Dimension) else (self.m or self.base.M)
        for dim in self.dims:
            if dim.key == "sk.attention" and m == 1:
                continue
            set_dotted(data, dim.key, dim.suggest(trial))
        if self.m is not None:
            data.setdefault("sk", {})["branches"] = [self._sample_path(i, trial) for i in range(1, m + 1)]
        if m == 1:
            data.setdefault("sk", {})["attention"] = "sum"
        return data

    def _sample_path(self, index: int, trial: optuna.Trial) -> dict[str, Any]:
        base_paths = self.base.sk.branches
        branch = base_paths[index - 1].model_dump(exclude_none=True) if index <= len(base_paths) else {}
        for field in PATH_FIELDS:
            value = self._path_values.get((index, field))
            if value is None:
                continue
            if field == "dilation" and branch.get("kernel", 3) == 1:
                branch["dilation"] = 1  # dilating a 1x1 conv changes nothing: do not spend a parameter on it
                continue
            branch[field] = value.dim.suggest(trial) if value.dim else value.fixed
        return branch

    # -- reading ----------------------------------------------------------------------------------------
    def describe(self) -> list[str]:
        """One line per searched dimension, in sampling order."""
        lines = []
        if isinstance(self.m, Dimension):
            lines.append(self.m.describe())
        for dim in self.dims:
            line = dim.describe()
            if dim.key == "sk.attention":
                line += "   (only when M > 1; M = 1 uses sum)"
            lines.append(line)
        seen = set()
        order = sorted(self._path_values.items(), key=lambda item: (item[0][0], PATH_FIELDS.index(item[0][1])))
        for (index, field), value in order:
            if value.dim and value.dim.name not in seen:
                seen.add(value.dim.name)
                note = f"   (only when M >= {index})" if index > 1 and isinstance(self.m, Dimension) else ""
                lines.append(value.dim.describe() + note)
        return lines or ["nothing searched: every trial is the base spec (a baseline)"]

    def dimensions(self) -> list[Dimension]:
        """Every Dimension a trial may be asked for: M, the searched keys, the per-path ones."""
        m = [self.m] if isinstance(self.m, Dimension) else []
        return m + self.dims + [v.dim for v in self._path_values.values() if v.dim is not None]

    @property
    def fixed(self) -> bool:
        """True when the space holds one spec (only `base`, or only one-value distributions): a baseline,
        which the searcher trains once."""
        return all(values is not None and len(values) == 1 for values in (d.values() for d in self.dimensions()))

    def max_paths(self) -> int:
        if isinstance(self.m, Dimension):
            return max(self.m.bounds())
        return self.m or self.base.M

    # -- load-time impossibility checks -------------------------------------------------------------------
    def _values_of(self, key: str) -> list[Any] | None:
        """The values `key` can take: its dimension's, or the base's; None when too many to list."""
        for dim in self.dims:
            if dim.key == key:
                return dim.values()
        node: Any = self.base
        for part in key.split("."):
            node = getattr(node, part)
        return [node]

    def _check_reachable(self) -> None:
        self._check_stage_counts()
        self._check_group_counts()

    def _check_stage_counts(self) -> None:
        # A depths choice with 4 stages next to widths that always have 3 can never be valid.
        lengths: dict[str, set[int]] = {}
        for key in STAGE_LIST_KEYS:
            values = self._values_of(key)
            if values is not None and all(v is not None for v in values):
                lengths[key] = {len(v) for v in values}
        for dim in self.dims:
            if dim.key not in lengths:
                continue
            for value in dim.choices:
                for other, other_lengths in lengths.items():
                    if other != dim.key and len(value) not in other_lengths:
                        raise UserError(
                            f"{json.dumps(value)} has {len(value)} stages but {other} always has "
                            f"{' or '.join(map(str, sorted(other_lengths)))}", file=self.file, key=f"search.{dim.key}")

    def _layouts(self) -> list[list[int]] | None:
        """The SK channel sets of every reachable layout, or None when the layout keys cannot be listed."""
        options = []
        for key in LAYOUT_KEYS:
            values = self._values_of(key)
            if values is None:
                return None
            options.append(values)
        if math.prod(len(o) for o in options) > 10_000:
            return None
        by_mult = any(d.key == "width_mult" for d in self.dims)
        layouts = []
        for backbone, widths, width_mult, stem in itertools.product(*options):
            if by_mult:
                widths = SHUFFLENET_WIDTHS[float(width_mult)][0]
            # model_construct skips validation: sk_channels only reads backbone, widths and stem_channels.
            layout = ArchSpec.model_construct(backbone=backbone, widths=list(widths), stem_channels=stem)
            layouts.append(layout.sk_channels())
        return layouts

    def _group_options(self) -> list[tuple[str, list[Any]]]:
        """(file key, values) of every group count a path can use; per-path None means sk.G."""
        searched = any(d.key == "sk.G" for d in self.dims)
        options: dict[str, list[Any]] = {}
        g_values = self._values_of("sk.G")
        if g_values is not None:
            options["search.sk.G" if searched else "base.sk.G"] = g_values
        for value in self._path_values.values():
            if value.where and value.where.endswith("groups"):
                values = value.dim.values() if value.dim else [value.fixed]
                if values is not None:
                    options[value.where] = values
        return list(options.items())

    def _check_group_counts(self) -> None:
        layouts = self._layouts()
        if not layouts:
            return
        for where, values in self._group_options():
            for g in values:
                if g is None or g == "depthwise" or not isinstance(g, int):
                    continue
                if not any(all(ch % g == 0 for ch in channels) for channels in layouts):
                    reach = "; ".join(str(c) for c in layouts[:4]) + (" ..." if len(layouts) > 4 else "")
                    raise UserError(f"{g} groups divide no reachable set of SK widths ({reach})",
                                    file=self.file, key=where)


def _base_dict(raw: Any, file: str) -> dict[str, Any]:
    if isinstance(raw, str):
        if raw not in PRESETS:
            raise UserError(f"unknown preset {raw!r}; presets: {', '.join(sorted(PRESETS))}", file=file, key="base")
        return preset_dict(raw)
    if isinstance(raw, dict):
        return copy.deepcopy(raw)
    raise UserError(f"expected a preset name or an ArchSpec mapping (got {raw!r})", file=file, key="base")


def _apply_set(base_dict: dict[str, Any], fixed: dict[Any, Any], file: str) -> None:
    for key, value in fixed.items():
        _searchable_key(str(key), file=file, where=f"set.{key}")
        try:
            set_dotted(base_dict, str(key), copy.deepcopy(value))
        except UserError as exc:
            raise UserError(exc.detail, file=file, key=f"set.{key}") from None


def _parse_search(search: dict[Any, Any], file: str) -> list[Dimension]:
    dims = []
    for key, raw in search.items():
        key = str(key)
        _searchable_key(key, file=file, where=f"search.{key}")
        dim = parse_distribution(raw, name=param_name(key), key=key, file=file, where=f"search.{key}")
        _check_dimension(dim, key, file=file, where=f"search.{key}")
        dims.append(dim)
    return dims


def _searchable_key(key: str, *, file: str, where: str) -> None:
    """A dotted key must name an ArchSpec field; the SK paths have their own `paths` block."""
    if key in ("sk.branches", "sk.M", "M") or key.startswith("sk.branches."):
        raise UserError("the SK paths are searched under `paths` (M, kernel, dilation, groups, relu, pathN)",
                        file=file, key=where)
    if key in _FITTED:
        raise UserError("set by the study's data set (dataset.name, dataset.resolution), not by the space",
                        file=file, key=where)
    if key in _SPEC_FIELDS or (key.startswith("sk.") and key.removeprefix("sk.") in _SK_FIELDS):
        return
    known = ", ".join([*_SPEC_FIELDS, *(f"sk.{f}" for f in _SK_FIELDS)])
    raise UserError(f"not an ArchSpec field; searchable keys: {known}", file=file, key=where)


def _parse_paths(raw: dict[Any, Any] | None, base: ArchSpec, file: str
                 ) -> tuple[Dimension | int | None, dict[tuple[int, str], _PathValue]]:
    """M and every path's fields: (path index from 1, field) -> value, the pathN value over the shared one."""
    if raw is None:
        return None, {}
    m, max_m = _parse_m(raw.get("M", base.M), file)
    shared, own = _split_path_keys(raw, max_m, file)
    values: dict[tuple[int, str], _PathValue] = {}
    for index in range(1, max_m + 1):
        for field in PATH_FIELDS:
            if field in own.get(index, {}):
                raw_value, where = own[index][field], f"paths.path{index}.{field}"
            elif field in shared:
                raw_value, where = shared[field], f"paths.{field}"
            else:
                continue
            values[(index, field)] = _path_value(raw_value, f"path{index}.{field}", field, file=file, where=where)
    return m, values


def _parse_m(raw_m: Any, file: str) -> tuple[Dimension | int, int]:
    """paths.M (a whole number or a distribution over whole numbers) and the most paths it reaches."""
    m: Dimension | int
    if isinstance(raw_m, dict):
        m = parse_distribution(raw_m, name="M", key="M", file=file, where="paths.M")
        if m.kind == "float" or (m.kind == "choices" and not all(isinstance(v, int) and not isinstance(v, bool)
                                                                 for v in m.choices)):
            raise UserError("M is a whole number of paths: use choices of integers or an int range", file=file, key="paths.M")
        reach = m.bounds()
    elif isinstance(raw_m, int) and not isinstance(raw_m, bool):
        m, reach = raw_m, [raw_m]
    else:
        raise UserError(f"expected a number of paths or a distribution (got {raw_m!r})", file=file, key="paths.M")
    if min(reach) < 1:
        raise UserError(f"an SK unit needs at least one path (M reaches {min(reach)})", file=file, key="paths.M")
    if max(reach) > MAX_PATHS:
        raise UserError(f"at most {MAX_PATHS} paths are supported (M reaches {max(reach)})", file=file, key="paths.M")
    return m, max(reach)


def _split_path_keys(raw: dict[Any, Any], max_m: int, file: str) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """The every-path fields and the pathN blocks of `paths`, each key checked."""
    shared: dict[str, Any] = {}
    own: dict[int, dict[str, Any]] = {}
    for key, value in raw.items():
        key = str(key)
        if key == "M":
            continue
        if key in PATH_FIELDS:
            shared[key] = value
        elif key.startswith("path") and key[4:].isdigit():
            index = int(key[4:])
            if not 1 <= index <= max_m:
                raise UserError(f"paths are numbered 1 to {max_m} here (M reaches {max_m})", file=file, key=f"paths.{key}")
            if not isinstance(value, dict):
                raise UserError("expected a mapping of path fields (kernel, dilation, groups, relu)", file=file,
                                key=f"paths.{key}")
            for field in value:
                if field not in PATH_FIELDS:
                    raise UserError(f"unknown path field (allowed: {', '.join(PATH_FIELDS)})", file=file,
                                    key=f"paths.{key}.{field}")
            own[index] = value
        else:
            raise UserError(f"unknown key (allowed: M, {', '.join(PATH_FIELDS)}, path1 ... path{max_m})",
                            file=file, key=f"paths.{key}")
    return shared, own


def _path_value(raw: Any, name: str, field: str, *, file: str, where: str) -> _PathValue:
    if isinstance(raw, dict):
        dim = parse_distribution(raw, name=name, key=field, file=file, where=where)
        _check_dimension(dim, f"path.{field}", file=file, where=where)
        return _PathValue(dim=dim, where=where)
    if isinstance(raw, list):
        raise UserError(f"a list is not a {field}; to search it write {{choices: {json.dumps(raw)}}}", file=file, key=where)
    problem = _check_value(f"path.{field}", raw)
    if problem:
        raise UserError(f"{json.dumps(raw)} is not valid: {problem}", file=file, key=where)
    return _PathValue(fixed=raw, where=where)
