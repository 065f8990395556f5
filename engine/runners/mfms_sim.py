"""``mfms-sim``: a runner that answers from the MFMS-BO simulator instead of training.

It evaluates ``benchmarks/mfms-sim/weights.json`` (:mod:`engine.simulators.mfms_sim`, exactly
as FORMAT.md says) at the trial's mixture and model size, returning a checkpoint every
``checkpoint_every`` steps (100, the paper's protocol) up to the trial's steps, with optional
Gaussian noise (``noise``, std in the outputs' units), and the cost from FORMAT.md's table
(relative, 1B for 100 steps = 1). The weights file comes from the runner config
(``[runner] kind = "mfms-sim"  path = "..."``), else ``$MIXPLAN_MFMS_SIM``, else
``../shared/benchmarks/mfms-sim/weights.json``; it is never copied into the project.

The simulator knows the truth: :meth:`MFMSSimRunner.true_value` is the noiseless objective.
:func:`mfms_study_config` builds a study config whose scales and costs match the simulator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from engine.config import StudyConfig, config_from_dict
from engine.errors import ValidationError
from engine.records import Checkpoint, RunResult, Trial
from engine.runners.base import Runner, RunFailed

#: step choices offered per size by :func:`mfms_study_config` (1B/19,500 is the target; the
#: ratios of 3 between them make them Hyperband's rungs too)
DEFAULT_STEPS = (300, 700, 2200, 6500, 19500)


def _sim():
    from engine.simulators import mfms_sim

    return mfms_sim


class MFMSSimRunner(Runner):
    """Simulated training runs. ``domains`` maps the study's domains to the simulator's five
    (by name; they must be exactly wikipedia, stackexchange, github, arxiv, book)."""

    kind: ClassVar[str] = "mfms-sim"

    def __init__(self, path: str | Path | None = None, *, noise: float = 0.0, checkpoint_every: int = 100,
                 seed: int = 0, domains: Sequence[str] | None = None) -> None:
        m = _sim()
        self.path = str(m.find_weights(path))
        self.noise = float(noise)
        self.checkpoint_every = int(checkpoint_every)
        self.seed = int(seed)
        self.domains = tuple(domains) if domains is not None else tuple(m.DOMAINS)
        if set(self.domains) != set(m.DOMAINS):
            raise ValidationError(f"the mfms-sim runner needs the domains {list(m.DOMAINS)}, got {list(self.domains)}.",
                                  fix="create the study with those five domains (see mfms_study_config).")
        self._sim = None
        self._n = 0

    @classmethod
    def from_config(cls, config: StudyConfig, *, seed: int | None = None) -> "MFMSSimRunner":
        o = config.runner.options
        return cls(o.get("path"), noise=float(o.get("noise", 0.0)), checkpoint_every=int(o.get("checkpoint_every", 100)),
                   seed=int(config.seed if seed is None else seed), domains=config.domains)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_sim"] = None
        return d

    @property
    def sim(self):
        if self._sim is None:
            self._sim = _sim().MFMSSimulator.load(self.path)
        return self._sim

    def _w(self, weights: dict[str, float]) -> np.ndarray:
        m = _sim()
        return np.array([float(weights.get(d, 0.0)) for d in m.DOMAINS])

    def outputs(self, W: np.ndarray, model_params, steps) -> dict[str, np.ndarray]:
        """Noiseless simulator outputs {column: values} for mixtures W (simulator domain order)."""
        m = _sim()
        out = self.sim.evaluate(W, m.size_in_m(model_params), steps)
        return {name: out[:, j] for j, name in enumerate(m.OUTPUTS)}

    def run(self, trial: Trial, out_dir: Path, *, cancel: threading.Event | None = None,
            on_checkpoint: Callable[[Checkpoint], None] | None = None) -> RunResult:
        t0 = time.perf_counter()
        m = _sim()
        steps = trial.steps
        if steps is None:
            raise RunFailed(f"trial {trial.trial_id} gives no steps; the simulator needs steps.")
        if not (m.MIN_STEPS <= steps <= m.MAX_STEPS):
            raise RunFailed(f"steps {steps} outside the simulator's range {m.MIN_STEPS}..{m.MAX_STEPS}.")
        try:
            size = m.size_in_m(trial.model_params)
        except ValidationError as exc:
            raise RunFailed(str(exc)) from exc
        every = self.checkpoint_every
        grid = np.arange(every, steps + 1e-9, every) if every else np.array([], dtype=float)
        if not len(grid) or grid[-1] != steps:
            grid = np.append(grid, steps)
        W = np.repeat(self._w(trial.weights)[None], len(grid), axis=0)
        self._n += 1
        rng = np.random.default_rng([self.seed, int(trial.trial_id), self._n])
        out = self.sim.evaluate(W, size, grid, noise=self.noise, rng=rng)
        per = m.COST_PER_100_STEPS[int(size)] / 100.0
        cks = []
        for i, st in enumerate(grid):
            losses = {name[5:]: float(out[i, j]) for j, name in enumerate(m.OUTPUTS) if name.startswith("loss_")}
            metrics = {name[7:]: float(out[i, j]) for j, name in enumerate(m.OUTPUTS) if name.startswith("metric_")}
            ck = Checkpoint(int(st), None, losses, metrics, cost=per * float(st))
            cks.append(ck)
            if cancel is not None and cancel.is_set():
                raise RunFailed(f"trial {trial.trial_id} cancelled at step {int(st)}.")
            if on_checkpoint is not None:
                on_checkpoint(ck)
        return RunResult(cks, cost=per * float(steps), wall_s=time.perf_counter() - t0,
                         info={"runner": self.kind, "noise": self.noise})

    def true_value(self, weights: dict[str, float], model_params: int, steps: int | None, objective: str) -> float | None:
        if steps is None:
            return None
        return float(self.true_values(self._w(weights)[None], model_params, steps, objective)[0])

    def true_values(self, W: np.ndarray, model_params, steps, objective: str) -> np.ndarray:
        """Noiseless objective for many mixtures (simulator domain order)."""
        out = self.outputs(np.atleast_2d(W), model_params, steps)
        if objective == "mean_loss":
            return np.mean([v for k, v in out.items() if k.startswith("loss_")], axis=0)
        if objective not in out:
            raise ValidationError(f"the simulator has no output '{objective}'.",
                                  fix=f"use one of {[k for k in out if k != 'train_ce']} or mean_loss.")
        return out[objective]


def mfms_study_config(name: str = "mfms-sim", objective: str = "loss_stackexchange", *,
                      steps: Sequence[int] = DEFAULT_STEPS, sizes_m: Sequence[int] | None = None,
                      path: str | None = None, noise: float = 0.0, seed: int = 0,
                      bounds: dict[str, list[float]] | None = None) -> StudyConfig:
    """A study config matching the simulator: its five domains, sizes, FORMAT.md costs, target
    1B / 19,500 steps, runner ``mfms-sim``."""
    m = _sim()
    sizes = tuple(sizes_m or m.SIZES_M)
    scales = [{"model_params": int(s * 1_000_000), "steps": sorted(int(x) for x in steps),
               "cost_per_step": m.COST_PER_100_STEPS[int(s)] / 100.0} for s in sizes]
    raw = {
        "name": name, "domains": list(m.DOMAINS),
        "eval_domains": [o[5:] for o in m.OUTPUTS if o.startswith("loss_")],
        "objective": objective, "scales": scales, "tokens_per_step": 1_048_576,
        "target": {"model_params": int(max(sizes) * 1_000_000), "steps": int(max(steps))},
        "runner": {"kind": "mfms-sim", "noise": noise, **({"path": path} if path else {})}, "seed": seed,
    }
    if bounds:
        raw["bounds"] = bounds
    return config_from_dict(raw)
