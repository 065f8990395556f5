"""A synthetic study for strategy tests: a known analytic loss surface and its runner."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from engine.config import config_from_dict
from engine.records import Checkpoint, RunResult, Trial
from engine.runners.base import Runner, RunFailed

DOMAINS = ["web", "code", "books"]
W_STAR = np.array([0.5, 0.3, 0.2])


def surface(w, model_params, steps) -> float:
    """Loss: a scale term in size and steps plus a quadratic bowl around W_STAR that shifts a
    little with size (so the optimum depends on scale, as in real data)."""
    w = np.asarray(w, float)
    m = float(model_params) / 1e6
    shift = np.array([0.05, -0.05, 0.0]) * np.log10(m)
    return float(2.0 + 1.5 * m ** -0.3 + 3.0 * (steps / 100.0) ** -0.5 + 2.0 * np.sum((w - W_STAR - shift) ** 2))


def study_config(name: str = "synth", bounds: dict | None = None):
    raw = {
        "name": name, "domains": DOMAINS, "objective": "loss_web", "tokens_per_step": 1000,
        "scales": [{"model_params": 1_000_000, "steps": [100, 300, 900], "cost_per_step": 0.001},
                   {"model_params": 10_000_000, "steps": [300, 900], "cost_per_step": 0.01}],
        "target": {"model_params": 10_000_000, "steps": 900},
    }
    if bounds:
        raw["bounds"] = bounds
    return config_from_dict(raw)


class SynthRunner(Runner):
    """Checkpoints every 100 steps of the analytic surface; ``fail_every`` makes every n-th
    run fail (to test that failures do not stop a loop)."""

    kind = "synth"

    def __init__(self, fail_every: int | None = None) -> None:
        self.fail_every = fail_every
        self.calls = 0

    def run(self, trial: Trial, out_dir: Path, *, cancel: threading.Event | None = None,
            on_checkpoint=None) -> RunResult:
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RunFailed("synthetic failure", log_tail="boom")
        w = [trial.weights[d] for d in DOMAINS]
        cks = []
        for st in range(100, int(trial.steps) + 1, 100):
            v = surface(w, trial.model_params, st)
            cks.append(Checkpoint(st, None, {"web": v, "code": v + 0.1}))
        return RunResult(cks)

    def true_value(self, weights, model_params, steps, objective):
        return surface([weights[d] for d in DOMAINS], model_params, steps)


def seed_runs(store, study: str, n: int = 6, seed: int = 0, fidelity: tuple[int, int] | None = None) -> None:
    """n random runs at random fidelities (or all at ``fidelity``), stored as done."""
    from engine.autopilot import run_trial_in_process
    from engine.records import Proposal

    cfg = store.get_config(study)
    rng = np.random.default_rng(seed)
    fids = cfg.fidelities()
    props = []
    for i in range(n):
        w = rng.dirichlet(np.ones(len(DOMAINS)))
        lo = np.array([b[0] for b in cfg.bounds_array()])
        w = lo + (1 - lo.sum()) * w
        mp, st = fidelity or fids[int(rng.integers(len(fids)))]
        props.append(Proposal(dict(zip(DOMAINS, w)), mp, steps=st, strategy="manual"))
    trials = store.add_trials(study, props, state="approved")
    runner = SynthRunner()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for t in trials:
            run_trial_in_process(store, t, runner, Path(d))
