"""`sksearch schema study|space`: the JSON Schema of study and space files, from their pydantic models.

Editors with the YAML extension use it (the `yaml-language-server: $schema=...` comment) to complete keys
and flag typos as you type; the loader stays the judge of values the schema cannot express.
"""
from __future__ import annotations

import json
import sys

KINDS = ("study", "space")


def schema(kind: str) -> dict:
    """The JSON Schema (draft 2020-12) of a study file (`kind="study"`) or a space file (`kind="space"`)."""
    if kind == "study":
        from sksearch.config import StudyConfig as model
    elif kind == "space":
        from sksearch.search.space import SpaceFile as model
    else:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    out = model.model_json_schema(by_alias=True)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return out


def _resolve(node: dict, defs: dict) -> dict:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _type_text(node: dict, defs: dict) -> str:
    """A schema node's accepted values as a reader writes them: `8 | "8M"`, `"fifo" | "asha"`, `list of ...`."""
    node = _resolve(node, defs)
    if "enum" in node:
        return " | ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    if "anyOf" in node:
        parts = [_type_text(n, defs) for n in node["anyOf"]]
        return " | ".join(dict.fromkeys(p for p in parts if p))
    kind = node.get("type")
    if kind == "array":
        items = node.get("items") or (node.get("prefixItems") or [{}])[0]
        return f"list of {_type_text(items, defs) or 'values'}"
    if kind == "object":
        return "mapping"
    return {"integer": "int", "number": "number", "string": "str", "boolean": "bool", "null": "null"}.get(kind, "")


def reference(kind: str) -> list[dict[str, str]]:
    """One row per key of a study or space file, nested keys dotted (`tune.scheduler.type`): the key, the
    values it accepts, its default and its description, read from the same schema editors use."""
    root = schema(kind)
    defs = root.get("$defs", {})
    rows: list[dict[str, str]] = []

    def walk(node: dict, prefix: str) -> None:
        for name, prop in node.get("properties", {}).items():
            key = f"{prefix}{name}"
            target = _resolve(prop, defs)
            for option in target.get("anyOf", []):  # an optional block (`latency: {...} | null`)
                if "properties" in _resolve(option, defs):
                    target = _resolve(option, defs)
            if "properties" not in target:  # a list of blocks (objectives) documents its item's keys too
                items = target.get("items")
                target = _resolve(items, defs) if isinstance(items, dict) else target
            default = json.dumps(prop["default"]) if "default" in prop else ("required" if name in node.get("required", []) else "")
            rows.append({"key": key, "type": _type_text(prop, defs), "default": default,
                         "description": prop.get("description", "")})
            if "properties" in target:
                walk(target, f"{key}[]." if _resolve(prop, defs).get("type") == "array" else f"{key}.")

    walk(root, "")
    return rows


def distribution_reference() -> list[dict[str, str]]:
    """The keys of one distribution in a space file's `search:` or `paths:` block, from their models."""
    from sksearch.search.distributions import MODELS

    rows = []
    for name, model in MODELS.items():
        node = model.model_json_schema(by_alias=True)
        for key, prop in node["properties"].items():
            rows.append({"key": f"{{{name}: ...}} {key}" if key != name else f"{{{name}: ...}}",
                         "type": _type_text(prop, node.get("$defs", {})),
                         "default": json.dumps(prop["default"]) if "default" in prop else "required",
                         "description": prop.get("description", "")})
    return rows


def reference_markdown(kind: str) -> str:
    """The reference as a Markdown table (the docs site's study-file and space-file pages); a space file's
    table lists a distribution's keys after the top-level ones."""
    lines = ["| key | values | default | what it does |", "|---|---|---|---|"]
    rows = reference(kind) + (distribution_reference() if kind == "space" else [])
    for row in rows:
        cells = [f"`{row['key']}`", row["type"].replace("|", "\\|"), f"`{row['default']}`" if row["default"] else "",
                 row["description"].replace("<", "&lt;")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0] not in KINDS:
        print(f"usage: sksearch schema {'|'.join(KINDS)}", file=sys.stderr if argv[:1] not in (["-h"], ["--help"]) else sys.stdout)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    print(json.dumps(schema(argv[0]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
