"""Optuna samplers from a study's `tune.sampler` block. Constraints reach them through the trials'
`set_constraint` values (Optuna 5), so every sampler here learns from infeasible specs."""
from __future__ import annotations

import optuna

from sksearch.config import StudyConfig


def make_sampler(cfg: StudyConfig) -> optuna.samplers.BaseSampler:
    s = cfg.tune.sampler
    concurrent = cfg.tune.max_concurrent > 1
    if s.type in ("random", "ehvi"):
        # ehvi: the proposer (search/proposals.py) enqueues each modelled proposal's parameters; the random
        # sampler draws the first few trials and anything a proposal leaves open.
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.type == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed, population_size=max(4, min(50, cfg.tune.n_trials // 3 or 4)))
    if s.type == "gp":
        kw = {} if s.n_startup_trials is None else {"n_startup_trials": s.n_startup_trials}
        # Its model covers only the parameters every trial has; the conditional ones (paths 2 and 3, attention)
        # are drawn at random, as docs/search-methods.md says, instead of a warning per parameter per trial.
        return optuna.samplers.GPSampler(seed=s.seed, warn_independent_sampling=False, **kw)
    kw = {} if s.n_startup_trials is None else {"n_startup_trials": s.n_startup_trials}
    # multivariate + group model the conditional per-path parameters jointly; constant_liar keeps
    # concurrent trials from being sampled on top of each other.
    return optuna.samplers.TPESampler(seed=s.seed, multivariate=True, group=True, constant_liar=concurrent, **kw)
