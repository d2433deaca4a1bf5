"""Latency known before training (sksearch.latency): the target validated at load, the per-unit table
memoised, the prediction held against the whole network, and `inspect --latency`."""
from __future__ import annotations

import json

import pytest
import torch

from sksearch import latency
from sksearch.config import LatencyConfig
from sksearch.inspect import main as inspect_main
from sksearch.models import blueprint
from sksearch.run import main as run_main
from sksearch.spec import ArchSpec

FAST = dict(warmup=1, repeats=4, min_seconds=0.0)  # timing figures are not what these tests check

TINY = {"backbone": "resnext_cifar", "depths": [1, 1, 1], "widths": [16, 32, 64], "out_channels": [32, 64, 128],
        "stem_channels": 16, "num_classes": 10, "input_size": [3, 32, 32],
        "sk": {"G": 8, "r": 8, "L": 16, "attention": "softmax",
               "branches": [{"kernel": 3, "dilation": 1}, {"kernel": 3, "dilation": 2}]}}


def tiny(**changes) -> ArchSpec:
    data = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        if key.startswith("sk_"):
            data["sk"][key[3:]] = value
        else:
            data[key] = value
    return ArchSpec.from_dict(data)


def write_study(tmp_path, extra: str) -> str:
    (tmp_path / "space.yaml").write_text("base: sknet29\n")
    study = tmp_path / "s.yaml"
    study.write_text(f"name: s\nsearch_space: space.yaml\noutput_dir: {tmp_path / 'runs'}\n{extra}")
    return str(study)


