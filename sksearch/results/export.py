"""The exporter as a library: a study trial's SK block (M, G, r, L, every path's kernel, dilation, groups and
ReLU, attention) on the full-size ImageNet ResNeXt layout of SKNet-26/50/101 (1000 classes, 224x224), with the
paper's ImageNet training recipe and where it came from (`sksearch export` is its command).

`best` is the most accurate trial on the full-fidelity front; max_macs / max_params restrict it by the MACs /
params the study measured for the trial (the numbers on the report's axes), not by the exported model's.
"""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import sksearch
from sksearch.complexity import count
from sksearch.config import StudyConfig
from sksearch.errors import UserError
from sksearch.presets import preset_dict
from sksearch.results.pareto import front_trials
from sksearch.results.picking import pick_trial
from sksearch.spec import ArchSpec
from sksearch.yamlio import apply_overrides, dump_yaml
from sksearch.storage import records
from sksearch.storage.open import metric_names, open_study, redact_url
from sksearch.training.recipe import Recipe

TARGET_PRESETS = {26: "sknet26", 50: "sknet50", 101: "sknet101"}


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
               if isinstance(b, dict) and b.get("groups") is not None]
    for key, g in checks:
        if g == "depthwise":
            continue
        if isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise UserError(f"--set {key}: a group count is a positive integer or 'depthwise', got {g!r}", key=key)
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
    names = metric_names(study, cfg)
    trials = study.get_trials(deepcopy=False)
    front = front_trials(study, trials)
    chosen = pick_trial(trials, front, trial, names=names, max_macs=max_macs, max_params=max_params)
    if records.status(chosen) != "full":  # only a network trained for the full budget is worth a full run
        fronts = ", ".join(f"#{t.number}" for t in front) or "none yet"
        raise UserError(f"--trial {chosen.number}: {records.explain(chosen)}; front trials: {fronts}")
    if records.spec(chosen) is None:
        raise UserError(f"--trial {chosen.number} has no recorded spec")
    source = ArchSpec.from_dict(records.spec(chosen) or {}, prefix=f"trial {chosen.number} spec")
    spec = target_spec(source, depth, overrides or [])
    c = count(spec)
    row = records.front_row(chosen, names)
    provenance = {
        "study": cfg.name,
        "study_file": cfg.source,
        "trial": chosen.number,
        "storage": redact_url(url),
        "dataset": cfg.dataset.name,
        "exported": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "sksearch": sksearch.__version__,
        "overrides": list(overrides or []),
        "source": {"label": row["label"], "accuracy": row["accuracy"], "params": row["params"],
                   "macs": row["macs"], "select_macs": row["select_macs"], "epochs": row["epochs"],
                   "backbone": source.backbone, "input_size": source.input_size},
        "target": {"layout": f"SKNet-{depth} (preset {TARGET_PRESETS[depth]})", "params": c.params, "macs": c.macs,
                   "select_macs": c.select_macs, "input_size": spec.input_size},
    }
    if row["latency_ms"] is not None:  # predicted on the study's latency target (the source network, not the export)
        provenance["source"]["latency_ms"] = row["latency_ms"]
        provenance["source"]["latency_target"] = chosen.user_attrs.get(records.Key.LATENCY_TARGET)
    return {"spec": spec.to_dict(), "recipe": Recipe().model_dump(mode="json"), "provenance": provenance}


HEADER = """\
# sksearch export: a study trial's SK settings on a full-size ImageNet backbone, with a training recipe.
# recipe.lr is per 256 images: `sksearch train` scales it linearly with the global batch
# (lr = recipe.lr x batch_size / 256; Goyal et al. 2017). Launch with the command printed by export.
"""


def launch_command(out: str | Path) -> str:
    return f"torchrun --nproc_per_node=8 -m sksearch.train {out} --data /path/to/imagenet"


def write_export(doc: dict[str, Any], out: str | Path, *, force: bool = False) -> Path:
    """Write the exported document; an existing file is replaced only when told (--force): it may be the
    study file itself, or a training config with edits."""
    out = Path(out)
    if out.exists() and not force:
        raise UserError(f"{out} exists; choose another --out, or pass --force to replace it", key="--out")
    if out.exists() and out.is_dir():
        raise UserError(f"{out} is a folder; --out names the YAML file to write", key="--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(HEADER + dump_yaml(doc))
    return out


def weights_path(out: str | Path) -> Path:
    """Where --weights writes the trial's state dict: FILE.pt beside FILE.yaml."""
    return Path(out).with_suffix(".pt")


def export_study(cfg: StudyConfig, out: str | Path, *, force: bool = False, weights: bool = False,
                 **options: Any) -> dict[str, Any]:
    """build_export, then write it to `out` (and with `weights` the trial's kept weights beside it, see
    weights_path); returns the document."""
    pt = weights_path(out) if weights else None
    if pt is not None and pt == Path(out):
        raise UserError(f"--out {out} ends in .pt, the name --weights writes: name the YAML file", key="--out")
    if Path(out).exists() and not force:  # before any work: refuse early, write nothing
        write_export({}, out, force=False)
    if pt is not None and pt.exists() and not force:
        raise UserError(f"{pt} exists; choose another --out, or pass --force to replace it", key="--weights")
    doc = build_export(cfg, **options)
    if pt is not None:
        _write_weights(cfg, doc, pt, options.get("storage_url"))
    write_export(doc, out, force=force)
    return doc


def _write_weights(cfg: StudyConfig, doc: dict[str, Any], pt: Path, storage_url: str | None) -> None:
    """The trial's kept state dict to `pt`; provenance.weights names the spec it fits: the study trial's
    own network, not the exported layout (which trains from scratch, or fine-tunes after a transfer)."""
    study, _ = open_study(cfg, storage_url)
    number = doc["provenance"]["trial"]
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    artifact = records.require_weights(study, trial, key="--weights")
    records.download_weights(cfg, artifact, pt, replace=True)
    doc["provenance"]["weights"] = {"file": pt.name, "artifact": artifact, "spec": records.spec(trial)}
