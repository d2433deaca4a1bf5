"""What the SK units select: attention per path against object size (the SKNet paper, Section 4.4, Figs. 3, 4).

The validation images go through a trained model at each object scale; a forward hook on every SK unit's
`select` layer reads its logits (B, M*C, 1, 1), and a softmax over the M paths per channel gives the
attention exactly as SKConv computes it (the two-path forward takes a sigmoid shortcut to the same
numbers), so the model's forward is left as it is.

Object scale k, as in the paper: a central crop of 1/k of the image resized back to the input size (1.0 is
the image itself). On the synthetic set also `generated`: the same scenes drawn with k-times-larger
objects (sksearch.data.synthetic), which changes the object's size and nothing else.

Per unit and scale: the mean over images of each path's attention averaged over channels, its standard
deviation over images, and the difference between the path with the largest receptive field and the
smallest (per image, then mean and sd); per class, that difference at every scale.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sksearch.errors import UserError
from sksearch.storage import records
from sksearch.models.layers import SKConv
from sksearch.results.picking import best_with_attention, has_attention, pick_trial
from sksearch.spec import ArchSpec

DEFAULT_SCALES = (1.0, 1.5, 2.0)
CLASS_SCALES = (1.0, 1.5)  # the paper's Fig. 4


def receptive_field(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) + 1


@dataclass
class Unit:
    """One SK unit with attention, named by stage and 1-based position (stage2.1 = the paper's SK_3_1 here)."""

    name: str
    module_path: str
    module: SKConv
    paths: list[str]
    receptive_fields: list[int]

    @property
    def large(self) -> int:
        return max(range(len(self.paths)), key=lambda i: self.receptive_fields[i])

    @property
    def small(self) -> int:
        return min(range(len(self.paths)), key=lambda i: self.receptive_fields[i])


def sk_units(model: nn.Module, spec: ArchSpec) -> list[Unit]:
    """The SK units of `model` that have attention, in forward order."""
    names = [b.name for b in spec.sk.branches]
    rfs = [receptive_field(b.kernel, b.dilation) for b in spec.sk.branches]
    units, per_stage = [], {}
    for path, m in model.named_modules():
        if isinstance(m, SKConv) and m.use_attention:
            parts = path.split(".")
            stage = next((p for p in parts if p.startswith("stage")), "unit")
            per_stage[stage] = per_stage.get(stage, 0) + 1
            units.append(Unit(f"{stage}.{per_stage[stage]}", path, m, list(names), list(rfs)))
    return units


@contextlib.contextmanager
def record_attention(units: Sequence[Unit]) -> Iterator[dict[str, list[Tensor]]]:
    """Within the block, every forward appends each unit's attention, (B, M, C) float32 on the CPU, to
    the yielded {unit name: [tensors]}."""
    seen: dict[str, list[Tensor]] = {u.name: [] for u in units}

    def hook_for(unit: Unit):
        def hook(_mod: nn.Module, _inp: Any, logits: Tensor) -> None:
            b = logits.shape[0]
            seen[unit.name].append(logits.detach().float().view(b, unit.module.M, unit.module.channels)
                                   .softmax(dim=1).cpu())
        return hook

    handles = [u.module.select.register_forward_hook(hook_for(u)) for u in units]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def crop_resize(x: Tensor, scale: float) -> Tensor:
    """The object enlarged k times: the central 1/k of the image resized back to its size (bilinear)."""
    if scale == 1.0:
        return x
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h / scale)), max(1, round(w / scale))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top:top + ch, left:left + cw]
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)


@dataclass
class ScaleResult:
    """Everything measured at one scale: per unit the per-image channel means (N, M), and the predictions."""

    per_image: dict[str, Tensor]
    labels: Tensor
    correct: int
    total: int


