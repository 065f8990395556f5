"""What a study's ask/tell loop needs from a store: the :class:`StudyStore` protocol.

Two stores implement it: :class:`engine.store.Store` (the DuckDB file the app, the CLI and the
workers share) and :class:`engine.store.memory.MemoryStore` (a process's own, for benchmarks and
tests: thousands of asks without a database). :class:`engine.study.Study` and autopilot are
written against this protocol only, so the benchmark runs the same loop as ``mixplan
autopilot``.

Run tables come out in the format of :mod:`engine.runtable.schema`, one row per checkpoint,
with ``meta=True`` adding ``trial_id``, ``state``, ``checkpoint_id``, ``wall_s``, ``source``
and ``strategy``. Strategy state (what a strategy keeps between asks, e.g. a GP's learned
hyperparameters) is part of the study's state: :meth:`StudyStore.strategy_states` returns the
latest saved per key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from engine.config import StudyConfig
from engine.records import Proposal, RunResult, Trial, TrialState


@runtime_checkable
class StudyStore(Protocol):
    """The store operations a study's loop uses (see the module docstring)."""

    def create_study(self, config: StudyConfig, *, actor: str = "user") -> None: ...

    def get_config(self, study: str) -> StudyConfig: ...

    def import_runs(self, study: str, table: pd.DataFrame, *, source: str = "<table>",
                    config: StudyConfig | None = None, actor: str = "import") -> Any: ...

    def runs_frame(self, study: str, *, meta: bool = False, states: Sequence[TrialState] | None = None,
                   purpose: str | None = "fit") -> pd.DataFrame: ...

    def trials(self, study: str, states: Iterable[TrialState | str] | None = None, *,
               purpose: str | None = "fit") -> list[Trial]: ...

    def get_trial(self, trial_id: int) -> Trial: ...

    def add_trials(self, study: str, proposals: Sequence[Proposal], *, actor: str = "user",
                   state: TrialState = TrialState.PROPOSED, purpose: str = "fit") -> list[Trial]: ...

    def transition(self, trial_ids: Sequence[int], to: TrialState | str, *, actor: str = "user",
                   reason: str | None = None, study: str | None = None) -> None: ...

    def approve(self, study: str, trial_ids: Sequence[int] | None = None, *, actor: str = "user") -> list[int]: ...

    def reject(self, study: str, trial_ids: Sequence[int] | None = None, *, actor: str = "user",
               reason: str | None = None) -> list[int]: ...

    def start_trial(self, trial_id: int, *, actor: str = "dispatch", job_id: str | None = None) -> None: ...

    def complete_trial(self, trial_id: int, result: RunResult, *, actor: str = "worker",
                       replace: bool = False) -> bool: ...

    def fail_trial(self, trial_id: int, reason: str, *, log_tail: str = "", actor: str = "worker") -> None: ...

    def log_event(self, study: str, kind: str, *, actor: str = "user", trial_id: int | None = None,
                  detail: dict[str, Any] | None = None) -> None: ...

    def events(self, study: str, *, limit: int | None = None, trial_id: int | None = None) -> pd.DataFrame: ...

    def strategy_states(self, study: str) -> dict[str, dict]: ...

    def save_strategy_state(self, study: str, key: str, state: dict, *, actor: str = "strategy") -> None: ...


#: the event kind strategy states are saved under (``strategy_state:<key>``)
STRATEGY_STATE = "strategy_state"


def checked_proposal(p: Proposal, cfg: StudyConfig, where: str, default_run_id: str,
                     taken: set[str]) -> tuple[dict[str, float], float | None, float | None, str]:
    """(weights, steps, tokens, run id) of a proposal about to become a trial, checked as every
    store checks it (weights against the study's domains and bounds, a positive size, a length,
    a run id usable as a folder name and not yet used in the study); ``taken`` gains the run id.
    One function so the DuckDB and in-memory stores refuse the same proposals."""
    from engine.errors import ValidationError
    from engine.mixture import validate_weights
    from engine.runtable.schema import RUN_ID_FIX, run_id_problem

    w = validate_weights(p.weights, cfg.domains, cfg.bounds_array(), where=where)
    if p.model_params <= 0:
        raise ValidationError(f"{where}: model_params must be > 0, got {p.model_params}.")
    if p.steps is None and p.tokens is None:
        raise ValidationError(f"{where}: give steps or tokens.")
    steps = p.steps if p.steps is not None else cfg.steps_for(p.tokens)
    tokens = p.tokens if p.tokens is not None else cfg.tokens_for(p.steps)
    run_id = p.run_id or default_run_id
    problem = run_id_problem(run_id) if isinstance(run_id, str) else "is not a string"
    if problem:
        raise ValidationError(f"{where}: run_id {run_id!r} {problem}; a run id names the run's folder.",
                              fix=RUN_ID_FIX)
    if run_id in taken:
        raise ValidationError(f"{where}: run_id '{run_id}' is already used in study '{cfg.name}'.")
    taken.add(run_id)
    return dict(w), steps, tokens, run_id
