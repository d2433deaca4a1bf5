"""`sksearch run STUDY.yaml`: run or resume a study (Ray Tune schedules, Optuna samples and records)."""
from __future__ import annotations

import argparse
import sys

from sksearch.config import load_study
from sksearch.errors import UserError, cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sksearch run", description=__doc__)
    p.add_argument("study", help="a study file, e.g. studies/quickstart.yaml")
    p.add_argument("--storage", help="Optuna storage URL (overrides SKSEARCH_STORAGE and the study's storage)")
    p.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--n-trials", type=int, help="override tune.n_trials")
    p.add_argument("--fresh", action="store_true", help="start over; the old study is kept under another name")
    p.add_argument("--confirm", type=int, metavar="K",
                   help="retrain each trial of the current full-fidelity front K more times with other training "
                        "seeds (off the budget and off the front; rerunning adds only what is missing), so the "
                        "report shows each front point's spread and the seed-to-seed SD; runs no search")
    p.add_argument("--dry-run", type=int, metavar="N",
                   help="sample N specs and print their settings, params, MACs and feasibility; trains nothing, "
                        "writes nothing")
    p.add_argument("--seed", type=int, help="sampling seed for --dry-run (default: the study's sampler seed)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    study = load_study(args.study)
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError("--n-trials must be >= 1")
    if args.dry_run is not None:
        if args.confirm is not None:
            raise UserError("--confirm trains; --dry-run trains nothing: use one of them", key="--confirm")
        from sksearch.search.dryrun import dry_run

        if args.dry_run < 1:
            raise UserError("--dry-run N needs N >= 1")
        return dry_run(study, args.dry_run, seed=args.seed)
    from sksearch.search.tune import run_study

    return run_study(study, storage=args.storage, address=args.address, n_trials=args.n_trials, fresh=args.fresh,
                     confirm=args.confirm)


if __name__ == "__main__":
    sys.exit(main())
