"""`sksearch attention STUDY.yaml --trial N|best [--scales 1.0,1.5,2.0] [--out DIR] [--storage URL]`
or `sksearch attention [STUDY.yaml] --spec FILE --checkpoint FILE`: what a trained model's SK units select
as objects grow (the SKNet paper's Figs. 3c and 4).

The validation split goes through the model at each object scale (central crop resized back; on the
synthetic set also the same scenes generated with k-times-larger objects); DIR/attention.json holds each
SK unit's mean attention per path and scale (with sd over images), largest minus smallest path, and that
difference per class; DIR/attention.html draws them; a short table is printed.

Data: a study trial uses its study's validation split. With --spec/--checkpoint the validation split of
STUDY.yaml when one is given, else the built-in synthetic set (10,000 images, seed 0, 1,000 held out),
which is what a quick-start trial or bench/bench_attention.py trains on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sksearch.errors import UserError, cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sksearch attention", description=(
        "What a trained model's SK units select as objects grow (the SKNet paper's Figs. 3c and 4): "
        "DIR/attention.json, DIR/attention.html and a table."))
    p.add_argument("study", nargs="?", help="a study file: its trial (--trial), or its data for --spec/--checkpoint")
    p.add_argument("--trial", help="a trial number of the study, or 'best' (highest full-fidelity accuracy)")
    p.add_argument("--spec", help="a spec file, exported config or preset (with --checkpoint)")
    p.add_argument("--checkpoint", help="that spec's weights: a `sksearch train` checkpoint or a bare state dict")
    p.add_argument("--scales", default="1.0,1.5,2.0", help="object scales (default 1.0,1.5,2.0)")
    p.add_argument("--out", help="output folder (default: <study output>/attention/trial-N, or beside the checkpoint)")
    p.add_argument("--storage", help="Optuna storage URL (overrides SKSEARCH_STORAGE and the study's storage)")
    p.add_argument("--images", type=int, help="analyse at most this many validation images (default: all)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--force", action="store_true", help="overwrite an existing DIR/attention.json / .html")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from sksearch.results.attention import run_attention

    args = build_parser().parse_args(argv)
    if args.images is not None and args.images < 1:
        raise UserError("--images must be >= 1")
    run_attention(study_file=args.study, trial=args.trial, spec_file=args.spec, checkpoint=args.checkpoint,
                  scales=args.scales, out=Path(args.out) if args.out else None, storage=args.storage,
                  images=args.images, device=args.device, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
