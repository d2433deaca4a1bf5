"""User-facing errors: one message naming the file and key, exit status 2, no traceback."""
from __future__ import annotations

import functools
import os
import re
import signal
import sys
import threading
from typing import Any, Callable, Iterator

EXIT_USAGE = 2
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: what a scheduler (SLURM, Kubernetes, systemd) expects after SIGTERM


class UserError(Exception):
    """Bad input from the user (a file, a key, a flag). Printed without a traceback."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        self.detail = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = ": ".join(p for p in (self.file, self.key) if p)
        return f"{where}: {self.detail}" if where else self.detail

    def in_file(self, file: str) -> "UserError":
        """The same error, attributed to `file` (when it has no file yet)."""
        return self if self.file else UserError(self.detail, file=file, key=self.key)


def cause_chain(exc: BaseException, depth: int = 8) -> Iterator[BaseException]:
    """The exception, then what caused it (explicitly, or raised while handling it), up to `depth` deep."""
    seen: BaseException | None = exc
    for _ in range(depth):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def format_loc(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as a dotted key: ('sk', 'branches', 1, 'kernel') -> sk.branches[1].kernel."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union", "union[")) or part in ("int", "str", "float", "bool", "list[...]", "dict[...]"):
            continue  # pydantic's internal validator names, meaningless to a user
        else:
            out += ("." if out else "") + str(part)
    return out


def from_validation_error(exc: Any, file: str | None = None, prefix: str = "") -> UserError:
    """The first problem of a pydantic ValidationError as a UserError naming its key."""
    err = exc.errors(include_url=False)[0]
    key = format_loc(err["loc"])
    if prefix:
        key = f"{prefix}.{key}" if key else prefix
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    msg = msg.removeprefix("Value error, ")
    # Model-level checks say which key they mean as "key: message"; fold it into the key path.
    m = re.match(r"^([A-Za-z_][\w.\[\]]*): (.*)$", msg, flags=re.S)
    if m and err["type"] == "value_error":
        key = f"{key}.{m.group(1)}" if key and not m.group(1).startswith(key + ".") else m.group(1)
        msg = m.group(2)
    if "input" in err and err["type"] not in ("missing", "extra_forbidden") and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    more = len(exc.errors()) - 1
    if more > 0:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return UserError(msg, file=file, key=key or None)


class StorageUnavailable(Exception):
    """The study's storage stopped answering for longer than storage.retry_seconds (storage/retry.py): one
    line naming it (password redacted), exit 1; the study is safe up to its last write, a rerun resumes."""


EXIT_STORAGE = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the same unwinding as Ctrl-C (a run's own trials are recorded as
    interrupted, Ray is shut down, a training run keeps its last epoch's checkpoint), then exit 143."""


_terminating = threading.Event()


def _on_sigterm(signum: int, frame: Any) -> None:
    if _terminating.is_set():  # a second signal while shutting down: leave at once
        os._exit(EXIT_TERMINATED)
    _terminating.set()
    raise Terminated()


def handle_sigterm() -> Any:
    """Turn SIGTERM into Terminated (main thread only); returns the handler it replaced. Call it again after a
    library installs its own: ray.init's native handler prints a stack dump and aborts (exit 134)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def cli_entry(fn: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a command's main(): user errors print one line and exit 2; Ctrl-C exits 130, SIGTERM 143."""

    @functools.wraps(fn)
    def wrapper(argv: list[str] | None = None) -> int:
        _terminating.clear()
        before = handle_sigterm()
        try:
            status = int(fn(argv) or 0)
            if not _terminating.is_set():
                return status
            # A library caught the interrupt and returned quietly (bottle's server does): still a SIGTERM.
            print("terminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except StorageUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_STORAGE
        except KeyboardInterrupt:
            # Libraries that catch the signal's exception may re-raise a plain KeyboardInterrupt (Ray does):
            # the flag, not the exception's type, says which signal it was.
            if _terminating.is_set():
                print("terminated (SIGTERM)", file=sys.stderr)
                return EXIT_TERMINATED
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # `sksearch inspect ... --json | head`: the reader left; quietly stop writing.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        finally:
            if before is not None:
                signal.signal(signal.SIGTERM, before)

    return wrapper
