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
