"""search.protocol: what the trial reports is what the searcher reads back, and events print as one line."""
from __future__ import annotations

import io
import re

from sksearch.search import protocol as p
from sksearch.search.progress import ProgressPrinter, front_table


def test_an_epoch_result_round_trips_through_ray_shaped_dicts():
    sent = p.epoch_result(accuracy=0.5, epoch=2, train_loss=1.0, images_per_second=100.0, epoch_seconds=1.0,
                          train_seconds=2.5, params=10, macs=20, trial_number=3, node="n1")
    got = p.read_result({**sent, "training_iteration": 7})  # Ray adds its own counters
    assert (got.accuracy, got.epoch, got.error, got.train_seconds, got.node) == (0.5, 2, None, 2.5, "n1")
    crash = p.read_result(p.error_result("RuntimeError: x", params=1, macs=2, trial_number=3, node="n1"))
    assert crash.accuracy is None and crash.error == "RuntimeError: x"
    assert p.read_result({"training_iteration": 4}).epoch == 4 and p.read_result(None).epoch is None


def test_events_print_one_line_each():
    out = io.StringIO()
    show = ProgressPrinter(out)
    show(p.Started(1, "SK[2, 8, 8]", 1000, 2_000_000))
    show(p.EpochDone(1, "SK[2, 8, 8]", 1, 2, 0.25))
    show(p.Ended(1, "SK[2, 8, 8]", "COMPLETE", 2, 0.5, None))
    show(p.Repeated(2, "SK[2, 8, 8]", 1))
    show(p.Infeasible(3, "SK[3, 8, 8]", "macs 9M > max_macs 5M"))
    show(p.Ended(5, "SK[2, 8, 8]", "PRUNED", 1, 0.125, None))
    show(p.Ended(6, "SK[2, 8, 8]", "FAIL", 0, None, "RuntimeError: boom"))
    stamp = re.compile(r"^\[\s*\d+\.\ds\] ")  # seconds since the printer started
    lines = out.getvalue().splitlines()
    assert all(stamp.match(line) for line in lines)
    assert [stamp.sub("", line).rstrip() for line in lines] == [
        "trial   1 start     SK[2, 8, 8]                        params      1K  MACs      2M",
        "trial   1 epoch  1/2  accuracy 0.250",
        "trial   1 COMPLETE  after 2 epochs, accuracy 0.500",
        "trial   2 skipped   SK[2, 8, 8]                        same network as trial 1: its result is copied",
        "trial   3 skipped   SK[3, 8, 8]                        infeasible: macs 9M > max_macs 5M",
        "trial   5 PRUNED    after 1 epochs, accuracy 0.125",
        "trial   6 FAIL      after 0 epochs, accuracy -  (RuntimeError: boom)",
    ]


def test_the_front_table_has_a_row_per_member_under_its_header():
    rows = [{"trial": 4, "label": "SK[2, 8, 8]", "accuracy": 0.5, "params": 1000, "macs": 2000},
            {"trial": 12, "label": "SK[3, 4, 16] K3+K5", "accuracy": 0.625, "params": 2_500_000, "macs": 3_000_000}]
    lines = front_table(rows).splitlines()
    assert lines[0].split() == ["trial", "SK", "setting", "accuracy", "params", "MACs"]
    assert set(lines[1]) == {"-"}
    assert lines[2].split() == ["4", "SK[2,", "8,", "8]", "0.5000", "1K", "2K"]
    assert lines[3].split() == ["12", "SK[3,", "4,", "16]", "K3+K5", "0.6250", "2.5M", "3M"]
    assert "--confirm K" in lines[4]  # the single-seed caveat, with the command that measures the noise
