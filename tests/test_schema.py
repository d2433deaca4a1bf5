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


@pytest.mark.parametrize("kind", ["study", "space"])
def test_the_committed_schema_is_the_printed_one_and_every_shipped_file_names_it(kind):
    # Editors read schemas/*.schema.json through each file's first line; it must not drift from the models.
    committed = json.loads((ROOT / "schemas" / f"{kind}.schema.json").read_text())
    assert committed == schema(kind), "run: sksearch schema KIND > schemas/KIND.schema.json"
    folder = "studies" if kind == "study" else "search_spaces"
    for path in sorted((ROOT / folder).glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == f"# yaml-language-server: $schema=../schemas/{kind}.schema.json", path.name


SPACE = "base: sknet29\nsearch: {sk.r: {choices: [8, 16]}}\n"
BAD_STUDIES = {
    "unknown top-level key": "serch_space: s.yaml\n",
    "unknown nested key": "tune: {n_trails: 4}\n",
    "a number that is text": "tune: {n_trials: many}\n",
    "a value below its minimum": "tune: {n_trials: 0}\n",
    "a choice that does not exist": "tune: {scheduler: {type: hyperband}}\n",
    "a block that is not a mapping": "train: 5\n",
    "an objective without direction": "objectives: [{metric: accuracy}]\n",
}
BAD_SPACES = {
    "unknown top-level key": "base: sknet29\nserch: {}\n",
    "no base": "search: {sk.r: {choices: [8]}}\n",
    "set that is not a mapping": "base: sknet29\nset: [1, 2]\n",
}


@pytest.mark.parametrize("case", sorted(BAD_STUDIES))
def test_what_the_study_schema_refuses_the_loader_refuses_with_exit_2(case, tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(SPACE)
    text = "name: bad\nsearch_space: s.yaml\n" + BAD_STUDIES[case]
    if case == "unknown top-level key":
        text = "name: bad\n" + BAD_STUDIES[case]
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(text), schema("study"))
    assert cli.main(["run", str(tmp_path / "bad.yaml"), "--dry-run", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.yaml" in err and "Traceback" not in err


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_what_the_space_schema_refuses_the_loader_refuses_with_exit_2(case, tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(BAD_SPACES[case])
    (tmp_path / "study.yaml").write_text("name: bad\nsearch_space: s.yaml\n")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(BAD_SPACES[case]), schema("space"))
    assert cli.main(["run", str(tmp_path / "study.yaml"), "--dry-run", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "s.yaml" in err and "Traceback" not in err
