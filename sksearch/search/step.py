"""The proposal step: from a free slot to a checked, recorded trial worth training.

StudySearcher takes every new trial through this step, and so does the replay of bench/schedulers: what the
replay measures about the search is this code. One step: the ehvi proposal (when the study uses it) is
enqueued on the study, a trial is asked, its spec sampled define-by-run and checked against the budgets,
its constraint values set for the sampler and its spec and costs recorded. An infeasible spec is recorded and
never trained; the same network as a full-fidelity trial (ArchSpec.identity) is recorded as that trial's
duplicate (its result copied, no budget). Both are drawn again, up to the caps below.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import optuna
from optuna.trial import FrozenTrial, TrialState

from sksearch.search import protocol
from sksearch.search.feasibility import Feasibility, sample_feasibility
from sksearch.search.proposals import FrontGainProposer
from sksearch.search.space import SearchSpace
from sksearch.config import StudyConfig
from sksearch.spec import ArchSpec
from sksearch.storage import records as st

MAX_SKIPPED_IN_A_ROW = 500  # infeasible samples in a row before the search gives up
MAX_REPEATS_IN_A_ROW = 50   # already-trained samples in a row: the sampler has nothing new to offer


@dataclass
class Drawn:
    """A trial whose spec is feasible and not yet trained: the caller trains it (or resumes `resume`)."""

    trial: optuna.Trial
    feas: Feasibility
    label: str
    resume: int | None  # tune.scheduler.pause: the paused trial this proposal continues, else None


@dataclass
class NothingLeft:
    """Why the step found nothing to train. exhausted: a small space is used up (a normal end of the study);
    else the constraints or the space leave (almost) nothing feasible (a stop)."""

    reason: str
    exhausted: bool


class ProposalStep:
    def __init__(self, cfg: StudyConfig, space: SearchSpace, study: optuna.Study, *,
                 ask: Callable[[], optuna.Trial] | None = None,
                 finishing: Callable[[int], ContextManager[Any]] | None = None,
                 check: Callable[[optuna.Trial], Feasibility] | None = None,
                 latency_target: dict[str, Any] | None = None,
                 on_event: protocol.EventSink | None = None) -> None:
        """ask: how a trial is created (the driver's ledger, which tags it with the run); finishing: the
        context in which a trial that will not train is told (the ledger's, which stops its heartbeat);
        check: sample and check a spec on a trial (the replay memoises the study's own check)."""
        self.cfg, self.space, self.study = cfg, space, study
        self.ask = ask or study.ask
        self.finishing = finishing or (lambda trial_id: contextlib.nullcontext())
        self.check = check or (lambda trial: sample_feasibility(space, trial, cfg))
        self.latency_target = latency_target
        self.on_event = on_event or (lambda event: None)
        self.max_epochs = cfg.max_epochs()
        # tune.sampler.type ehvi: each slot's spec is proposed by its expected front gain and enqueued.
        self.proposer = FrontGainProposer(cfg, space) if cfg.tune.sampler.type == "ehvi" else None
        self._identities: dict[int, str | None] = {}

    def next(self, *, new_specs: bool = True) -> Drawn | NothingLeft:
        """The next trial worth training. new_specs=False: the proposer may only resume a paused trial (the
        replay, once its table has no untried row)."""
        duplicates = 0
        for _ in range(MAX_SKIPPED_IN_A_ROW):
            self._enqueue_proposal(new_specs)
            trial = self.ask()
            feas = self.check(trial)
            spec_dict = feas.spec.to_dict() if feas.spec is not None else {}
            label = feas.spec.sk.label() if feas.spec is not None else "invalid"
            # Known before the constraints are set (Optuna keeps the first value): a repeated spec's copy
            # violates the `repeated` constraint, which keeps it off study.best_trials.
            twin = self.trained_twin(feas.spec) if feas.feasible else None
            st.set_constraints(trial, feas.constraints, repeated=twin is not None)
            st.record_sampled(trial, spec_dict, label, feas.params, feas.macs, feas.select_macs, self.max_epochs,
                              latency_ms=feas.latency, latency_target=self.latency_target)
            if not feas.feasible:
                reason = feas.reason or "infeasible"
                with self.finishing(trial._trial_id):
                    st.record_infeasible(self.study, trial, self.cfg, reason, feas.params, feas.macs, feas.latency)
                self.on_event(protocol.Infeasible(trial.number, label, reason))
                if self.space.fixed:  # a baseline: every sample is this same spec
                    return NothingLeft(f"the space's one spec (base only) is infeasible: {reason}", exhausted=False)
                continue
            if twin is not None:
                with self.finishing(trial._trial_id):
                    st.record_duplicate(self.study, trial, twin)
                self.on_event(protocol.Repeated(trial.number, label, twin.number))
                duplicates += 1
                if duplicates >= MAX_REPEATS_IN_A_ROW:
                    return NothingLeft(f"the sampler proposed {duplicates} specs in a row that were already "
                                       "trained: the search space looks exhausted", exhausted=True)
                continue
            return Drawn(trial, feas, label, st.proposed_resume(trial))
        return NothingLeft(f"{MAX_SKIPPED_IN_A_ROW} sampled specs in a row were infeasible: the constraints (or the "
                           "space) leave almost nothing to train; try `sksearch run STUDY --dry-run 50`", exhausted=False)

    def _enqueue_proposal(self, new_specs: bool) -> None:
        """ehvi: the pool's best candidate becomes the next trial's parameters (Optuna's enqueue_trial, so the
        trial stays an ordinary define-by-run trial); none while the model starts up or the pool holds no
        untried network, and then the study's sampler draws."""
        if self.proposer is None:
            return
        proposal = self.proposer.propose(self.study, new_specs=new_specs)
        if proposal is not None:
            self.study.enqueue_trial(proposal.params, user_attrs={st.Key.PROPOSAL: proposal.summary()})

    def trained_twin(self, spec: ArchSpec) -> FrozenTrial | None:
        """A full-fidelity trial of the same network (ArchSpec.identity: r and L that give the same attention
        widths, paths in another order, ...). Resume refuses a study file whose recipe changed, so the twin
        was trained under this study's recipe."""
        wanted = spec.identity()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if st.status(t) == "full" and self._identity_of(t) == wanted:
                return t
        return None

    def _identity_of(self, t: FrozenTrial) -> str | None:
        # A finished trial's spec never changes: validate it once per step, not once per sample.
        if t._trial_id not in self._identities:
            self._identities[t._trial_id] = st.identity(t)
        return self._identities[t._trial_id]
