"""`sksearch train CONFIG.yaml --data DIR [--out DIR] [--resume | --force] [--init-from CHECKPOINT]
[--epochs N] [--batch-size N] [--workers N] [--classes-file F] [--resolution N]`: a full training run of one
spec, data-parallel under torchrun.

    torchrun --nproc_per_node=8 -m sksearch.train sknet.yaml --data /data/imagenet

CONFIG is what `sksearch export` writes ({spec, recipe, provenance}); a bare spec file or a preset name gets
the default recipe (the paper's ImageNet one). DIR holds train/<wnid>/*.JPEG and val/<wnid>/*.JPEG.
<out>/checkpoint.pt after every epoch, <out>/summary.json at the end (also printed). The run itself:
sksearch.training.ddp.
"""
from __future__ import annotations

import argparse
import sys

from sksearch.errors import cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sksearch train", description=__doc__.splitlines()[0])
    p.add_argument("config", help="a config from `sksearch export`, a spec YAML or a preset name")
    p.add_argument("--data", required=True, help="folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")
    p.add_argument("--out", help="checkpoints and summary.json (default runs/train/<config name>)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its checkpoint.pt (same spec and --batch-size)")
    again.add_argument("--force", action="store_true", help="start over in an --out that already holds a run")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="fine-tune: initial model weights from a checkpoint or state dict of the same spec")
    p.add_argument("--epochs", type=int, help="override recipe.epochs")
    p.add_argument("--batch-size", type=int, help="override recipe.batch_size (global; lr scales with it)")
    p.add_argument("--workers", type=int, help="override recipe.workers (per process)")
    p.add_argument("--classes-file", help="one wnid a line: train on these classes only, in this order")
    p.add_argument("--resolution", type=int, help="override recipe.resolution (training crop)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from sksearch.training.ddp import train

    a = build_parser().parse_args(argv)
    train(a.config, a.data, out=a.out, resume=a.resume, force=a.force, init_from=a.init_from, epochs=a.epochs,
          batch_size=a.batch_size, workers=a.workers, classes_file=a.classes_file, resolution=a.resolution)
    return 0


if __name__ == "__main__":
    sys.exit(main())
