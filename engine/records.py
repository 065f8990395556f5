"""Plain typed records that cross module boundaries (no loose dicts).

Run tables themselves travel as pandas DataFrames with the documented columns of
:mod:`engine.runtable.schema`; the records here describe trials and their results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class TrialState(str, Enum):
    """Life of a trial: proposed -> approved -> queued -> running -> done | failed,
    with rejected / cancelled as exits. See :data:`TRANSITIONS` for the legal moves."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    def __str__(self) -> str:  # so f-strings print "done", not "TrialState.DONE"
        return self.value


S = TrialState
#: Legal transitions. A failed trial may be approved again (a retry); a queued trial may go
#: back to approved when its job is lost before it started (re-attach after a restart).
TRANSITIONS: dict[TrialState, frozenset[TrialState]] = {
    S.PROPOSED: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED}),
    S.APPROVED: frozenset({S.QUEUED, S.REJECTED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.APPROVED, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.DONE, S.FAILED, S.CANCELLED}),
    S.FAILED: frozenset({S.APPROVED}),
    S.DONE: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}
#: States in which the trial is pending (counts as X_pending for batch proposals).
PENDING_STATES = frozenset({S.PROPOSED, S.APPROVED, S.QUEUED, S.RUNNING})
#: States whose mixture may still be edited.
EDITABLE_STATES = frozenset({S.PROPOSED, S.APPROVED})


@dataclass(frozen=True)
class Proposal:
    """A run a strategy (or a person) wants: mixture, fidelity, and why.

    ``steps`` or ``tokens`` (or both) give the length. ``acq_value``, ``pred_mean`` and
    ``pred_std`` are what the strategy's model said when it chose this point.
    """

    weights: dict[str, float]
    model_params: int
    steps: int | None = None
    tokens: float | None = None
    strategy: str = "manual"
    acq_value: float | None = None
    pred_mean: float | None = None
    pred_std: float | None = None
    cost: float | None = None
    reason: str = ""
    run_id: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Checkpoint:
    """One evaluation along a run: where it was taken and what it measured."""

    steps: int | None
    tokens: float | None
    losses: dict[str, float]
    metrics: dict[str, float] = field(default_factory=dict)
    cost: float | None = None
    wall_s: float | None = None


@dataclass(frozen=True)
class RunResult:
    """What a runner hands back for a finished trial (DESIGN.md contract 3, parsed)."""

    checkpoints: list[Checkpoint]
    cost: float | None = None
    wall_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trial:
    """A stored trial as the store returns it."""

    trial_id: int
    study: str
    run_id: str
    state: TrialState
    weights: dict[str, float]
    model_params: int
    steps: int | None
    tokens: float | None
    source: str
    strategy: str | None
    acq_value: float | None
    pred_mean: float | None
    pred_std: float | None
    cost: float | None
    reason: str | None
    seed: int | None
    job_id: str | None = None
    attempts: int = 0
    #: why a person (or autopilot) rejected or cancelled it, and who; ``reason`` keeps the
    #: proposer's reason, so both can be read side by side
    rejection_reason: str | None = None
    rejected_by: str | None = None
    purpose: str = "fit"


#: What a trial is for. ``fit``: models, strategies, backtests and trajectories read it.
#: ``validation``: a run held out to check a prediction (e.g. the demo's runs at its target);
#: the store leaves it out of everything a model reads unless asked for it by name.
PURPOSES = ("fit", "validation")


@dataclass(frozen=True)
class StudySummary:
    """One line of ``mixplan study list --json``. ``runs`` and ``checkpoints`` count the runs
    models fit on; ``validation_runs`` the held-out ones (never fitted on)."""

    name: str
    domains: list[str]
    runs: int
    checkpoints: int
    runner: str
    validation_runs: int = 0