def measure(model: nn.Module, units: Sequence[Unit], batches: Iterable[tuple[Tensor, Tensor]],
            device: torch.device, transform=None, limit: int | None = None) -> ScaleResult:
    """Run `batches` (optionally transformed, at most `limit` images) and collect each unit's attention."""
    model.eval()
    labels, correct, total = [], 0, 0
    with torch.inference_mode(), record_attention(units) as seen:
        for x, y in batches:
            if limit is not None and total >= limit:
                break
            if limit is not None:
                x, y = x[:limit - total], y[:limit - total]
            x = x.to(device)
            if transform is not None:
                x = transform(x)
            logits = model(x)
            correct += int((logits.argmax(1).cpu() == y.cpu()).sum())
            total += y.shape[0]
            labels.append(y.cpu())
    if total == 0:
        raise UserError("no validation images to analyse")
    per_image = {name: torch.cat(chunks).mean(dim=2).double() for name, chunks in seen.items()}  # (N, M)
    return ScaleResult(per_image, torch.cat(labels), correct, total)


def _r(v: float) -> float:
    return round(float(v), 6)


def summarise(units: Sequence[Unit], scales: Sequence[float], results: Sequence[ScaleResult],
              class_names: Sequence[str]) -> dict[str, Any]:
    """The JSON-ready summary of one variant (crop or generated) over its scales."""
    out_units = []
    for u in units:
        mean, sd, dmean, dsd = [], [], [], []
        for r in results:
            a = r.per_image[u.name]
            mean.append([_r(v) for v in a.mean(0)])
            sd.append([_r(v) for v in a.std(0, unbiased=False)])
            d = a[:, u.large] - a[:, u.small]
            dmean.append(_r(d.mean()))
            dsd.append(_r(d.std(unbiased=False)))
        out_units.append({"name": u.name, "module": u.module_path, "paths": u.paths,
                          "receptive_fields": u.receptive_fields, "large": u.paths[u.large],
                          "small": u.paths[u.small], "mean": mean, "sd": sd, "diff": dmean, "diff_sd": dsd})
    n_classes = len(class_names)
    classes = {"names": list(class_names), "scales": list(scales), "units": []}
    for u in units:
        rows = []
        for r in results:
            a = r.per_image[u.name]
            d = a[:, u.large] - a[:, u.small]
            s = torch.zeros(n_classes, dtype=torch.float64).index_add_(0, r.labels, d)
            n = torch.bincount(r.labels, minlength=n_classes).double()
            rows.append([_r(v) if c > 0 else None for v, c in zip((s / n.clamp(min=1)).tolist(), n.tolist())])
        classes["units"].append({"name": u.name, "diff": rows})
    return {"scales": list(scales), "images": results[0].total if results else 0,
            "accuracy": [_r(r.correct / r.total) for r in results], "units": out_units, "classes": classes}


@dataclass
class Source:
    """Where the model and data came from, for the JSON and the page."""

    trial: int | None
    label: str
    study: str | None = None
    checkpoint: str | None = None
    dataset: str = "synthetic"
    extra: dict[str, Any] = field(default_factory=dict)


def analyse(model: nn.Module, spec: ArchSpec, val: Iterable[tuple[Tensor, Tensor]], *, scales: Sequence[float],
            class_names: Sequence[str], device: torch.device, source: Source,
            generated: dict[float, Iterable[tuple[Tensor, Tensor]]] | None = None,
            limit: int | None = None) -> dict[str, Any]:
    """The attention summary of a trained model: `val` at each crop-resize scale, and, when given, the
    generated k-times-larger validation sets ({scale: batches}, 1.0 included)."""
    if not has_attention(spec):
        raise UserError(f"{spec.sk.label()} has no attention to analyse (needs M >= 2 and attention: softmax)")
    units = sk_units(model, spec)
    model.to(device)
    crop = [measure(model, units, val, device, (lambda x, k=k: crop_resize(x, k)), limit) for k in scales]
    result: dict[str, Any] = {"trial": source.trial, "label": source.label, "study": source.study,
                              "checkpoint": source.checkpoint, "dataset": source.dataset,
                              "method": "central crop resized to the input size", **source.extra}
    result.update(summarise(units, scales, crop, class_names))
    result["generated"] = None
    if generated:
        gscales = sorted(generated)
        gen = [measure(model, units, generated[k], device, None, limit) for k in gscales]
        result["generated"] = {"method": "the same scenes generated with k-times-larger objects",
                               **summarise(units, gscales, gen, class_names)}
    return result


