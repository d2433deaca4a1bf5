"""`sksearch inspect`: params and MACs of a preset or spec file, as a table or JSON; clean errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sksearch.inspect import main
from sksearch.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def inspect_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_module_prints_json() -> None:
    proc = run_module("sksearch.inspect", "sknet50", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert isinstance(out["params"], int) and 27.4e6 <= out["params"] <= 27.6e6
    assert isinstance(out["macs"], int) and 4.4e9 <= out["macs"] <= 4.5e9
    assert out["spec"]["sk"]["r"] == 16 and out["label"].startswith("resnext")


def test_console_dispatcher() -> None:
    proc = run_module("sksearch.cli", "inspect", "sknet26", "--json")
    assert proc.returncode == 0, proc.stderr
    assert 16.6e6 <= json.loads(proc.stdout)["params"] <= 16.9e6


def test_bad_input_exits_2_without_traceback() -> None:
    # One real process end to end; the other bad inputs are checked in-process below (same code path).
    proc = run_module("sksearch.inspect", "sknet50", "--set", "sk.r=0")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_set_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    base = inspect_json(capsys, "sknet50")
    r8 = inspect_json(capsys, "sknet50", "--set", "sk.r=8")
    assert r8["spec"]["sk"]["r"] == 8 and r8["params"] > base["params"]  # wider attention layers
    one_by_one = inspect_json(capsys, "sknet50", "--set", "sk.branches=[{kernel: 3}, {kernel: 1}]")
    assert [b["kernel"] for b in one_by_one["spec"]["sk"]["branches"]] == [3, 1]
    assert one_by_one["params"] < base["params"] and one_by_one["macs"] < base["macs"]
    both = inspect_json(capsys, "sknet50", "--set", "sk.r=8", "--set", "num_classes=10")
    assert both["spec"]["num_classes"] == 10 and both["spec"]["sk"]["r"] == 8


def test_yaml_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(load_spec("sknet29").to_yaml())
    from_file = inspect_json(capsys, str(path))
    from_preset = inspect_json(capsys, "sknet29")
    assert (from_file["params"], from_file["macs"]) == (from_preset["params"], from_preset["macs"])


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sknet50"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "resnext [3, 4, 6, 3] SK[2, 32, 16] L=32 K3+K5"
    for part in ("stem", "stage1", "stage4", "head", "total"):
        assert any(line.startswith(part) for line in out.splitlines())
    assert "2048x7x7" in out and "params 27,479,784" in out


@pytest.mark.parametrize("argv, file, key, words", [
    (["sknet50", "--set", "sk.G=5"], None, "sk.G", "do not divide"),
    (["sknet50", "--set", "sk.bogus=1"], None, "sk.bogus", "unknown key"),
    (["sknet50", "--set", "sk.branches=[{kernel: 3}]"], None, "sk.attention", "single path"),
    (["sknet50", "--set", "sk.r"], None, None, "key=value"),
    (["no_such_preset"], None, None, "unknown preset 'no_such_preset'"),
    (["MISSING_FILE"], "MISSING_FILE", None, "file not found"),
    (["BAD_FILE", "--set", "sk.r=4"], "BAD_FILE", "sk.branches[1].kernel", "odd"),
    (["SYNTAX_FILE"], "SYNTAX_FILE", None, "YAML syntax error: line "),
])
def test_errors_name_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                  file: str | None, key: str | None, words: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(load_spec("sknet26").to_yaml().replace("- kernel: 3\n    dilation: 2", "- kernel: 4\n    dilation: 2"))
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("backbone: resnext\ndepths: [2, 2\n")
    paths = {"BAD_FILE": str(bad), "SYNTAX_FILE": str(syntax), "MISSING_FILE": str(tmp_path / "missing.yaml")}
    argv = [paths.get(a, a) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    message = captured.err.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error: ")
    if file:
        assert paths[file] in message
    if key:
        assert f": {key}: " in message
    assert words in message
