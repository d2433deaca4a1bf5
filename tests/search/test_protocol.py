"""search.protocol: what the trial reports is what the searcher reads back, and events print as one line."""
from __future__ import annotations

import io

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
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and "2M" in lines[0] and "0.250" in lines[1] and "COMPLETE" in lines[2]
    assert "same network as trial 1" in lines[3] and "max_macs" in lines[4]
    table = front_table([{"trial": 4, "label": "SK[2, 8, 8]", "accuracy": 0.5, "params": 1000, "macs": 2000}])
    assert table.splitlines()[2].split()[0] == "4"
