"""YAML in and out, and dotted keys: the file syntax shared by spec files, study files, space files and `--set`.

Errors are UserErrors naming the file (and, for dotted keys, the key), so every command reports them the
same way.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from sksearch.errors import UserError


class _Dumper(yaml.SafeDumper):
    pass


def _flow_short_lists(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    # [3, 4, 6, 3] reads better inline; lists of mappings (branches) stay in block style.
    flow = all(isinstance(v, (int, float, str, bool)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _flow_short_lists)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; syntax errors become a UserError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError("file not found", file=str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror}", file=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"YAML syntax error: {where}{problem}", file=str(path)) from None


def parse_yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"cannot parse {text!r} as a YAML value: {exc}") from None


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set data['a']['b'][1]['c'] from 'a.b.1.c' (integer parts index lists)."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            try:
                idx = int(part)
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
            except (ValueError, IndexError):
                raise UserError(f"{part!r} is not a valid index into a list of {len(node)}", key=key) from None
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise UserError(f"cannot set {part!r} inside a {type(node).__name__}", key=key)


def apply_overrides(data: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply `--set key=value` strings (YAML values) to a spec dict; returns a new dict."""
    data = copy.deepcopy(data)
    for item in assignments:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        key, _, raw = item.partition("=")
        set_dotted(data, key.strip(), parse_yaml_value(raw))
    return data