def parse_scales(text: str) -> list[float]:
    """'1.0,1.5,2.0' -> [1.0, 1.5, 2.0]; each >= 1 (a crop cannot shrink the object), sorted, 1.0 first."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--scales: expected comma-separated numbers such as 1.0,1.5,2.0 (got {text!r})") from None
    if not values or any(not math.isfinite(v) or v < 1.0 for v in values):
        raise UserError(f"--scales: every scale must be a number >= 1.0 (got {text!r})")
    return sorted(set(values) | {1.0})


def console_table(result: dict[str, Any]) -> str:
    """Per unit: attention on the largest-receptive-field path at each scale, and large minus small."""
    lines = []
    for variant, r in (("crop-resize", result), ("generated", result.get("generated"))):
        if not r:
            continue
        scales = r["scales"]
        head = "  ".join(f"{k:>5.2g}x" for k in scales)
        lines.append(f"{variant}: attention on the largest path (mean over images), then large - small")
        lines.append(f"  {'unit':<10} {'paths':<14} {head}   |  {head}")
        for u in r["units"]:
            big = u["paths"].index(u["large"])
            a = "  ".join(f"{row[big]:6.3f}" for row in u["mean"])
            d = "  ".join(f"{v:+6.3f}" for v in u["diff"])
            lines.append(f"  {u['name']:<10} {'+'.join(u['paths']):<14} {a}   |  {d}")
        lines.append("  accuracy   " + " " * 14 + "  ".join(f"{v:6.1%}" for v in r["accuracy"]))
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], out: Path, *, force: bool) -> tuple[Path, Path]:
    """DIR/attention.json and DIR/attention.html; an existing one is kept unless force."""
    import json

    from sksearch.results.attention_figures import attention_page

    out = Path(out)
    paths = (out / "attention.json", out / "attention.html")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise UserError(f"{existing[0]} exists; pass --force to overwrite it or --out to write elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(json.dumps(result, indent=1) + "\n")
    paths[1].write_text(attention_page(result))
    return paths


# -- where the model comes from --------------------------------------------------------------------------------

def trial_weights(study: Any, trial: Any, cfg: Any) -> Path | None:
    """The kept weights (a state dict file) of a study's trial, or None when it kept none: its Optuna
    artifact (storage.records), copied out of the study's artifact store once."""
    artifact = records.weights_artifact(study, trial)
    return None if artifact is None else records.cached_weights(cfg, artifact)


def _suggest(study: Any, cfg: Any, *, need_weights: bool) -> str:
    """' (trial K has them: sksearch attention ...)' for the best trial with attention (and weights)."""
    best = best_with_attention(study, need_weights=need_weights)
    what = "attention and kept weights" if need_weights else "attention"
    if best is None:
        return f"; no full-fidelity trial of study {cfg.name!r} has {what}"
    return f"; trial {best.number} has {what}: sksearch attention {cfg.source} --trial {best.number}"


def load_weights(model: nn.Module, path: Path) -> None:
    """A `sksearch train` / save_checkpoint file ({"model": state dict, ...}) or a bare state dict."""
    from sksearch.training.common import load_model_weights

    load_model_weights(path, model, what="--checkpoint")


def check_writable(out: Path, force: bool) -> None:
    existing = [p for p in (out / "attention.json", out / "attention.html") if p.exists()]
    if existing and not force:
        raise UserError(f"{existing[0]} exists; pass --force to overwrite it or --out to write elsewhere")


