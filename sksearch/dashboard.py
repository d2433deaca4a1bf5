"""`sksearch dashboard STUDY.yaml`: optuna-dashboard on the study's storage (127.0.0.1 by default), with its
artifact store, so each trial's kept weights are listed (and downloadable) on its page."""
from __future__ import annotations

import argparse
import socket
import sys

from sksearch.config import load_study
from sksearch.errors import UserError, cli_entry
from sksearch.storage.open import open_study, redact_url
from sksearch.storage.records import artifact_store


def _check_port(host: str, port: int) -> None:
    """optuna-dashboard raises OSError deep in its server when the port is taken: say so in one line."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port",
                        key="--port") from None


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sksearch dashboard", description=__doc__)
    p.add_argument("study", help="the study file")
    p.add_argument("--storage", help="Optuna storage URL (overrides SKSEARCH_STORAGE and the study's storage)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    cfg = load_study(args.study)
    _, url = open_study(cfg, args.storage)  # a missing storage or study is a clear error, and nothing is created
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise UserError("optuna-dashboard is not installed: pip install optuna-dashboard") from None
    _check_port(args.host, args.port)
    print(f"optuna-dashboard for {redact_url(url)} at http://{args.host}:{args.port}/ (study {cfg.name!r}); "
          "Ctrl-C stops it", flush=True)
    run_server(url, host=args.host, port=args.port, artifact_store=artifact_store(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
