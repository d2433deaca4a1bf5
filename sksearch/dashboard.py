"""`sksearch dashboard STUDY.yaml`: optuna-dashboard on the study's storage (127.0.0.1 by default)."""
from __future__ import annotations

import argparse
import sys

from sksearch.config import load_study, redact_url
from sksearch.errors import UserError, cli_entry


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sksearch dashboard", description=__doc__)
    p.add_argument("study", help="the study file")
    p.add_argument("--storage", help="Optuna storage URL (overrides SKSEARCH_STORAGE and the study's storage)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    cfg = load_study(args.study)
    url = cfg.storage_url(args.storage)
    if url.startswith("sqlite:///") and not __import__("pathlib").Path(url.removeprefix("sqlite:///")).exists():
        raise UserError(f"no study storage at {url} yet; run `sksearch run {args.study}` first", file=args.study)
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise UserError("optuna-dashboard is not installed: pip install optuna-dashboard") from None
    from sksearch.storage import open_storage

    storage = open_storage(url)
    print(f"optuna-dashboard for {redact_url(url)} at http://{args.host}:{args.port}/ (study {cfg.name!r}); "
          "Ctrl-C stops it", flush=True)
    run_server(storage, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
