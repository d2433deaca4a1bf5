"""yamlio: YAML files with errors that name the line, dotted keys, `--set` overrides."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sksearch.errors import UserError
from sksearch.models import preset_dict
from sksearch.spec import ArchSpec
from sksearch.yamlio import apply_overrides, dump_yaml, load_yaml, set_dotted

SKNET50 = preset_dict("sknet50")


def test_set_dotted() -> None:
    data: dict[str, Any] = {"sk": {"branches": [{"kernel": 3}, {"kernel": 3}]}}
    set_dotted(data, "sk.branches.1.kernel", 5)
    set_dotted(data, "sk.extra.deep", 1)
    assert data["sk"]["branches"][1]["kernel"] == 5 and data["sk"]["extra"] == {"deep": 1}
    with pytest.raises(UserError) as info:
        set_dotted(data, "sk.branches.7.kernel", 5)
    assert info.value.key == "sk.branches.7.kernel"
    with pytest.raises(UserError, match="cannot set"):
        set_dotted(data, "sk.branches.0.kernel.size", 5)


def test_overrides_parse_yaml_values() -> None:
    data = apply_overrides(SKNET50, ["sk.r=8", "sk.branches=[{kernel: 3}, {kernel: 1}]", "sk.attention=sum"])
    assert data["sk"]["r"] == 8 and data["sk"]["branches"] == [{"kernel": 3}, {"kernel": 1}]
    assert SKNET50["sk"]["r"] == 16  # the input is not modified
    spec = ArchSpec.from_dict(data)
    assert [b.kernel for b in spec.sk.branches] == [3, 1] and spec.sk.attention == "sum"
    with pytest.raises(UserError, match="key=value"):
        apply_overrides(SKNET50, ["sk.r"])
    with pytest.raises(UserError, match="YAML value"):
        apply_overrides(SKNET50, ["sk.branches=[{kernel: 3"])


def test_load_yaml_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(UserError, match=r"line \d+, column \d+"):
        load_yaml(path)


def test_dump_yaml_writes_short_lists_inline_and_round_trips(tmp_path: Path) -> None:
    text = dump_yaml({"depths": [3, 4, 6, 3], "sk": {"branches": [{"kernel": 3}, {"kernel": 5}]}})
    assert "depths: [3, 4, 6, 3]" in text and "- kernel: 3" in text
    path = tmp_path / "x.yaml"
    path.write_text(text)
    assert load_yaml(path) == {"depths": [3, 4, 6, 3], "sk": {"branches": [{"kernel": 3}, {"kernel": 5}]}}
