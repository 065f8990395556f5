"""Autopilot: propose, approve, run, repeat until the cost budget is spent.

Each round asks the strategy for ``batch`` proposals on the study's current runs, stores and
approves them (actor ``autopilot``), runs them and records the results in the store like any
other run. Simulated runners (``mfms-sim``, ``table``, ``synthetic``) run synchronously in this process;
other runners go through the dispatch layer (:func:`engine.dispatch.run_approved`) for the
round's trials. A failing trial is recorded as failed (reason and log tail) and the loop goes
on.

Budget: the costs of the trials this autopilot ran (done or failed) are summed; a proposal
whose cost would take the sum past ``budget`` is rejected and the loop stops, so the spend
never exceeds the budget. The loop also stops after ``max_trials`` trials, when the strategy
has nothing more to propose, or after ``max_failures`` failures in a row.

The trajectory (:mod:`engine.trajectory`) needs the incumbent after every result; computing
it later would mean refitting a model per step, so autopilot records it as an ``incumbent``
event (weights, predicted value, and the runner's true value where it knows it) each time the
strategy has looked at new results (the strategies compute it while asking anyway).
"""

from __future__ import annotations

import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import MixplanError
from engine.records import Trial, TrialState
from engine.runners.base import Runner, RunFailed
from engine.runners.registry import SIMULATED_KINDS
from engine.strategies.base import Incumbent, Strategy, StudyState, get_strategy, propose

#: runner kinds autopilot runs in-process (cheap, synchronous): the simulated ones
IN_PROCESS_KINDS = SIMULATED_KINDS


@dataclass
class AutopilotEvent:
    """What the progress callback receives after each trial."""

    trial: Trial
    state: TrialState
    spent: float
    budget: float
    n_done: int
    n_failed: int
    incumbent: Incumbent | None
    message: str = ""


@dataclass
class AutopilotResult:
    """How an autopilot session ended."""

    study: str
    strategy: str
    spent: float
    budget: float
    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    stopped: str = ""
    incumbent: Incumbent | None = None
    #: the cost of the cheapest run on offer (a budget below it buys nothing); None if unknown
    cheapest: float | None = None

    def to_json(self) -> dict:
        inc = self.incumbent
        return {"study": self.study, "strategy": self.strategy, "spent": self.spent, "budget": self.budget,
                "done": self.done, "failed": self.failed, "stopped": self.stopped, "cheapest_run": self.cheapest,
                "incumbent": None if inc is None else {"weights": inc.weights, "pred_mean": inc.pred_mean,
                                                        "pred_std": inc.pred_std, "source": inc.source}}


def _runner_for(config) -> Runner:
    from engine.runners.registry import make_runner

    return make_runner(config)


def record_incumbent(store, study: str, strategy: Strategy, state: StudyState, inc: Incumbent | None,
                     runner: Runner | None, trial_id: int | None) -> None:
    """Store the incumbent (as of the state's runs) as an ``incumbent`` event of ``trial_id``
    (the last trial whose result the state includes)."""
    if inc is None:
        return
    t = state.target()
    true = None
    if runner is not None:
        try:
            true = runner.true_value(inc.weights, t.model_params, t.steps, state.objective)
        except Exception:  # noqa: BLE001 - the truth is optional
            true = None
    store.log_event(study, "incumbent", actor="autopilot", trial_id=trial_id, detail={
        "strategy": strategy.name, "weights": inc.weights, "pred_mean": inc.pred_mean, "pred_std": inc.pred_std,
        "source": inc.source, "true": true, "runs": int(state.runs["run_id"].nunique()) if not state.runs.empty else 0})


def _last_finished(state: StudyState) -> int | None:
    ids = [t.trial_id for t in state.trials if t.state in (TrialState.DONE, TrialState.FAILED)]
    return max(ids) if ids else None


def run_trial_in_process(store, trial: Trial, runner: Runner, out_root: Path, *, actor: str = "autopilot") -> TrialState:
    """approved -> queued -> running -> done | failed, with the runner called here."""
    store.transition([trial.trial_id], TrialState.QUEUED, actor=actor)
    store.start_trial(trial.trial_id, actor=actor, job_id=f"inprocess:{trial.trial_id}")
    out_dir = out_root / f"trial-{trial.trial_id}"
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
        store.fail_trial(trial.trial_id, f"{type(exc).__name__}: {exc}", log_tail=traceback.format_exc(), actor=actor)
    return TrialState.FAILED


