"""`sksearch export STUDY.yaml [--trial best|N] [--target imagenet] [--depth 26|50|101] [--max-macs X]
[--max-params X] [--set KEY=VALUE ...] [--storage URL] --out FILE.yaml`

The chosen trial's SK block (M, G, r, L, every path's kernel, dilation, groups and ReLU, attention) on the
full-size ImageNet ResNeXt layout of SKNet-26/50/101 (1000 classes, 224x224), with the paper's ImageNet
training recipe and where it came from. `sksearch train FILE.yaml` (under torchrun) runs it;
`sksearch inspect FILE.yaml` counts it.

`best` is the most accurate trial on the full-fidelity front; --max-macs / --max-params restrict it by the
MACs / params the study measured for the trial (the numbers on the report's axes), not by the exported model's.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

import sksearch
from sksearch.complexity import count
from sksearch.config import StudyConfig, load_study, parse_count, redact_url
from sksearch.errors import UserError, cli_entry
from sksearch.presets import preset_dict
from sksearch.results.pareto import front_trials, trial_status
from sksearch.spec import ArchSpec
from sksearch.yamlio import apply_overrides, dump_yaml
from sksearch.storage.open import open_study
from sksearch.training.recipe import Recipe

TARGET_PRESETS = {26: "sknet26", 50: "sknet50", 101: "sknet101"}


def _count_arg(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        return int(parse_count(text))
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}") from None


def pick_trial(study_trials: list[FrozenTrial], front: list[FrozenTrial], which: str,
               max_macs: int | None = None, max_params: int | None = None) -> FrozenTrial:
    """`best` (most accurate on the front within the limits) or trial number N, which must be a usable
    full-fidelity trial."""
    if which == "best":
        pool = [t for t in front
                if (max_macs is None or t.user_attrs.get("macs", math.inf) <= max_macs)
                and (max_params is None or t.user_attrs.get("params", math.inf) <= max_params)]
        if not pool:
            if not front:
                raise UserError("the study has no full-fidelity trial yet (none trained for the full budget)")
            cheapest = min(front, key=lambda t: t.user_attrs.get("macs", math.inf))
            raise UserError(f"no front trial within the limits; the cheapest front trial is #{cheapest.number} with "
                            f"{cheapest.user_attrs.get('macs')} MACs and {cheapest.user_attrs.get('params')} params")
        return max(pool, key=lambda t: (_accuracy(t), -t.user_attrs.get("macs", 0)))
    try:
        number = int(which)
    except ValueError:
        raise UserError(f"--trial expects 'best' or a trial number, got {which!r}") from None
    trial = next((t for t in study_trials if t.number == number), None)
    if trial is None:
        raise UserError(f"--trial {number}: no such trial (the study has trials 0 to {len(study_trials) - 1})")
    status = trial_status(trial)
    a = trial.user_attrs
    fronts = ", ".join(f"#{t.number}" for t in front) or "none yet"
    why = {
        "pruned": f"was pruned after {a.get('epochs_done', '?')} of {a.get('max_epochs', '?')} epochs "
                  f"(accuracy {a.get('accuracy', '?')} then): it was never trained for the full budget",
        "infeasible": f"is infeasible and was never trained: {a.get('infeasible', 'it violates a constraint')}",
        "failed": ("was interrupted (its driver died)" if a.get("interrupted")
                   else f"failed: {a.get('error', 'no error recorded')}"),
        "partial": "is COMPLETE but not full fidelity (not trained for the full budget)",
        "running": f"is still {trial.state.name.lower()}",
    }.get(status)
    if why:
        raise UserError(f"--trial {number} {why}; front trials: {fronts}")
    if "spec" not in a:
        raise UserError(f"--trial {number} has no recorded spec")
    return trial


def _accuracy(t: FrozenTrial) -> float:
    acc = t.user_attrs.get("accuracy")
    return float(acc if acc is not None else t.values[0])


def nearest_divisor(g: int, widths: list[int]) -> list[int]:
    """The group counts that divide every width, nearest to g (two on a tie)."""
    common = math.gcd(*widths)
    divisors = [d for d in range(1, common + 1) if common % d == 0]
    best = min(abs(d - g) for d in divisors)
    return [d for d in divisors if abs(d - g) == best]


def check_transfer(sk: dict[str, Any], widths: list[int], depth: int) -> None:
    """Every group count of the SK block must divide every target width; else a UserError with a suggestion."""
    checks = [("sk.G", sk.get("G", 32))]
    checks += [(f"sk.branches[{i}].groups", b["groups"]) for i, b in enumerate(sk.get("branches", []))
               if b.get("groups") is not None]
    for key, g in checks:
        if g == "depthwise":
            continue
        bad = [w for w in widths if w % int(g)]
        if bad:
            near = " or ".join(map(str, nearest_divisor(int(g), widths)))
            set_key = key.replace("[", ".").replace("]", "")
            raise UserError(
                f"{g} groups do not divide the SKNet-{depth} width {bad[0]} (widths {widths}); the nearest group "
                f"count that divides all of them is {near}: export another trial, or keep this one with "
                f"--set {set_key}={near.split(' ')[0]}", key=key)


def target_spec(source: ArchSpec, depth: int, overrides: list[str]) -> ArchSpec:
    data = preset_dict(TARGET_PRESETS[depth])
    data["sk"] = source.sk.model_dump(mode="json", exclude_none=True)
    if overrides:
        data = apply_overrides(data, overrides)
    check_transfer(data["sk"], data["widths"], depth)
    return ArchSpec.from_dict(data, prefix="spec")


def build_export(cfg: StudyConfig, *, trial: str = "best", depth: int = 50, max_macs: int | None = None,
                 max_params: int | None = None, overrides: list[str] | None = None,
                 storage_url: str | None = None) -> dict[str, Any]:
    """The exported document: {spec, recipe, provenance}."""
    if depth not in TARGET_PRESETS:
        raise UserError(f"--depth must be one of {sorted(TARGET_PRESETS)}, got {depth}")
    if trial != "best" and (max_macs or max_params):
        raise UserError("--max-macs / --max-params choose among front trials: use them with --trial best")
    study, url = open_study(cfg, storage_url)
    trials = study.get_trials(deepcopy=False)
    chosen = pick_trial(trials, front_trials(study, trials), trial, max_macs, max_params)
    source = ArchSpec.from_dict(chosen.user_attrs["spec"], prefix=f"trial {chosen.number} spec")
    spec = target_spec(source, depth, overrides or [])
    c = count(spec)
    a = chosen.user_attrs
    provenance = {
        "study": cfg.name,
        "study_file": cfg.source,
        "trial": chosen.number,
        "storage": redact_url(url),
        "dataset": cfg.dataset.name,
        "exported": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "sksearch": sksearch.__version__,
        "overrides": list(overrides or []),
        "source": {"label": a.get("label"), "accuracy": _accuracy(chosen), "params": a.get("params"),
                   "macs": a.get("macs"), "select_macs": a.get("select_macs"), "epochs": a.get("epochs_done"),
                   "backbone": source.backbone, "input_size": source.input_size},
        "target": {"layout": f"SKNet-{depth} (preset {TARGET_PRESETS[depth]})", "params": c.params, "macs": c.macs,
                   "select_macs": c.select_macs, "input_size": spec.input_size},
    }
    return {"spec": spec.to_dict(), "recipe": Recipe().model_dump(mode="json"), "provenance": provenance}


HEADER = """\
# sksearch export: a study trial's SK settings on a full-size ImageNet backbone, with a training recipe.
# recipe.lr is per 256 images: `sksearch train` scales it linearly with the global batch
# (lr = recipe.lr x batch_size / 256; Goyal et al. 2017). Launch with the command printed by export.
"""


def launch_command(out: str | Path) -> str:
    return f"torchrun --nproc_per_node=8 -m sksearch.train {out} --data /path/to/imagenet"


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
    args = p.parse_args(argv)

    doc = build_export(load_study(args.study), trial=args.trial, depth=args.depth,
                       max_macs=_count_arg(args.max_macs, "--max-macs"),
                       max_params=_count_arg(args.max_params, "--max-params"),
                       overrides=args.overrides, storage_url=args.storage)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(HEADER + dump_yaml(doc))
    prov = doc["provenance"]
    src, tgt = prov["source"], prov["target"]
    print(f"trial {prov['trial']}: {src['label']}  accuracy {src['accuracy']:.2%} on {prov['dataset']}, "
          f"{src['params']:,} params, {src['macs']:,} MACs")
    print(f"exported to {tgt['layout']}: {tgt['params']:,} params, {tgt['macs']:,} MACs -> {out}")
    print(f"launch: {launch_command(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