def run_attention(*, study_file: str | None, trial: str | None, spec_file: str | None, checkpoint: str | None,
                  scales: str | Sequence[float] = DEFAULT_SCALES, out: Path | None = None,
                  storage: str | None = None, images: int | None = None, device: str | None = None,
                  force: bool = False, quiet: bool = False, dataset: Any = None) -> dict[str, Any]:
    """The command: resolve model and data, analyse, write DIR/attention.{json,html}, print the table.
    `dataset` (a DatasetConfig; library use) replaces the default data of the --spec/--checkpoint path."""
    from sksearch.config import DatasetConfig, load_study
    from sksearch.data import make_data
    from sksearch.data.synthetic import CLASS_NAMES
    from sksearch.models import build_model
    from sksearch.training.loop import pick_device

    scale_list = parse_scales(scales) if isinstance(scales, str) else sorted(set(scales) | {1.0})
    if (spec_file is None) != (checkpoint is None):
        raise UserError("--spec and --checkpoint go together (a spec and its weights)")
    if spec_file is None and (study_file is None or trial is None):
        raise UserError("give STUDY.yaml --trial N|best, or --spec FILE --checkpoint FILE")
    if spec_file is not None and trial is not None:
        raise UserError("--trial picks a study's trial; with --spec/--checkpoint leave it out")
    cfg = load_study(study_file) if study_file else None
    dev = pick_device(device)

    if spec_file is None:
        from sksearch.storage.open import open_study

        study, _ = open_study(cfg, storage)
        from sksearch.results.pareto import front_trials
        from sksearch.storage.open import metric_names

        trials = study.get_trials(deepcopy=False)
        t = pick_trial(trials, front_trials(study, trials), trial, names=metric_names(study, cfg))
        spec = records.arch_spec(t)
        if spec is None:
            raise UserError(f"trial {t.number} has no recorded spec{_suggest(study, cfg, need_weights=False)}",
                            key="--trial")
        if not has_attention(spec):
            raise UserError(f"trial {t.number} ({spec.sk.label()}) has no attention{_suggest(study, cfg, need_weights=False)}",
                            key="--trial")
        weights = trial_weights(study, t, cfg)
        if weights is None:
            raise UserError(f"trial {t.number} kept no weights{_suggest(study, cfg, need_weights=True)}", key="--trial")
        out = out or cfg.out_dir() / "attention" / f"trial-{t.number}"
        source = Source(trial=t.number, label=spec.label(), study=cfg.name, checkpoint=str(weights),
                        dataset=cfg.dataset.name)
    else:
        from sksearch.training.ddp import load_config

        spec, _, _ = load_config(spec_file)
        if not has_attention(spec):
            raise UserError(f"{spec.sk.label()} has no attention to analyse (needs M >= 2 and attention: softmax)",
                            file=spec_file, key="sk")
        weights = Path(checkpoint)  # type: ignore[arg-type]
        out = out or weights.parent / "attention"
        source = Source(trial=None, label=spec.label(), study=cfg.name if cfg else None, checkpoint=str(weights),
                        dataset=cfg.dataset.name if cfg else (dataset.name if dataset else "synthetic"))
    check_writable(out, force)

    dataset = cfg.dataset if cfg else (dataset or DatasetConfig())
    num_classes, input_size = cfg.geometry() if cfg else dataset.geometry()
    if list(spec.input_size) != list(input_size) or spec.num_classes != num_classes:
        # Specs from presets or exports carry ImageNet geometry; the weights decide whether they fit.
        spec = spec.replace(num_classes=num_classes, input_size=list(input_size))
    model = build_model(spec, init=False)
    load_weights(model, weights)  # before the data: a checkpoint that does not fit fails fast
    data = make_data(dataset, batch_size=256, device=dev)
    generated = None
    if dataset.name == "synthetic":
        generated = {k: (data.val if k == 1.0 else
                         make_data(dataset, batch_size=256, device=dev, object_scale=k).val)
                     for k in scale_list}
    names = list(CLASS_NAMES) if dataset.name == "synthetic" else [str(i) for i in range(data.num_classes)]
    result = analyse(model, spec, data.val, scales=scale_list, class_names=names, device=dev, source=source,
                     generated=generated, limit=images)
    json_path, html_path = write_outputs(result, out, force=force)
    if not quiet:
        print(console_table(result))
        print(f"wrote {json_path} and {html_path}")
    return result


def attention_pointer(study: Any, cfg: Any) -> str | None:
    """The line a finished run ends with: `sksearch attention` for the best trial with attention (None when no
    fully trained trial has any). For search/tune.py's closing summary."""
    t = best_with_attention(study)
    if t is None:
        return None
    label = records.label(t) or records.arch_spec(t).sk.label()  # type: ignore[union-attr]
    return (f"look inside: sksearch attention {cfg.source or 'STUDY.yaml'} --trial {t.number}   "
            f"(what {label} selects as objects grow)")