def autopilot(store, study: str, strategy: str | Strategy, budget: float, *, max_trials: int | None = None,
              batch: int = 1, seed: int = 0, runner: Runner | None = None, max_failures: int = 5,
              progress: Callable[[AutopilotEvent], None] | None = None, runs_dir: Path | None = None,
              executor: str = "local") -> AutopilotResult:
    """Run the propose / approve / run loop until ``budget`` (in the study's cost unit) is
    spent; see the module docstring. ``runner`` overrides the study's runner (tests)."""
    if budget <= 0:
        raise MixplanError(f"budget must be > 0, got {budget}.")
    if batch < 1:
        raise MixplanError(f"batch must be >= 1, got {batch}.")
    strat = get_strategy(strategy, seed=seed) if isinstance(strategy, str) else strategy
    config = store.get_config(study)
    in_process = runner is not None or config.runner.kind in IN_PROCESS_KINDS
    if runner is None and in_process:
        runner = _runner_for(config)
    truth_runner = runner
    tmp = None
    if runs_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mixplan-autopilot-")
        runs_dir = Path(tmp.name)
    res = AutopilotResult(study, strat.name, 0.0, float(budget))
    costs = [c for c in (config.cost(mp, steps=st) for mp, st in config.fidelities()) if c is not None]
    res.cheapest = min(costs) if costs else None
    fails_in_row = 0
    try:
        while True:
            if max_trials is not None and len(res.done) + len(res.failed) >= max_trials:
                res.stopped = f"max trials ({max_trials}) reached"
                break
            state = StudyState.from_store(store, study)
            strat.incumbent_ = None
            q = batch if max_trials is None else min(batch, max_trials - len(res.done) - len(res.failed))
            trials = propose(store, study, strat, q, seed, actor="autopilot", state=state)
            inc = getattr(strat, "incumbent_", None)
            if inc is None:
                inc = strat.incumbent(state)
            record_incumbent(store, study, strat, state, inc, truth_runner, _last_finished(state))
            res.incumbent = inc
            if not trials:
                res.stopped = "the strategy has nothing more to propose"
                break
            # keep the spend within the budget: drop proposals that would exceed it
            keep, remaining = [], budget - res.spent
            for t in trials:
                c = float(t.cost or 0.0)
                if c <= remaining + 1e-9:
                    keep.append(t)
                    remaining -= c
            drop = [t.trial_id for t in trials if t not in keep]
            if drop:
                store.reject(study, drop, actor="autopilot", reason="would exceed the autopilot budget")
            if not keep:
                res.stopped = "budget spent (the next proposal would exceed it)"
                break
            store.approve(study, [t.trial_id for t in keep], actor="autopilot")
            if in_process:
                outcomes = []
                for t in keep:
                    outcomes.append((t, run_trial_in_process(store, t, runner, runs_dir)))
            else:
                from engine.dispatch import run_approved

                run_approved(store, study, executor, trial_ids=[t.trial_id for t in keep], runs_dir=runs_dir)
                outcomes = [(t, store.get_trial(t.trial_id).state) for t in keep]
            for t, st in outcomes:
                final = store.get_trial(t.trial_id)
                res.spent += float(final.cost if final.cost is not None else (t.cost or 0.0))
                if st == TrialState.DONE:
                    res.done.append(t.trial_id)
                    fails_in_row = 0
                else:
                    res.failed.append(t.trial_id)
                    fails_in_row += 1
                if progress is not None:
                    progress(AutopilotEvent(final, st, res.spent, float(budget), len(res.done), len(res.failed), inc,
                                            final.reason or ""))
            if fails_in_row >= max_failures:
                res.stopped = f"{fails_in_row} failures in a row"
                break
            if res.spent >= budget - 1e-9:
                res.stopped = "budget spent"
                break
        # the incumbent after the last results
        state = StudyState.from_store(store, study)
        last = _last_finished(state)
        if last is not None:
            inc = strat.incumbent(state)
            record_incumbent(store, study, strat, state, inc, truth_runner, last)
            res.incumbent = inc
    finally:
        if tmp is not None:
            tmp.cleanup()
    return res
