"""Nothing left behind: a test run fails if it leaves a process it started or Ray state behind it.

Every process the run starts inherits SKSEARCH_TEST_SESSION (set here, before xdist spawns its workers), so
what is still alive at the end is found by that tag in /proc, including Ray daemons that `ray start` detached.
Ray's `ray_current_cluster` file changes what a plain `ray.init()` does in the next program on the machine (it
tries to join the dead cluster), so a run that created or rewrote it fails too. What is found is named, then
removed, so one failed run does not break the next.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

TAG = "SKSEARCH_TEST_SESSION"


def _ray_address_file() -> Path:
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def _stamp(path: Path) -> tuple[float, str] | None:
    try:
        return path.stat().st_mtime, path.read_text()
    except OSError:
        return None


def tagged_processes(tag: str) -> dict[int, str]:
    """{pid: command line} of this user's processes whose environment holds TAG=tag (this one excluded)."""
    needle = f"{TAG}={tag}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
        except OSError:  # another user's, or gone
            pass
    return found


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_controller(config):
        os.environ.setdefault(TAG, uuid.uuid4().hex)
        config.stash[_START] = _stamp(_ray_address_file())


def _own_helpers() -> set[int]:
    """Python's multiprocessing resource tracker of THIS process (started by the first multiprocessing
    object that needs it): it ends when this process does, by design, so it is not left behind."""
    from multiprocessing import resource_tracker

    pid = getattr(resource_tracker._resource_tracker, "_pid", None)
    return {pid} if pid else set()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SESSION] = session


def pytest_unconfigure(config: pytest.Config) -> None:
    """Runs after every plugin's sessionfinish (xdist's workers are gone by then), before pytest exits."""
    if not _is_controller(config) or _START not in config.stash:
        return
    import ray

    if ray.is_initialized():  # an in-process Ray the last test module left up: its own atexit would stop it
        ray.shutdown()
    problems = []
    own = _own_helpers()
    deadline = time.monotonic() + 30  # Ray's daemons take a few seconds to exit after ray.shutdown()/ray stop
    while (left := {p: c for p, c in tagged_processes(os.environ[TAG]).items() if p not in own}) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid, cmd in left.items():
        problems.append(f"process {pid} still running: {cmd}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    address_file = _ray_address_file()
    now = _stamp(address_file)
    if now is not None and now != config.stash[_START]:
        problems.append(f"{address_file} was written (a plain ray.init() would join {now[1].strip()!r})")
        address_file.unlink(missing_ok=True)
    if problems:
        print("\nthe test run left this behind (now removed):\n  " + "\n  ".join(problems), file=sys.stderr)
        session = config.stash.get(_SESSION, None)
        if session is not None:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


_START = pytest.StashKey[tuple | None]()
_SESSION = pytest.StashKey[pytest.Session]()