@pytest.mark.parametrize("block, key, words", [
    ("latency: {device: tpu}", "latency.device", "'cpu' or 'cuda'"),
    ("latency: {batch: 0}", "latency.batch", "greater than or equal to 1"),
    ("latency: {precision: fp8}", "latency.precision", "'fp32', 'bf16' or 'fp16'"),
    ("constraints: {max_latency_ms: -1}", "constraints.max_latency_ms", "greater than 0"),
])
def test_a_bad_latency_block_is_refused_at_load_naming_the_key(tmp_path, capsys, block, key, words):
    study = write_study(tmp_path, block + "\n")
    assert run_main([study, "--dry-run", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{study}: {key}: " in err and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_cuda_target_without_a_gpu_is_refused_at_load(tmp_path, capsys):
    study = write_study(tmp_path, "objectives: [{metric: accuracy, direction: maximize}, "
                                  "{metric: latency, direction: minimize}]\nlatency: {device: cuda}\n")
    assert run_main([study, "--dry-run", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{study}: latency.device: " in err and "GPU" in err


def test_a_cuda_target_is_not_checked_when_nothing_uses_latency(tmp_path, capsys):
    # The block alone is a setting for later: without a latency objective or budget nothing is timed.
    study = write_study(tmp_path, "latency: {device: cuda}\n")
    assert run_main([study, "--dry-run", "1"]) == 0
    assert "ms" not in capsys.readouterr().out.splitlines()[1].split()


def test_the_dry_run_predicts_latency_and_holds_specs_to_max_latency_ms(tmp_path, capsys):
    study = write_study(tmp_path, "constraints: {max_latency_ms: 0.001}\n"
                                  "latency: {warmup: 1, repeats: 4, min_seconds: 0}\n")
    assert run_main([study, "--dry-run", "2"]) == 0
    out = capsys.readouterr().out
    assert "latency: predicted on cpu" in out and "ms" in out.splitlines()[2].split()
    assert "latency " in out and "> max_latency_ms 0.001 ms" in out  # a real network is slower than 1 us
    assert "0/2 feasible" in out


def test_a_unit_is_timed_once_whatever_spec_names_it(tmp_path):
    path = tmp_path / "table.json"
    table = latency.LatencyTable(LatencyConfig(**FAST), path=path)
    base = tiny()
    first = table.predict(base)
    units = sum(len(blocks) for blocks in blueprint(base).values())
    assert table.measured == units == 5  # stem, three SK stages, head
    assert first.ms == pytest.approx(sum(p.ms for p in first.parts))

    # r = 4 and r = 8 give the same attention width here (d = max(C // r, L) = 16 in every stage): same units
    assert table.predict(tiny(sk_r=4)).ms == first.ms
    assert table.measured == units

    # one more unit in stage 2: only that unit is new, and the prediction grows by exactly its time
    deeper = table.predict(tiny(depths=[1, 2, 1]))
    assert table.measured == units + 1
    added = deeper.parts[2].ms - first.parts[2].ms
    assert added > 0 and deeper.ms == pytest.approx(first.ms + added)

    # another process on this machine reads the file: nothing is timed again
    again = latency.LatencyTable(LatencyConfig(**FAST), path=path)
    assert again.predict(tiny(depths=[1, 2, 1])).ms == pytest.approx(deeper.ms) and again.measured == 0
    # another target (batch 4) is another table: the file of batch 1 is not reused
    other = latency.LatencyTable(LatencyConfig(batch=4, **FAST), path=path)
    other.predict(base)
    assert other.measured == units


def test_the_per_unit_sum_tracks_the_whole_network(tmp_path):
    """The table's prediction for a tiny net against the whole network timed as one module. This machine's
    timings drift by tens of percent from minute to minute (BENCHMARKS.md), so a sum that misses a part or
    counts one twice (2x off) fails, while noise gets three fresh tries."""
    spec = tiny(depths=[1, 2, 1])
    config = LatencyConfig(warmup=2, repeats=10, min_seconds=0.05)
    ratios = []
    for attempt in range(3):
        table = latency.LatencyTable(config, path=tmp_path / f"t{attempt}.json")
        ratios.append(table.predict(spec).ms / table.measure_network(spec).ms)
        if 0.67 < ratios[-1] < 1.5:
            break
    assert 0.67 < ratios[-1] < 1.5, f"per-unit sum / whole network: {ratios}"
    assert latency.check(table, [spec]).errors[0] == pytest.approx(ratios[-1] - 1, abs=1.0)


class _Steady(latency.LatencyTable):
    """Whole networks that run 1.1x their per-unit sums, the same each time they are timed (a quiet machine;
    the real timing is what test_the_per_unit_sum_tracks_the_whole_network checks)."""

    def measure_network(self, spec):
        return latency.Timing(round(self.unit_sum(spec).ms * 1.1, 5), 0.0, 1)


def test_the_calibrated_scale_multiplies_every_prediction_and_is_kept_once(tmp_path):
    path = tmp_path / "table.json"
    table = _Steady(LatencyConfig(**FAST), path=path)
    raw = table.predict(tiny()).ms
    fit = latency.calibrate(table, [tiny(), tiny(depths=[1, 2, 1])])
    assert fit.scale == table.scale == pytest.approx(1.1, abs=1e-3) and fit.noise == 0
    assert fit.errors.median == pytest.approx(1 - 1 / 1.1, abs=1e-3)  # the plain sums ran 9 % short
    assert "predictions scaled by 1.1" in fit.describe()
    scaled = table.predict(tiny())
    assert scaled.ms == pytest.approx(raw * table.scale)
    assert scaled.ms == pytest.approx(sum(p.ms for p in scaled.parts))
    # the file keeps the first scale: a later calibration elsewhere does not move this target's predictions
    again = latency.LatencyTable(LatencyConfig(**FAST), path=path)
    assert again.scale == table.scale and again.predict(tiny()).ms == pytest.approx(scaled.ms)
    other = _Steady(LatencyConfig(**FAST), path=path)
    other.scale = None
    latency.calibrate(other, [tiny(depths=[1, 2, 1])])
    assert latency.LatencyTable(LatencyConfig(**FAST), path=path).scale == table.scale


class _Busy(latency.LatencyTable):
    """A table on a machine whose whole-network timings disagree 2x between two timings of one network."""

    calls = 0

    def measure_network(self, spec):
        self.calls += 1
        return latency.Timing(1.0 if self.calls % 2 else 2.0, 0.0, 1)


def test_no_scale_is_fitted_when_two_timings_of_a_network_disagree(tmp_path):
    table = _Busy(LatencyConfig(**FAST), path=tmp_path / "t.json")
    fit = latency.calibrate(table, [tiny()])
    assert fit.scale is None and table.scale is None and fit.noise == pytest.approx(1.0)
    assert "no scale fitted" in fit.describe() and "100%" in fit.describe()
    assert latency.LatencyTable(LatencyConfig(**FAST), path=tmp_path / "t.json").scale is None


class _Uneven(latency.LatencyTable):
    """Whole networks that run 0.7x and 1.4x their sums, the same each time they are timed."""

    def measure_network(self, spec):
        return latency.Timing(self.unit_sum(spec).ms * (0.7 if spec.depths == [1, 1, 1] else 1.4), 0.0, 1)


def test_no_scale_is_fitted_when_the_sums_error_is_not_one_factor(tmp_path):
    table = _Uneven(LatencyConfig(**FAST), path=tmp_path / "t.json")
    fit = latency.calibrate(table, [tiny(), tiny(depths=[1, 2, 1])])
    assert fit.scale is None and table.scale is None and fit.noise == 0
    assert "no one factor" in fit.describe() and "0.70 to 1.40" in fit.describe()


def test_threads_are_restored_after_timing(tmp_path):
    before = torch.get_num_threads()
    latency.LatencyTable(LatencyConfig(threads=max(1, before - 1) or 1, **FAST), path=tmp_path / "t.json").predict(tiny())
    assert torch.get_num_threads() == before


def test_inspect_latency_prints_each_part_and_the_whole_network(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SKSEARCH_CACHE", str(tmp_path))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(json.dumps(TINY))
    assert inspect_main([str(spec), "--latency", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lat = out["latency"]
    assert [p["name"] for p in lat["parts"]] == ["stem", "stage1", "stage2", "stage3", "head"]
    assert lat["ms"] == pytest.approx(sum(p["ms"] for p in lat["parts"])) and lat["measured_ms"] > 0
    assert lat["target"]["batch"] == 1 and lat["target"]["device"] == "cpu"
    assert (tmp_path / "latency" / f"{lat['target']['id']}.json").is_file()

    assert inspect_main([str(spec), "--latency", "--batch", "2"]) == 0
    text = capsys.readouterr().out
    assert "batch 2" in text and "whole network timed once" in text and "stage3" in text

    assert inspect_main([str(spec), "--latency", "--batch", "0"]) == 2
    assert "--batch: " in capsys.readouterr().err
