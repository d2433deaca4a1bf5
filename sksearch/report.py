"""`sksearch report STUDY.yaml [--out DIR] [--storage URL]`: one self-contained HTML report of a study
(sksearch.results.report)."""
from __future__ import annotations

import argparse
import sys

from sksearch.config import load_study
from sksearch.errors import cli_entry
from sksearch.results.report import write_report


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sksearch report", description=__doc__.splitlines()[0])
    p.add_argument("study", help="a study file, e.g. studies/quickstart.yaml")
    p.add_argument("--out", help="output folder (default: <study output_dir>/report)")
    p.add_argument("--storage", help="Optuna storage URL (overrides SKSEARCH_STORAGE and the study's storage)")
    args = p.parse_args(argv)
    write_report(load_study(args.study), storage_url=args.storage, out_dir=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
