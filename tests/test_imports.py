"""Importing sksearch changes nothing in the importing process: no environment variable, no logger level, no
warnings filter. What Ray and Optuna need is set where a study starts (search.ray_cluster.configure_ray_env,
storage.open.quiet_optuna)."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import sksearch

REPO = Path(__file__).resolve().parents[1]

# Third-party packages are imported first: their own import-time behaviour is not ours to test.
PROBE = r"""
import json, logging, os, sys, warnings
import optuna, plotly.graph_objects, plotly.io, ray, ray.tune, ray.tune.search, ray.tune.schedulers, sqlalchemy, torch
import optuna.storages, optuna.visualization, torchvision
try:
    import sympy  # torch pulls it in lazily; it adds a warnings filter of its own
except ImportError:
    pass

LOGGERS = ["", "optuna", "ray", "ray.tune", "ray.tune.execution.tune_controller", "sksearch"]

def state():
    return {"env": dict(os.environ), "filters": [repr(f) for f in warnings.filters],
            "levels": {n: logging.getLogger(n).level for n in LOGGERS}}

before = state()
changed = {}
for name in sys.argv[1:]:
    __import__(name)
    now = state()
    diff = {k: [x for x in (set(now[k].items()) ^ set(before[k].items()) if isinstance(now[k], dict)
                            else set(now[k]) ^ set(before[k]))] for k in now}
    if any(diff.values()):
        changed[name] = {k: sorted(map(str, v)) for k, v in diff.items() if v}
        before = now
print(json.dumps(changed))
"""


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(sksearch.__path__, "sksearch."))


def test_every_module_imports_without_side_effects():
    modules = _modules()
    assert "sksearch.storage.records" in modules and "sksearch.search.tune" in modules and len(modules) > 30
    out = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    changed = json.loads(out.stdout.strip().splitlines()[-1])
    assert changed == {}, changed


def test_only_front_and_the_ledger_import_optunas_private_modules():
    # docs/development.md: front.py is the one user of Optuna's private multi-objective helpers, and the
    # ledger the one user of its RDB models; a new Optuna release that moves them breaks these two only.
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "sksearch"
    users: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("optuna") and any(part.startswith("_") for part in name.split(".")):
                    users.setdefault(str(path.relative_to(package)), set()).add(name)
    assert users == {"front.py": {"optuna._hypervolume", "optuna.study._multi_objective"},
                     "storage/ledger.py": {"optuna.storages._rdb", "optuna.storages._rdb.storage"}}
