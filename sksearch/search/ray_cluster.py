"""Ray for a study: the environment Ray Tune needs, joining or starting a cluster (with a probe, so a dead
address fails in seconds), the per-node resource check, and the callback that relays a crashed trial's
error text to the searcher. Nothing here runs at import."""
from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Sequence

from sksearch.config import StudyConfig
from sksearch.errors import UserError, handle_sigterm

# Set where a study starts (configure_ray_env), never at import: a notebook's own Ray Tune stays as it was.
RAY_ENV = {
    # Per-trial CSV/JSON/TensorBoard loggers cost time and disk for nothing: Optuna records every trial.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    # A crashed trial reports {"error": ...} without accuracy; the searcher records it FAIL.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "100000",
    # A worker reused for the next trial (reuse_actors) first waits for the last trial's thread to end, 2 s by
    # default. A trial that a scheduler stops unwinds slower than that on a loaded machine; the reuse then
    # fails, and Ray errors the new trial without telling its own ConcurrencyLimiter, which then holds the
    # slot for ever (seen as a study that hangs after a pruned trial). Waiting longer costs nothing.
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "120",
}
# What Ray's worker processes read, passed on where set: a cluster's workers do not inherit the driver's
# environment (the fault injection of sksearch.search.trial included, so that chaos tests work on a cluster).
WORKER_ENV = ("TUNE_FUNCTION_THREAD_TIMEOUT_S", "SKSEARCH_INJECT_FAULT", "SKSEARCH_RELEASE")


def worker_env() -> dict[str, str]:
    """WORKER_ENV as set here, for run_trial to apply in its worker. Handed over with the trial's parameters, not
    as a Ray runtime_env: one of those starts every worker process through Ray's runtime-env setup (a second
    Python start, ~0.3 s of CPU more per trial process)."""
    configure_ray_env()
    return {k: os.environ[k] for k in WORKER_ENV if k in os.environ}


# Whether this process has started a local Ray: in Ray 2.x, actors that a process creates on a cluster it joins
# afterwards die before they start (seen as every trial "cancelled before it started running").
_started_local_ray = False


def configure_ray_env() -> None:
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)


def probe(address: str) -> None:
    """Ray retries an address that nothing answers at for ever: check that something listens first."""
    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():  # ray://, auto: let Ray resolve them
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"nothing answers at {address} ({exc.strerror or exc}); start the head node with "
                        "`ray start --head --port PORT` or fix the address", key="--address") from None


def init_ray(address: str | None, cfg: StudyConfig) -> None:
    """Join `address` (else RAY_ADDRESS, else start a local Ray) and check that one node can hold a trial."""
    import ray

    global _started_local_ray
    configure_ray_env()
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():  # a Ray left connected in this process (a notebook, an earlier call)
        ray.shutdown()
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=True,
                                  logging_level="ERROR")
    if address:
        if _started_local_ray:
            raise UserError(f"this Python process already ran a study on a local Ray, and Ray cannot run trials on "
                            f"another cluster ({address}) from it afterwards; run this study in a new process (in a "
                            "notebook: restart the kernel)", key="--address")
        probe(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:
            hint = ""
            if "auth" in str(exc).lower() and not os.environ.get("RAY_AUTH_MODE"):
                hint = " (the cluster uses token authentication: set RAY_AUTH_MODE=token, with its token in ~/.ray/auth_token)"
            raise UserError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}{hint}",
                            key="--address") from None
    else:
        # "local" starts a Ray of our own: a bare ray.init() would join whatever cluster the file
        # /tmp/ray/ray_current_cluster names, and wait forever if that cluster has died.
        ray.init(address="local", **kwargs)
        _started_local_ray = True
    handle_sigterm()  # ray.init installed a native SIGTERM handler that dumps stacks and aborts
    # Ray logs a crashed trial's traceback from its controller; the live view already reports it in one
    # line and the storage keeps its error, so keep the console readable.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    try:
        check_resources(cfg, ray.nodes())
    except UserError:
        ray.shutdown()
        raise


