"""search.ray_cluster: the per-node resource check (on ray.nodes()-shaped data) and the Ray environment."""
from __future__ import annotations

import json
import os

import pytest

from sksearch.config import StudyConfig
from sksearch.errors import UserError
from sksearch.search.ray_cluster import RAY_ENV, check_resources, configure_ray_env

from tests.fresh import run_fresh


def _cfg(cpu: float = 1, gpu: float = 0) -> StudyConfig:
    return StudyConfig.model_validate({"name": "s", "search_space": "x.yaml",
                                       "tune": {"resources_per_trial": {"cpu": cpu, "gpu": gpu}}})


def _node(cpu: float, gpu: float = 0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpu, **({"GPU": gpu} if gpu else {})}}


def test_a_gpu_trial_on_gpu_less_nodes_is_refused_naming_the_gpu_key():
    with pytest.raises(UserError) as info:
        check_resources(_cfg(gpu=1), [_node(8), _node(8)])
    assert info.value.key == "tune.resources_per_trial.gpu" and "single node" in str(info.value)
    check_resources(_cfg(gpu=1), [_node(8), _node(8, 1)])  # one node with a GPU is enough
    check_resources(_cfg(gpu=0.5), [_node(8, 1)])


def test_cpus_are_held_per_node_and_dead_nodes_do_not_count():
    # 8 CPUs in total, but a trial runs on one node (tune.resources_per_trial.gpu > 1 is refused at load).
    with pytest.raises(UserError) as info:
        check_resources(_cfg(cpu=6), [_node(4), _node(4), _node(16, alive=False)])
    assert info.value.key == "tune.resources_per_trial.cpu"
    check_resources(_cfg(cpu=4), [_node(4), _node(2)])


def test_a_trial_needs_both_on_one_node():
    with pytest.raises(UserError, match="both"):
        check_resources(_cfg(cpu=8, gpu=1), [_node(16, 0), _node(2, 1)])


def test_the_ray_environment_is_set_only_when_asked(monkeypatch):
    for key in RAY_ENV:
        monkeypatch.delenv(key, raising=False)
    # Importing in a fresh process: here another test may have imported sksearch.search.tune already.
    code = ("import json, os\nimport sksearch.search.tune, sksearch.run\n"
            f"print(json.dumps([k for k in {sorted(RAY_ENV)!r} if k in os.environ]))")
    assert json.loads(run_fresh(code, env=dict(os.environ)).splitlines()[-1]) == []
    configure_ray_env()
    assert all(os.environ[key] == value for key, value in RAY_ENV.items())


@pytest.mark.slow
def test_a_process_that_ran_a_local_ray_is_told_it_cannot_join_a_cluster():
    """In Ray 2.x every actor that a process creates on a cluster it joins after running a local Ray dies before it
    starts: instead of a study whose trials all fail, one clear error (in a fresh process: a local Ray here would
    leave the test process unable to join the suite's shared head)."""
    code = ("import ray\nfrom sksearch.config import StudyConfig\nfrom sksearch.errors import UserError\n"
            "from sksearch.search.ray_cluster import init_ray\n"
            "cfg = StudyConfig.model_validate({'name': 's', 'search_space': 'x.yaml'})\n"
            "init_ray(None, cfg)\nray.shutdown()\n"
            "try:\n    init_ray('127.0.0.1:1', cfg)\nexcept UserError as exc:\n    print(exc.key, '|', exc)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    key, _, text = run_fresh(code, env=env).splitlines()[-1].partition(" | ")
    assert key == "--address" and "already ran a study on a local Ray" in text and "new process" in text
