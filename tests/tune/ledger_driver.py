"""A stand-in driver for the fault matrix: the real Ledger on the real storage, the searcher's steps in the
searcher's order (count, ask, sample, claim, epochs, tell), with a sleep in place of training. It tests the
ledger, not Ray: `sksearch run` itself is covered by a few end-to-end cells.

    python -m tests.tune.ledger_driver URL STUDY N_TRIALS   (SKSEARCH_FAULT picks where it dies)

or forked(...) in a process of a fork server that has imported this module (what the fault matrix does: each
cell starts two to four drivers, and a fresh Python process spends about a second importing Optuna and sksearch).
"""
from __future__ import annotations

import os
import sys
import time

import optuna

from sksearch.config import StudyConfig
from sksearch.storage import records as st
from sksearch.storage.open import open_storage
from sksearch.storage.ledger import Ledger

EPOCHS = 2
INTERVAL, GRACE = 0.5, 2.0  # seconds; production beats every 5 s with a 20 s grace


def config(name: str) -> StudyConfig:
    return StudyConfig.model_validate({"name": name, "search_space": "x.yaml", "output_dir": "unused"})


def main(url: str, name: str, n_trials: int) -> int:
    cfg = config(name)
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    ledger = Ledger(study, storage, n_trials, interval=INTERVAL, grace=GRACE)
    try:
        while True:
            budget = ledger.state()
            if budget.free <= 0:
                if not budget.others_running:
                    return 0
                time.sleep(0.2)  # others may finish, or go stale and be replaced
                continue
            trial = ledger.ask()
            width = trial.suggest_int("width", 1, 10_000)
            st.record_sampled(trial, {"width": width}, f"w{width}", width, 2 * width, width, EPOCHS)
            if not ledger.claim(trial):
                continue
            history: list[float] = []
            for epoch in range(1, EPOCHS + 1):
                time.sleep(0.1)  # "training"
                history.append(epoch / 10)
                with ledger.progress(trial._trial_id) as write:
                    st.record_epoch(storage, trial._trial_id, epoch=epoch, accuracy=history[-1], history=history)
                if write.lost:
                    break
            else:
                with ledger.finish(trial._trial_id):
                    st.record_end(study, trial, cfg, epochs_done=EPOCHS, max_epochs=EPOCHS, accuracy=history[-1],
                                  params=width, macs=2 * width, error=None)
    finally:
        ledger.close()


def forked(url: str, name: str, n_trials: int, fault: str | None, log: str) -> None:
    """main() in a process forked from a warm one (tests/tune/test_fault_matrix.py): its output in `log`, its
    SKSEARCH_FAULT `fault`. A fork server's children get its environment, not the test's: set it here."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.pop("SKSEARCH_FAULT", None)
    if fault:
        os.environ["SKSEARCH_FAULT"] = fault
    sys.exit(main(url, name, n_trials))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
