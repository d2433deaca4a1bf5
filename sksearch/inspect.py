"""`sksearch inspect PRESET_OR_SPEC.yaml [--set key=value ...] [--json] [--latency [--batch N ...]]`: complexity
without training, and with --latency the predicted inference time per part on this machine."""
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
    timing = parser.add_argument_group("latency (the study file's `latency:` keys)")
    timing.add_argument("--latency", action="store_true",
                        help="time each unit on this machine (memoised) and the whole network once")
    timing.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    timing.add_argument("--batch", type=int, default=1)
    timing.add_argument("--threads", type=int, default=1)
    timing.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    timing.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)

    spec = load_spec(args.spec, args.overrides)
    c = count(spec)
    lat = _latency(spec, args) if args.latency else None
    if args.json:
        out = {"spec": spec.to_dict(), "label": spec.label(), **c.to_dict()}
        if lat is not None:
            out["latency"] = lat
        print(json.dumps(out))
        return 0
    if lat is not None:
        return _print_latency(spec, c, lat)
    print(spec.label())
    print(f"{'part':<8} {'output':>16} {'params':>12} {'MACs':>12}")
    for p in c.parts:
        shape = "x".join(map(str, p.output_shape))
        print(f"{p.name:<8} {shape:>16} {format_count(p.params):>12} {format_count(p.macs):>12}")
    print(f"{'total':<8} {'':>16} {format_count(c.params):>12} {format_count(c.macs):>12}")
    print(f"params {c.params:,}  MACs {c.macs:,}  (+ {c.select_macs:,} attention products, not in MACs)")
    return 0


def _latency(spec, args: argparse.Namespace) -> dict:
    """Per-part predicted milliseconds (the table's) and the whole network timed once, on this machine."""
    from pydantic import ValidationError

    from sksearch.config import LatencyConfig, require_latency_device
    from sksearch.errors import UserError, from_validation_error
    from sksearch.latency import table_for

    try:
        config = LatencyConfig(device=args.device, batch=args.batch, threads=args.threads,
                               precision=args.precision, channels_last=args.channels_last)
    except ValidationError as exc:
        err = from_validation_error(exc)
        raise UserError(err.detail, key=f"--{err.key}") from None
    require_latency_device(config, key="--device")
    table = table_for(config)
    # the plain sum: a study's scale is fitted on its own space's networks and says little about this one
    predicted = table.unit_sum(spec)
    whole = table.measure_network(spec)
    return {"target": table.target.to_dict(), "ms": predicted.ms, "spread": predicted.spread,
            "parts": [{"name": p.name, "ms": p.ms, "spread": p.spread} for p in predicted.parts],
            "measured_ms": whole.ms, "measured_spread": whole.spread, "table": str(table.path)}


def _print_latency(spec, c, lat: dict) -> int:
    print(spec.label())
    t = lat["target"]
    print(f"latency on {t['device']} ({t['hardware']}), batch {t['batch']}, {t['threads']} thread(s), "
          f"{t['precision']}{', channels_last' if t['channels_last'] else ''}: median ms (spread = IQR)")
    print(f"{'part':<8} {'MACs':>10} {'ms':>10} {'spread':>8} {'share':>6}")
    for p, part in zip(c.parts, lat["parts"]):
        share = part["ms"] / lat["ms"] if lat["ms"] else 0.0
        print(f"{p.name:<8} {format_count(p.macs):>10} {part['ms']:>10.3f} {part['spread']:>8.3f} {share:>6.0%}")
    print(f"{'total':<8} {format_count(c.macs):>10} {lat['ms']:>10.3f} {lat['spread']:>8.3f}  (sum of the parts, each "
          f"timed alone)")
    error = lat["ms"] / lat["measured_ms"] - 1 if lat["measured_ms"] else 0.0
    print(f"whole network timed once: {lat['measured_ms']:.3f} ms (spread {lat['measured_spread']:.3f}); "
          f"the sum is {error:+.0%} off")
    print(f"unit table: {lat['table']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
