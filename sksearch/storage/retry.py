"""A driver's storage that rides out a database outage: a restart, a failover, a network blip.

Every storage call the driver makes (the ledger, the records, the artifacts' metadata, the heartbeats) goes
through RetryingStorage, which retries connection-level errors with backoff for up to `retry_seconds`
(the study file's `storage.retry_seconds`), printing one line when the storage goes away and one when it is
back. A call blocks while it retries, so writes stay in their order and none is made twice; Ray trials keep
their epochs meanwhile (each waits at its next report until the driver reads it). An outage longer than the
window raises StorageUnavailable: the run stops with exit 1 and one line naming the storage, and a rerun
resumes from what the storage holds.

After an outage every driver's heartbeats are old, so `connected_for()` tells the ledger how long this
driver has been connected again: it judges other drivers' trials stale only after a full grace period plus
MAX_DELAY (another driver may reconnect up to MAX_DELAY later than this one).
"""
from __future__ import annotations

import functools
import math
import sys
import threading
import time
from typing import Any, Callable

from optuna.storages import RDBStorage

from sksearch.errors import StorageUnavailable, cause_chain

# The longest pause between two tries: a driver is connected again at most this long after the database is
# back (the ledger adds it to the grace period before it judges other drivers' trials stale).
MAX_DELAY = 2.0


def is_connection_error(exc: BaseException) -> bool:
    """A database that does not answer (refused, reset, shut down, failed over), as SQLAlchemy reports it
    directly or under Optuna's StorageInternalError; not a constraint violation or a bad query."""
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    return any(isinstance(e, (OperationalError, InterfaceError, DisconnectionError)) for e in cause_chain(exc, 6))


def _first_line(exc: BaseException) -> str:
    seen: BaseException = exc
    while seen.__cause__ is not None:  # the driver's own words, not Optuna's wrapper
        seen = seen.__cause__
    text = str(seen).strip().splitlines()
    return f"{type(seen).__name__}: {text[0][:160]}" if text else type(seen).__name__


class RetryingStorage(RDBStorage):
    """RDBStorage whose every public call (and, through call_retried, the ledger's heartbeat query) retries
    connection errors."""

    def __init__(self, url: str, *, retry_seconds: float, shown_url: str,
                 log: Callable[[str], None] | None = None, **kwargs: Any):
        super().__init__(url, **kwargs)  # opening is not retried: a storage that never answered is a bad URL
        self._setup_retry(retry_seconds, shown_url, log)

    def _setup_retry(self, retry_seconds: float, shown_url: str, log: Callable[[str], None] | None) -> None:
        self.retry_seconds = retry_seconds
        self.shown_url = shown_url
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._retry_lock = threading.Lock()
        self._down_since: float | None = None
        self._up_since: float | None = None  # None: never lost since it was opened
        self.gave_up: StorageUnavailable | None = None  # set once an outage outlasted retry_seconds

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        for key in ("_retry_lock", "_log"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._retry_lock = threading.Lock()
        self._log = lambda line: print(line, file=sys.stderr, flush=True)

    def connected_for(self) -> float:
        """Seconds since the storage came back from its last outage (infinite when it never went away)."""
        with self._retry_lock:
            if self._down_since is not None:
                return 0.0
            return math.inf if self._up_since is None else time.monotonic() - self._up_since

    def _went_away(self, exc: BaseException) -> float:
        """Note an outage (one line for its start); returns when it started."""
        with self._retry_lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                self._log(f"storage {self.shown_url} is not answering ({_first_line(exc)}); retrying for up "
                          f"to {self.retry_seconds:g} s (storage.retry_seconds)")
            return self._down_since

    def _is_back(self) -> None:
        with self._retry_lock:
            if self._down_since is not None:
                now = time.monotonic()
                self._log(f"storage {self.shown_url} is back after {now - self._down_since:.0f} s")
                self._down_since, self._up_since = None, now

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        delay = 0.2
        while True:
            try:
                result = method(self, *args, **kwargs)
            except Exception as exc:
                if not is_connection_error(exc) or self.retry_seconds <= 0:
                    raise
                since = self._went_away(exc)
                left = since + self.retry_seconds - time.monotonic()
                if left <= 0:
                    # Kept, so the driver can name the outage whatever layer (Ray Tune) this is raised through.
                    self.gave_up = self.gave_up or StorageUnavailable(
                        f"storage {self.shown_url} has not answered for {self.retry_seconds:g} s "
                        f"(storage.retry_seconds): {_first_line(exc)}; the study is safe in it up to its last "
                        f"write: rerun the same command when it is back")
                    raise self.gave_up from None
                time.sleep(min(delay, left))
                delay = min(delay * 2, MAX_DELAY)
                continue
            if self._down_since is not None:
                self._is_back()
            return result


def call_retried(storage: RDBStorage, query: Callable[..., Any], *args: Any) -> Any:
    """query(storage, *args), a query of our own outside Optuna's storage API (the ledger's heartbeat read),
    retried as the storage's own calls are when it is a RetryingStorage."""
    if isinstance(storage, RetryingStorage):
        return storage._call(query, *args)
    return query(storage, *args)


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(method, *args, **kwargs)

    return call


# Every call that reaches the database; version and migration helpers are left alone (run once, at open).
# Optuna's study wraps the storage in its _CachedStorage, which calls these private methods directly.
_NOT_RETRIED = {"upgrade", "get_current_version", "get_head_version", "get_all_versions", "remove_session"}
_PRIVATE = ["_get_stale_trial_ids", "_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id"]
for _name in [n for n in dir(RDBStorage) if not n.startswith("_") and n not in _NOT_RETRIED
              and callable(getattr(RDBStorage, n))] + _PRIVATE:
    setattr(RetryingStorage, _name, _retrying(getattr(RDBStorage, _name)))
