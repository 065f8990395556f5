"""Autopilot: propose, approve, run, repeat until the cost budget is spent.

Each round asks the strategy for ``batch`` proposals on the study's current state
(:class:`engine.study.Study`: the same ask as ``mixplan propose``, so a fresh process asking
next gets the same answer), stores and approves them (actor ``autopilot``), runs them and
records the results in the store like any other run. ``mixplan bench optimize`` runs this same
loop on an in-memory store. Simulated runners (``mfms-sim``, ``table``, ``synthetic``) run
synchronously in this process;
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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import MixplanError
from engine.records import Trial, TrialState
from engine.runners.base import Runner
from engine.runners.registry import SIMULATED_KINDS
from engine.strategies.base import Incumbent, Strategy, StudyState, get_strategy
from engine.study import Study

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
    (:meth:`engine.study.Study.record_incumbent`)."""
    Study(store, study).record_incumbent(strategy.name, state, inc, runner, trial_id)


def _last_finished(state: StudyState) -> int | None:
    ids = [t.trial_id for t in state.trials if t.state in (TrialState.DONE, TrialState.FAILED)]
    return max(ids) if ids else None


def run_trial_in_process(store, trial: Trial, runner: Runner, out_root: Path, *, actor: str = "autopilot") -> TrialState:
    """approved -> queued -> running -> done | failed, with the runner called here
    (:meth:`engine.study.Study.run`)."""
    return Study(store, trial.study).run(trial, runner, out_root, actor=actor)


@dataclass(frozen=True)
class Round:
    """What the ``on_round`` callback receives each time the strategy has looked at the study:
    the incumbent it judged (and its true value where the runner knows it), the spend before
    this round's runs, the trials it proposed (those kept within the budget first), and how
    long the ask took. The last round has no proposals (the incumbent after the last results)."""

    incumbent: Incumbent | None
    true: float | None
    spent: float
    proposed: tuple[Trial, ...]
    ask_seconds: float
    runs: int


def autopilot(store, study: str, strategy: str | Strategy, budget: float, *, max_trials: int | None = None,
              batch: int = 1, seed: int = 0, runner: Runner | None = None, max_failures: int = 5,
              progress: Callable[[AutopilotEvent], None] | None = None, runs_dir: Path | None = None,
              executor: str = "local", on_round: Callable[[Round], None] | None = None) -> AutopilotResult:
    """Run the propose / approve / run loop until ``budget`` (in the study's cost unit) is
    spent; see the module docstring. ``store``: any :class:`~engine.store.base.StudyStore`;
    ``runner`` overrides the study's runner (tests, benchmarks)."""
    if budget <= 0:
        raise MixplanError(f"budget must be > 0, got {budget}.")
    if batch < 1:
        raise MixplanError(f"batch must be >= 1, got {batch}.")
    strat = get_strategy(strategy, seed=seed) if isinstance(strategy, str) else strategy
    s = Study(store, study)
    config = s.config
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
    recorded_at: int | None = -1  # the last finished trial the recorded incumbent had seen
    try:
        while True:
            if max_trials is not None and len(res.done) + len(res.failed) >= max_trials:
                res.stopped = f"max trials ({max_trials}) reached"
                break
            state = s.state()
            strat.incumbent_ = None
            q = batch if max_trials is None else min(batch, max_trials - len(res.done) - len(res.failed))
            t0 = time.perf_counter()
            trials = s.ask(strat, q, seed=seed, actor="autopilot", state=state)
            ask_s = time.perf_counter() - t0
            inc = strat.incumbent_ if strat.incumbent_ is not None else s.incumbent(strat, state=state)
            recorded_at = _last_finished(state)
            true = s.record_incumbent(strat.name, state, inc, truth_runner, recorded_at)
            res.incumbent = inc
            # keep the spend within the budget: drop proposals that would exceed it
            keep, remaining = [], budget - res.spent
            for t in trials:
                c = float(t.cost or 0.0)
                if c <= remaining + 1e-9:
                    keep.append(t)
                    remaining -= c
            if on_round is not None:
                on_round(Round(inc, true, res.spent, tuple(keep), ask_s, _n_runs(state)))
            if not trials:
                res.stopped = "the strategy has nothing more to propose"
                break
            drop = [t.trial_id for t in trials if t not in keep]
            if drop:
                s.reject(drop, actor="autopilot", reason="would exceed the autopilot budget")
            if not keep:
                res.stopped = "budget spent (the next proposal would exceed it)"
                break
            s.approve([t.trial_id for t in keep], actor="autopilot")
            if in_process:
                outcomes = [(t, s.run(t, runner, runs_dir)) for t in keep]
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
        # the incumbent after the last results (unless the last round already judged them)
        state = s.state()
        last = _last_finished(state)
        if last is not None and last != recorded_at:
            inc = s.incumbent(strat, state=state)
            true = s.record_incumbent(strat.name, state, inc, truth_runner, last)
            res.incumbent = inc
            if on_round is not None:
                on_round(Round(inc, true, res.spent, (), 0.0, _n_runs(state)))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return res


def _n_runs(state: StudyState) -> int:
    return int(state.runs["run_id"].nunique()) if not state.runs.empty else 0
