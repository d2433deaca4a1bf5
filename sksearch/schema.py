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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0] not in KINDS:
        print(f"usage: sksearch schema {'|'.join(KINDS)}", file=sys.stderr if argv[:1] not in (["-h"], ["--help"]) else sys.stdout)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    print(json.dumps(schema(argv[0]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