def check_resources(cfg: StudyConfig, nodes: Sequence[dict[str, Any]]) -> None:
    """Ray waits forever for a trial no node can hold: refuse at once. A trial runs on ONE node, so the
    request is held against each alive node's own resources (ray.nodes()), not the cluster's total."""
    need = cfg.tune.resources_per_trial
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", n.get("alive", True))]
    most_gpu = max((r.get("GPU", 0) for r in alive), default=0)
    most_cpu = max((r.get("CPU", 0) for r in alive), default=0)
    fits = any(r.get("GPU", 0) >= need.gpu and r.get("CPU", 0) >= need.cpu for r in alive)
    if fits:
        return
    where = f"{len(alive)} node(s)"
    if need.gpu > most_gpu:
        raise UserError(f"each trial asks for {need.gpu:g} GPU but no single node of the Ray cluster has that many "
                        f"(the most on one of its {where}: {most_gpu:g}); set tune.resources_per_trial.gpu: 0 to "
                        "train on CPU, lower it, or join a cluster with bigger nodes",
                        file=cfg.source, key="tune.resources_per_trial.gpu")
    if need.cpu > most_cpu:
        raise UserError(f"each trial asks for {need.cpu:g} CPUs but no single node of the Ray cluster has that many "
                        f"(the most on one of its {where}: {most_cpu:g})",
                        file=cfg.source, key="tune.resources_per_trial.cpu")
    raise UserError(f"no single node has both {need.cpu:g} CPUs and {need.gpu:g} GPUs free for one trial "
                    f"({where})", file=cfg.source, key="tune.resources_per_trial.gpu")


def node_lost(message: str, node: str | None, *, wait: float = 60.0) -> bool:
    """Whether a trial failed because its Ray node died (the raylet killed, the machine gone) rather than by
    a fault of its own. Ray says so in words (NodeDiedError) or, when the node's socket closed first, only
    that the actor is unavailable; then the cluster is asked whether the trial's node (`ip/node-id prefix`,
    what the trial recorded) is dead, polling until Ray's health check decides or `wait` seconds pass."""
    text = message.lower()
    # "The actor's node was terminated unexpectedly: health check failed ...": a trial that was still starting
    if any(w in text for w in ("nodediederror", "node has died", "node died", "node was terminated")):
        return True
    if not node or not any(w in text for w in ("unavailable", "rpc error", "socket closed", "node")):
        return False  # the trial's own crash (an exception, a worker that exited): no need to ask
    prefix = node.rsplit("/", 1)[-1]
    deadline = time.monotonic() + wait
    while True:
        alive = _node_alive(prefix)
        if alive is not True:  # dead, or gone from the cluster's list
            return alive is False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def _node_alive(prefix: str) -> bool | None:
    import ray

    try:
        for n in ray.nodes():
            if str(n.get("NodeID", "")).startswith(prefix):
                return bool(n.get("Alive"))
    except Exception:
        return None
    return False


class NoNodeLeft(Exception):
    """Raised from Ray Tune's loop to end it: after a node died, no node left can hold a trial (Ray would
    wait for one for ever). The searcher's stop_reason says so in one line."""


def _stop_if_no_node_fits(searcher: Any) -> None:
    import ray

    try:
        check_resources(searcher.cfg, ray.nodes())
    except UserError as exc:
        searcher.stop_reason = f"a Ray node died and no node left can hold a trial: {exc.detail}"
        raise NoNodeLeft(searcher.stop_reason) from None


def error_relay(searcher: Any) -> Any:
    """A Ray Tune callback that hands a crashed trial's error text to the searcher (record_crash), which
    records the trial FAIL with it."""
    from ray.tune import Callback

    class ErrorRelay(Callback):
        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            msg = ""
            path = getattr(trial, "error_file", None)
            try:
                if path and Path(path).exists():
                    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
                    msg = lines[-1] if lines else ""
            except OSError:
                pass
            msg = msg or str(getattr(trial, "error_msg", "") or "the trial failed")
            lost = node_lost(msg, searcher.node_of(trial.trial_id))
            searcher.record_crash(trial.trial_id, f"its Ray node died ({msg})" if lost else msg,
                                  "node_lost" if lost else "crash")
            # after any error, not only a recognised node loss: Ray would wait for ever for a node to hold the next
            _stop_if_no_node_fits(searcher)

        def __getstate__(self) -> dict:
            return {}

    return ErrorRelay()
