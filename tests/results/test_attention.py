"""`sksearch attention`: SK attention per unit against object scale, on real (tiny) models and a real study."""
from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import torch

import sksearch.results.attention as attention
from sksearch.attention import main
from sksearch.config import DatasetConfig, TrainConfig
from sksearch.data import make_data
from sksearch.models import build_model
from sksearch.results.attention import Source, analyse, attention_pointer, crop_resize, record_attention, sk_units
from sksearch.results.attention_figures import attention_page, figures
from sksearch.spec import ArchSpec
from sksearch.storage.records import Key
from sksearch.training.loop import train_trial

SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "tiny_cifar.yaml"
K3, K5, K7 = {"kernel": 3}, {"kernel": 3, "dilation": 2}, {"kernel": 3, "dilation": 3}


def tiny_spec(branches: list[dict], attention_kind: str = "softmax") -> ArchSpec:
    return ArchSpec.from_dict({
        "backbone": "resnext_cifar", "depths": [1, 1, 1], "widths": [8, 16, 16], "out_channels": [16, 32, 32],
        "stem_channels": 8, "num_classes": 10, "input_size": [3, 32, 32],
        "sk": {"G": 4, "r": 4, "L": 8, "attention": attention_kind, "branches": branches}})


def write_study(root: Path, name: str = "att") -> Path:
    path = root / f"{name}.yaml"
    path.write_text(f"name: {name}\nsearch_space: {SPACE}\noutput_dir: {root / 'runs'}\n"
                    "dataset: {name: synthetic, train_size: 300, test_size: 20}\n"
                    "train: {epochs: 1, batch_size: 32, lr: 0.05, amp: false, channels_last: false}\n")
    return path


@pytest.fixture
def trained(tmp_path: Path, one_torch_thread: None) -> tuple[Path, Path, Path]:
    """(study file, spec file, checkpoint) of a 3-path network trained one epoch on 270 synthetic images."""
    study = write_study(tmp_path)
    spec = tiny_spec([K3, K5, K7])
    data = make_data(DatasetConfig(name="synthetic", train_size=300, test_size=20), batch_size=32,
                     device=torch.device("cpu"))
    result = train_trial(spec, data, TrainConfig(epochs=1, batch_size=32, lr=0.05, amp=False, channels_last=False))
    ckpt = tmp_path / "w.pt"
    torch.save(result.model.state_dict(), ckpt)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(json.dumps(spec.to_dict()))
    return study, spec_file, ckpt


