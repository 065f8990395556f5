"""``Study``: one study's ask / tell loop over a store (Optuna's ``study.ask()`` / ``study.tell()``).

    from engine.study import Study
    study = Study(store, "slimpajama-5")          # a Store file or a MemoryStore
    trials = study.ask("mfms-bo", q=2, seed=0)    # proposals stored as trials, state "proposed"
    study.approve([t.trial_id for t in trials])
    study.run(trials[0], runner, out_dir)         # queued -> running -> done | failed (tells)
    study.tell(trial_id, result)                  # or a result that arrived another way
    study.incumbent("mfms-bo")                    # the best mixture at the target, by its model

Everything a strategy needs to answer is the study's state in the store: its config, its run
table, its trials, and each strategy's saved state (a GP's learned hyperparameters and when it
last re-learned them). A strategy object keeps nothing between asks that changes its answer:
its random generator is seeded from (seed, number of trials, number of checkpoints), and what it
learns is saved back through :meth:`Study.ask`. So the same study and seed give the same
proposal from a fresh ``mixplan propose`` and from a long-running autopilot, and ``mixplan bench
optimize`` (a :class:`~engine.store.memory.MemoryStore`) runs exactly autopilot's loop.

``mixplan propose``, autopilot (:mod:`engine.autopilot`), ``mixplan bench optimize`` and the
app's Proposals page all go through here.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from engine.errors import MixplanError, ValidationError
from engine.records import Proposal, RunResult, Trial, TrialState
from engine.runners.base import Runner, RunFailed
from engine.store.base import StudyStore
from engine.strategies.base import (
    Incumbent,
    Strategy,
    StudyState,
    get_strategy,
    with_rejections,
)


class Study:
    """A study in a store (module docstring)."""

    def __init__(self, store: StudyStore, name: str) -> None:
        self.store = store
        self.name = name

    # ---- reading -----------------------------------------------------------------------------
    @property
    def config(self):
        return self.store.get_config(self.name)

    def state(self) -> StudyState:
        """What a strategy sees: config, run table, trials (pending ones apart), strategy states."""
        return StudyState.from_store(self.store, self.name)

    def runs(self) -> pd.DataFrame:
        """The run table (one row per checkpoint, with trial metadata)."""
        return self.store.runs_frame(self.name, meta=True)

    def trials(self, states: Sequence[TrialState] | None = None) -> list[Trial]:
        return self.store.trials(self.name, states)

    # ---- ask -------------------------------------------------------------------------------------
    def _strategy(self, strategy: str | Strategy, seed: int | None) -> Strategy:
        return get_strategy(strategy, seed=0 if seed is None else seed) if isinstance(strategy, str) else strategy

    def _save_states(self, strat: Strategy) -> None:
        for key, value in strat.states_.items():
            self.store.save_strategy_state(self.name, key, value)
        strat.states_ = {}

    def ask(self, strategy: str | Strategy, q: int = 1, *, seed: int | None = None, actor: str = "strategy",
            state: StudyState | None = None) -> list[Trial]:
        """Ask ``strategy`` (a name, with ``seed``, or an object) for ``q`` proposals on the
        study's current state and store them as trials in state ``proposed``; the strategy's
        learned state is saved. Trials a person rejected count as pending (not proposed again;
        :func:`~engine.strategies.base.with_rejections`). Returns the stored trials (empty:
        nothing more to propose)."""
        if q < 1:
            raise ValidationError(f"asked for {q} proposals.", fix="ask for at least one (-n 1).")
        strat = self._strategy(strategy, seed)
        st = with_rejections(state if state is not None else self.state())
        strat.states_ = {}
        proposals = strat.ask(st, q)
        self._save_states(strat)
        if not proposals:
            return []
        if seed is not None:
            proposals = [p if p.seed is not None else replace(p, seed=seed) for p in proposals]
        return self.store.add_trials(self.name, proposals, actor=actor)

    def incumbent(self, strategy: str | Strategy, *, seed: int | None = None,
                  state: StudyState | None = None) -> Incumbent | None:
        """The mixture ``strategy`` believes best at the target on the study's runs."""
        strat = self._strategy(strategy, seed)
        strat.states_ = {}
        inc = strat.incumbent(state if state is not None else self.state())
        self._save_states(strat)
        return inc

    # ---- decide ----------------------------------------------------------------------------
    def add(self, proposals: Sequence[Proposal], *, actor: str = "user",
            state: TrialState = TrialState.PROPOSED) -> list[Trial]:
        """Store runs a person wants (``proposed``, or ``approved`` straight away)."""
        return self.store.add_trials(self.name, list(proposals), actor=actor, state=state)

    def approve(self, trial_ids: Sequence[int] | None = None, *, actor: str = "user") -> list[int]:
        return self.store.approve(self.name, trial_ids, actor=actor)

    def reject(self, trial_ids: Sequence[int] | None = None, *, actor: str = "user",
               reason: str | None = None) -> list[int]:
        return self.store.reject(self.name, trial_ids, actor=actor, reason=reason)

    # ---- tell ------------------------------------------------------------------------------
    def tell(self, trial_id: int, result: RunResult | None = None, *, failed: str | None = None,
             log_tail: str = "", actor: str = "worker") -> TrialState:
        """Record a trial's outcome: its ``result`` (done), or ``failed`` with the reason (and the
        log's tail). Either way the next ask sees it."""
        if (result is None) == (failed is None):
            raise ValidationError("tell needs a result or a failure reason (one of them).")
        if failed is not None:
            self.store.fail_trial(trial_id, failed, log_tail=log_tail, actor=actor)
            return TrialState.FAILED
        self.store.complete_trial(trial_id, result, actor=actor)
        return TrialState.DONE

    def run(self, trial: Trial, runner: Runner, out_root: Path, *, actor: str = "autopilot") -> TrialState:
        """approved -> queued -> running -> done | failed, the runner called in this process; a
        failing run (or a result the store rejects) is told as a failure, never raised."""
        store = self.store
        store.transition([trial.trial_id], TrialState.QUEUED, actor=actor)
        store.start_trial(trial.trial_id, actor=actor, job_id=f"inprocess:{trial.trial_id}")
        out_dir = Path(out_root) / f"trial-{trial.trial_id}"
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = runner.run(trial, out_dir)
            store.complete_trial(trial.trial_id, result, actor=actor)
            return TrialState.DONE
        except RunFailed as exc:
            store.fail_trial(trial.trial_id, exc.reason, log_tail=exc.log_tail, actor=actor)
        except MixplanError as exc:  # e.g. the store rejected the result
            store.fail_trial(trial.trial_id, str(exc), actor=actor)
        except Exception as exc:  # noqa: BLE001 - a crashing runner fails the trial, not the loop
            store.fail_trial(trial.trial_id, f"{type(exc).__name__}: {exc}", log_tail=traceback.format_exc(),
                             actor=actor)
        return TrialState.FAILED

    # ---- the trajectory's incumbents -----------------------------------------------------------
    def record_incumbent(self, strategy_name: str, state: StudyState, inc: Incumbent | None,
                         runner: Runner | None, trial_id: int | None, *, actor: str = "autopilot") -> float | None:
        """Store ``inc`` (as of the state's runs) as an ``incumbent`` event of ``trial_id`` (the
        last trial whose result the state includes), with its true value where ``runner`` knows
        it (simulators); returns that value."""
        if inc is None:
            return None
        t = state.target()
        true = None
        if runner is not None:
            try:
                true = runner.true_value(inc.weights, t.model_params, t.steps, state.objective)
            except Exception:  # noqa: BLE001 - the truth is optional
                true = None
        self.store.log_event(self.name, "incumbent", actor=actor, trial_id=trial_id, detail={
            "strategy": strategy_name, "weights": inc.weights, "pred_mean": inc.pred_mean, "pred_std": inc.pred_std,
            "source": inc.source, "true": true,
            "runs": int(state.runs["run_id"].nunique()) if not state.runs.empty else 0})
        return true


def propose(store: StudyStore, study: str, strategy: str | Strategy, q: int = 1, seed: int | None = None,
            *, actor: str = "strategy", state: StudyState | None = None) -> list[Trial]:
    """``Study(store, study).ask(strategy, q, seed=seed)``: ask and store proposals (the CLI's
    ``mixplan propose`` and the app's Propose button)."""
    return Study(store, study).ask(strategy, q, seed=seed, actor=actor, state=state)


__all__ = ["Study", "propose"]
