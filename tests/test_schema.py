"""`sksearch schema study|space` prints schemas that every shipped study and space file satisfies."""
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from sksearch import cli
from sksearch.schema import schema

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind, folder", [("study", "studies"), ("space", "search_spaces")])
def test_shipped_files_validate_against_printed_schema(kind, folder, capsys):
    assert cli.main(["schema", kind]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == schema(kind)
    files = sorted((ROOT / folder).glob("*.yaml"))
    assert files
    for path in files:
        jsonschema.validate(yaml.safe_load(path.read_text()), printed)


def test_schema_refuses_unknown_top_level_key():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"base": "sknet50", "serch": {}}, schema("space"))


def test_bad_kind_exits_2():
    assert cli.main(["schema", "nope"]) == 2


def _model_keys(model, prefix=""):
    """Every key a file may hold, walked over the pydantic models themselves (not over the schema)."""
    import typing

    from pydantic import BaseModel

    keys = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = prefix + (field.alias or name)
        keys.append(key)
        annotation, sep = field.annotation, "."
        if typing.get_origin(annotation) is list:
            annotation, sep = typing.get_args(annotation)[0], "[]."
        for arg in typing.get_args(annotation) or (annotation,):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                keys += _model_keys(arg, key + sep)
    return keys


@pytest.mark.parametrize("kind", ["study", "space"])
def test_every_key_is_in_the_reference_with_a_description(kind):
    from sksearch.config import StudyConfig
    from sksearch.schema import reference, reference_markdown
    from sksearch.search.space import SpaceFile

    rows = reference(kind)
    keys = _model_keys(StudyConfig if kind == "study" else SpaceFile)
    assert [r["key"] for r in rows] == keys
    assert all(r["description"] for r in rows), [r["key"] for r in rows if not r["description"]]
    table = reference_markdown(kind)
    assert all(f"`{key}`" in table for key in keys)
    if kind == "study":
        row = {r["key"]: r for r in rows}["tune.scheduler.type"]
        assert row["default"] == '"fifo"' and '"pareto_asha"' in row["type"]
