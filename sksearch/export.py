"""`sksearch export STUDY.yaml [--trial best|N] [--target imagenet] [--depth 26|50|101] [--max-macs X]
[--max-params X] [--set KEY=VALUE ...] [--storage URL] --out FILE.yaml [--weights] [--force]`

The chosen trial's SK block (M, G, r, L, every path's kernel, dilation, groups and ReLU, attention) on the
full-size ImageNet ResNeXt layout of SKNet-26/50/101 (1000 classes, 224x224), with the paper's ImageNet
training recipe and where it came from. `sksearch train FILE.yaml` (under torchrun) runs it;
`sksearch inspect FILE.yaml` counts it.

--weights also writes the trial's kept weights (a state dict of the study trial's own network, the spec in
provenance.weights.spec; torch.load(..., weights_only=True)) to FILE.pt beside FILE.yaml.

`best` is the most accurate trial on the full-fidelity front; --max-macs / --max-params restrict it by the
MACs / params the study measured for the trial (the numbers on the report's axes), not by the exported model's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sksearch.config import load_study, parse_count
from sksearch.errors import UserError, cli_entry
from sksearch.results.export import TARGET_PRESETS, export_study, launch_command, weights_path


def _count_arg(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        return int(parse_count(text))
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}") from None


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sksearch export", description=__doc__.splitlines()[0])
    p.add_argument("study", help="a study file, e.g. studies/quickstart.yaml")
    p.add_argument("--trial", default="best", help="'best' (default) or a trial number")
    p.add_argument("--target", default="imagenet", choices=["imagenet"], help="the backbone family to export to")
    p.add_argument("--depth", type=int, default=50, choices=sorted(TARGET_PRESETS), help="SKNet depth (default 50)")
    p.add_argument("--max-macs", help="best only: the trial's measured MACs at most this (300M, 1.5G, ...)")
    p.add_argument("--max-params", help="best only: the trial's measured params at most this")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the exported spec (dotted, YAML value), e.g. --set sk.G=32")
    p.add_argument("--storage", help="Optuna storage URL (overrides SKSEARCH_STORAGE and the study's storage)")
    p.add_argument("--out", required=True, help="the training config to write (YAML)")
    p.add_argument("--weights", action="store_true",
                   help="also write the trial's kept weights (its own network's state dict) to FILE.pt beside --out")
    p.add_argument("--force", action="store_true", help="replace --out (and with --weights FILE.pt) if it exists")
    args = p.parse_args(argv)

    out = Path(args.out)
    doc = export_study(load_study(args.study), out, force=args.force, weights=args.weights, trial=args.trial,
                       depth=args.depth,
                       max_macs=_count_arg(args.max_macs, "--max-macs"),
                       max_params=_count_arg(args.max_params, "--max-params"),
                       overrides=args.overrides, storage_url=args.storage)
    prov = doc["provenance"]
    src, tgt = prov["source"], prov["target"]
    print(f"trial {prov['trial']}: {src['label']}  accuracy {src['accuracy']:.2%} on {prov['dataset']}, "
          f"{src['params']:,} params, {src['macs']:,} MACs"
          + (f", {src['latency_ms']:.3g} ms" if src.get("latency_ms") is not None else ""))
    print(f"exported to {tgt['layout']}: {tgt['params']:,} params, {tgt['macs']:,} MACs -> {out}")
    if "weights" in prov:
        print(f"weights of trial {prov['trial']} ({src['label']}, its own {src['input_size'][1]}px network; "
              f"the spec in provenance.weights.spec) -> {weights_path(out)}")
    print(f"launch: {launch_command(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
