"""`sksearch <command> ...`: the console script; each command is also `python -m sksearch.<command>`."""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": "run or resume a study",
    "inspect": "params, MACs and a per-stage table of a preset or spec",
    "report": "Pareto front and hypervolume plots of a study (HTML)",
    "export": "a study's trial on a full-size ImageNet backbone, with a training recipe",
    "train": "a full training run of one spec (torchrun, DDP)",
    "dashboard": "optuna-dashboard on a study's storage",
    "attention": "what a trained model's SK units select as objects grow (the paper's Figs. 3c, 4)",
    "schema": "JSON Schema of study or space files (for editors)",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
        print("usage: sksearch COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines), file=sys.stderr if argv else sys.stdout)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(f"sksearch.{argv[0]}")
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