def test_rows_sum_to_one_and_json_shape(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    study, spec_file, ckpt = trained
    out = tmp_path / "out"
    argv = [str(study), "--spec", str(spec_file), "--checkpoint", str(ckpt), "--scales", "1.5,2", "--out", str(out)]
    assert main(argv) == 0
    r = json.loads((out / "attention.json").read_text())
    assert r["trial"] is None and r["scales"] == [1.0, 1.5, 2.0] and r["images"] == 30
    assert [u["name"] for u in r["units"]] == ["stage1.1", "stage2.1", "stage3.1"]
    for u in r["units"]:
        assert u["paths"] == ["K3", "K5", "K7"] and u["large"] == "K7" and u["small"] == "K3"
        assert len(u["mean"]) == len(u["sd"]) == len(u["diff"]) == 3
        for row, sd, d in zip(u["mean"], u["sd"], u["diff"]):
            assert len(row) == 3 and math.isclose(sum(row), 1.0, abs_tol=1e-5)
            assert all(0 <= a <= 1 for a in row) and all(s >= 0 for s in sd)
            assert math.isclose(d, row[2] - row[0], abs_tol=1e-5)
    cls = r["classes"]
    assert len(cls["names"]) == 10 and cls["scales"] == [1.0, 1.5, 2.0]
    assert all(len(row) == 10 for u in cls["units"] for row in u["diff"])
    gen = r["generated"]  # synthetic data: the same scenes with larger objects too
    assert gen["scales"] == [1.0, 1.5, 2.0] and len(gen["units"]) == 3
    assert gen["units"][0]["mean"][0] == r["units"][0]["mean"][0]  # 1.0x is the same images either way
    # never overwrites without --force
    assert main(argv) == 2
    assert main(argv + ["--force"]) == 0


def _known_attention(model: torch.nn.Module, bias_to: int | None) -> None:
    """z = ReLU(BN(0)) = 1 per fuse channel (eval BN, beta 1), and select rows summing to log(3) for path
    `bias_to`, 0 elsewhere: the logits are exactly 0 or log 3 per channel."""
    for m in model.modules():
        if getattr(m, "use_attention", False):
            torch.nn.init.zeros_(m.fuse[0].weight)
            torch.nn.init.ones_(m.fuse[1].bias)
            w = torch.zeros_like(m.select.weight)
            if bias_to is not None:
                d = w.shape[1]
                w.view(m.M, m.channels, d)[bias_to] = math.log(3) / d
            with torch.no_grad():
                m.select.weight.copy_(w)


@pytest.mark.parametrize("branches,bias_to,expected", [
    ([K3, K5], None, [0.5, 0.5]),
    ([K3, K5], 1, [0.25, 0.75]),          # softmax(0, log 3)
    ([K5, K3, K7], None, [1 / 3] * 3),
    ([K5, K3, K7], 2, [0.2, 0.2, 0.6]),   # softmax(0, 0, log 3)
])
def test_hand_built_units_give_known_attention(branches, bias_to, expected, one_torch_thread: None) -> None:
    spec = tiny_spec(branches)
    model = build_model(spec).eval()
    _known_attention(model, bias_to)
    x = torch.randn(12, 3, 32, 32)
    y = torch.arange(12) % 10
    r = analyse(model, spec, [(x[:5], y[:5]), (x[5:], y[5:])], scales=[1.0, 2.0], class_names=[str(i) for i in range(10)],
                device=torch.device("cpu"), source=Source(trial=None, label=spec.label()))
    rf = [b.get("dilation", 1) * 2 + 1 for b in branches]
    big, small = rf.index(max(rf)), rf.index(min(rf))
    for u in r["units"]:
        for row, sd in zip(u["mean"], u["sd"]):
            assert row == pytest.approx(expected, abs=1e-6) and sd == pytest.approx([0] * len(expected), abs=1e-6)
        assert u["diff"] == pytest.approx([expected[big] - expected[small]] * 2, abs=1e-6)
    for u in r["classes"]["units"]:
        assert u["diff"][0] == pytest.approx([expected[big] - expected[small]] * 10, abs=1e-6)


@pytest.mark.parametrize("branches", [[K3, K5], [K3, K5, K7]])
def test_hook_reads_the_attention_the_forward_uses(branches, one_torch_thread: None) -> None:
    # The two-path forward takes a sigmoid shortcut: the recorded softmax must still be what it applied.
    spec = tiny_spec(branches)
    model = build_model(spec).eval()
    unit = sk_units(model, spec)[1]
    x = torch.randn(4, unit.module.paths[0][0].in_channels, 16, 16)
    with torch.no_grad(), record_attention([unit]) as seen:
        out = unit.module(x)
        feats = [p(x) for p in unit.module.paths]
    a = seen[unit.name][0]
    assert a.shape == (4, len(branches), unit.module.channels)
    assert torch.allclose(a, unit.module.attention(feats).flatten(2), atol=1e-6)
    assert torch.allclose(out, (torch.stack(feats, 1) * a[..., None, None]).sum(1), atol=1e-5)


def test_crop_resize_enlarges_the_centre() -> None:
    x = torch.zeros(1, 1, 32, 32)
    x[..., 12:20, 12:20] = 1.0                        # an 8-pixel square in the middle
    assert torch.equal(crop_resize(x, 1.0), x)
    big = crop_resize(x, 2.0)
    assert big.shape == x.shape
    assert (big > 0.5).sum() == pytest.approx(16 * 16, rel=0.1)   # twice as wide


def test_html_holds_both_figures_data(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    study, spec_file, ckpt = trained
    out = tmp_path / "o"
    assert main([str(study), "--spec", str(spec_file), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    r = json.loads((out / "attention.json").read_text())
    figs = figures(r)
    assert set(figs) == {"fig3c_crop", "fig4_crop", "fig3c_generated", "fig4_generated"}
    fig3 = figs["fig3c_crop"]
    diffs = [t for t in fig3.data if t.type == "scatter"]
    assert [list(t.y) for t in diffs] == [[u["diff"][i] for u in r["units"]] for i in range(len(r["scales"]))]
    fig4 = figs["fig4_crop"]
    assert [t.name for t in fig4.data[:2]] == ["1x", "1.5x"]
    assert list(fig4.data[0].y) == r["classes"]["units"][0]["diff"][0]
    page = (out / "attention.html").read_text()
    assert page == attention_page(r)
    assert all(f'id="{name}"' in page for name in figs) and 'src="https://cdn.plot.ly' not in page  # offline


def test_no_attention_is_exit_2(tmp_path: Path, capsys) -> None:
    for spec in (tiny_spec([K3], "sum"), tiny_spec([K3, K5], "sum")):
        f = tmp_path / "s.yaml"
        f.write_text(json.dumps(spec.to_dict()))
        torch.save(build_model(spec).state_dict(), tmp_path / "w.pt")
        assert main(["--spec", str(f), "--checkpoint", str(tmp_path / "w.pt")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no attention" in err and str(f) in err


def test_checkpoint_that_does_not_fit_is_exit_2(tmp_path: Path, capsys) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(json.dumps(tiny_spec([K3, K5]).to_dict()))
    torch.save(build_model(tiny_spec([K3, K7, K5])).state_dict(), tmp_path / "w.pt")
    assert main(["--spec", str(f), "--checkpoint", str(tmp_path / "w.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "does not fit this spec" in capsys.readouterr().err


def _study_with_trials(tmp_path: Path) -> Path:
    """Trial 0: M=1 (no attention); trial 1: attention, cheaper; both full fidelity and on the front, in a
    real SQLite storage."""
    study_file = write_study(tmp_path, "attstudy")
    storage = f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}"
    (tmp_path / "runs").mkdir(exist_ok=True)
    study = optuna.create_study(study_name="attstudy", storage=storage, directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "macs"])
    for acc, macs, spec in ((0.6, 2e6, tiny_spec([K3], "sum")), (0.5, 1e6, tiny_spec([K3, K5]))):
        study.add_trial(optuna.trial.create_trial(values=[acc, macs], user_attrs={
            Key.SPEC: spec.to_dict(), Key.FULL_FIDELITY: True, Key.ACCURACY: acc}))
    return study_file


def test_study_trial_without_attention_or_weights_is_exit_2(tmp_path: Path, capsys) -> None:
    study_file = _study_with_trials(tmp_path)
    assert main([str(study_file), "--trial", "best"]) == 2          # best is trial 0, M = 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trial 0" in err and "no attention" in err and "--trial 1" in err
    assert main([str(study_file), "--trial", "1"]) == 2             # attention, but no weights kept (yet)
    err = capsys.readouterr().err.strip()
    assert "trial 1 kept no weights" in err and "no full-fidelity trial" in err
    assert main([str(study_file), "--trial", "7"]) == 2
    assert "trials 0 to 1" in capsys.readouterr().err


def test_study_trial_with_weights_uses_its_validation_split(tmp_path: Path, one_torch_thread: None, capsys) -> None:
    from sksearch.config import load_study
    from sksearch.storage import records

    study_file = _study_with_trials(tmp_path)
    cfg = load_study(study_file)
    # Trial 2 keeps its weights as the driver does: a staged state dict kept as the trial's Optuna artifact.
    study = optuna.load_study(study_name="attstudy", storage=cfg.storage_url())
    trial = study.ask()
    trial.set_user_attr(Key.SPEC, tiny_spec([K3, K5]).to_dict())
    trial.set_user_attr(Key.FULL_FIDELITY, True)
    staged = records.staging_dir(cfg) / "t2" / records.WEIGHTS_FILE
    staged.parent.mkdir(parents=True)
    torch.save(build_model(tiny_spec([K3, K5])).state_dict(), staged)
    records.record_weights(trial, cfg, staged)
    study.tell(trial, [0.4, 1e6])
    assert main([str(study_file), "--trial", "2", "--scales", "1.0"]) == 0
    r = json.loads((tmp_path / "runs" / "attention" / "trial-2" / "attention.json").read_text())
    assert r["trial"] == 2 and r["study"] == "attstudy" and r["images"] == 30
    # Trial 1 kept none: the message names the trial that did.
    capsys.readouterr()
    assert main([str(study_file), "--trial", "1"]) == 2
    err = capsys.readouterr().err
    assert "trial 1 kept no weights" in err and "--trial 2" in err


def test_the_run_points_at_the_best_front_trial_with_attention(tmp_path: Path) -> None:
    from sksearch.config import load_study
    from sksearch.results.pareto import front_trials
    from sksearch.storage.open import open_study

    study_file = _study_with_trials(tmp_path)
    cfg = load_study(study_file)
    study, _ = open_study(cfg)
    assert len(front_trials(study)) == 2
    line = attention_pointer(study, cfg)
    assert line is not None and line.startswith(f"look inside: sksearch attention {study_file} --trial 1 ")
