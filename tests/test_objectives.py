"""Objectives are validated when the study file is loaded: accuracy first and maximised, each metric once."""
from __future__ import annotations

import pytest

from sksearch.run import main

SPACE = "base: sknet29\n"


@pytest.mark.parametrize("objectives, key, words", [
    ("[{metric: accuracy, direction: maximize}, {metric: latency, direction: minimize}, "
     "{metric: latency, direction: minimize}]", "objectives", "each metric may appear once"),
    ("[{metric: macs, direction: minimize}]", "objectives", "accuracy must be one of the objectives"),
    ("[{metric: accuracy, direction: minimize}]", "objectives[0].direction", "maximize"),
    ("[{metric: macs, direction: minimize}, {metric: accuracy, direction: maximize}]",
     "objectives[0].metric", "must be the first"),
])
def test_bad_objectives_are_refused_at_load(tmp_path, capsys, objectives, key, words):
    (tmp_path / "space.yaml").write_text(SPACE)
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\nsearch_space: space.yaml\noutput_dir: {tmp_path / 'runs'}\nobjectives: {objectives}\n")
    assert main([str(study), "--dry-run", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{study}: {key}: " in err and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
