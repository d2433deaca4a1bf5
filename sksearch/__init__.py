"""sksearch: search the Selective Kernel network design space.

The Python API (documented in sksearch.api) is re-exported here and imported on first use, so that
`import sksearch` stays light:

    import sksearch
    model = sksearch.create_model("sknet50", **{"sk.r": 8})
    sksearch.count("sknet50")
    study = sksearch.load_study("studies/quickstart.yaml")
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("ArchSpec", "Count", "Study", "count", "create_model", "load_study", "run_study")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from sksearch import api

        return getattr(api, name)
    raise AttributeError(f"module 'sksearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
