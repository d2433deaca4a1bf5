"""`sksearch inspect PRESET_OR_SPEC.yaml [--set key=value ...] [--json]`: complexity without training."""
from __future__ import annotations

import argparse
import json
import sys

from sksearch.complexity import count
from sksearch.errors import cli_entry
from sksearch.spec import load_spec
from sksearch.units import format_count


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sksearch inspect", description=__doc__)
    parser.add_argument("spec", help="a preset name (e.g. sknet50) or an ArchSpec YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec key (dotted, YAML value), e.g. --set sk.r=8")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    spec = load_spec(args.spec, args.overrides)
    c = count(spec)
    if args.json:
        out = {"spec": spec.to_dict(), "label": spec.label(), **c.to_dict()}
        print(json.dumps(out))
        return 0
    print(spec.label())
    print(f"{'part':<8} {'output':>16} {'params':>12} {'MACs':>12}")
    for p in c.parts:
        shape = "x".join(map(str, p.output_shape))
        print(f"{p.name:<8} {shape:>16} {format_count(p.params):>12} {format_count(p.macs):>12}")
    print(f"{'total':<8} {'':>16} {format_count(c.params):>12} {format_count(c.macs):>12}")
    print(f"params {c.params:,}  MACs {c.macs:,}  (+ {c.select_macs:,} attention products, not in MACs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
