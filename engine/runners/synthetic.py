"""``synthetic``: a runner that answers from the landscape that ships with mixplan.

No training and nothing to download: the trial's mixture, size and steps go into
:class:`engine.simulators.landscape.Landscape` (a documented, smooth loss whose optimal mixture
moves with scale), which returns a checkpoint every ``checkpoint_every`` steps up to the trial's
steps, per-domain losses plus optional Gaussian noise (``noise``, std in nats). Cost: the study's
(``cost_per_step x steps`` of the scale, else 6 x params x tokens).

Config::

    [runner]
    kind = "synthetic"
    noise = 0.003              # std of the measurement noise (default 0: noiseless)
    checkpoint_every = 1000    # steps between checkpoints (default: 10 per run)
    landscape_seed = 0         # which landscape (default 0)
    pivot = 1e12               # compute (params x steps) where the optimum is half-way (default 1e12)
    width = 2.0                # e-folds of compute over which it moves (default 2)

The runner knows the truth: :meth:`SyntheticRunner.true_value` is the noiseless objective and
:meth:`SyntheticRunner.true_optimum` the best value at a scale (so trajectories carry regret).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from engine.config import StudyConfig
from engine.errors import ValidationError
from engine.records import Checkpoint, RunResult, Trial
from engine.runners.base import RunFailed, Runner
from engine.simulators.landscape import DEFAULT_PIVOT, DEFAULT_WIDTH, Landscape


class SyntheticRunner(Runner):
    """Simulated runs on a :class:`Landscape` over the study's domains."""

    kind: ClassVar[str] = "synthetic"

    def __init__(self, domains: Sequence[str], *, noise: float = 0.0, checkpoint_every: int | None = None,
                 landscape_seed: int = 0, pivot: float = DEFAULT_PIVOT, width: float = DEFAULT_WIDTH,
                 config: StudyConfig | None = None) -> None:
        self.domains = tuple(domains)
        if not (np.isfinite(noise) and noise >= 0):
            raise ValidationError(f"runner.noise must be a number >= 0, got {noise!r}.")
        if checkpoint_every is not None and int(checkpoint_every) <= 0:
            raise ValidationError(f"runner.checkpoint_every must be > 0, got {checkpoint_every!r}.")
        self.noise = float(noise)
        self.checkpoint_every = None if checkpoint_every is None else int(checkpoint_every)
        self.landscape = Landscape.make(len(self.domains), int(landscape_seed), pivot=float(pivot), width=float(width))
        self.config = config
        self._optima: dict[tuple, tuple[np.ndarray, float]] = {}

    @classmethod
    def from_config(cls, config: StudyConfig) -> SyntheticRunner:
        o = config.runner.options
        every = o.get("checkpoint_every")
        return cls(config.domains, noise=float(o.get("noise", 0.0)),
                   checkpoint_every=None if every is None else int(every),
                   landscape_seed=int(o.get("landscape_seed", 0)), pivot=float(o.get("pivot", DEFAULT_PIVOT)),
                   width=float(o.get("width", DEFAULT_WIDTH)), config=config)

    def _w(self, weights: dict[str, float]) -> np.ndarray:
        return np.array([float(weights.get(d, 0.0)) for d in self.domains])

    def _cost(self, model_params: int, steps: int) -> float | None:
        return None if self.config is None else self.config.cost(model_params, steps=steps)

    def run(self, trial: Trial, out_dir: Path, *, cancel: threading.Event | None = None,
            on_checkpoint: Callable[[Checkpoint], None] | None = None) -> RunResult:
        t0 = time.perf_counter()
        if trial.steps is None:
            raise RunFailed(f"trial {trial.trial_id} gives no steps; the synthetic landscape needs steps.")
        steps = int(trial.steps)
        every = self.checkpoint_every or max(1, steps // 10)
        grid = np.arange(every, steps + 1, every, dtype=float)
        if not len(grid) or grid[-1] != steps:
            grid = np.append(grid, steps)
        L = self.landscape.losses(np.repeat(self._w(trial.weights)[None], len(grid), 0), trial.model_params, grid)
        if self.noise > 0:
            # deterministic per run: the same trial answers the same numbers when run again
            rng = np.random.default_rng([self.landscape.seed, zlib.crc32(trial.run_id.encode()), int(trial.seed or 0)])
            L = L + rng.normal(0.0, self.noise, L.shape)
        cks = []
        for i, st in enumerate(grid):
            if cancel is not None and cancel.is_set():
                raise RunFailed(f"trial {trial.trial_id} cancelled at step {int(st)}.")
            ck = Checkpoint(int(st), None, {d: float(L[i, j]) for j, d in enumerate(self.domains)},
                            cost=self._cost(trial.model_params, int(st)))
            cks.append(ck)
            if on_checkpoint is not None:
                on_checkpoint(ck)
        return RunResult(cks, cost=self._cost(trial.model_params, steps), wall_s=time.perf_counter() - t0,
                         info={"runner": self.kind, "noise": self.noise, "landscape_seed": self.landscape.seed})

    def true_values(self, W: np.ndarray, model_params, steps, objective: str) -> np.ndarray:
        """Noiseless objective for many mixtures (rows in the study's domain order)."""
        return self.landscape.objective(W, model_params, steps, objective, self.domains)

    def true_value(self, weights: dict[str, float], model_params: int, steps: int | None,
                   objective: str) -> float | None:
        if steps is None:
            return None
        return float(self.true_values(self._w(weights)[None], model_params, steps, objective)[0])

    def true_optimum(self, model_params: int, steps: int | None, objective: str) -> tuple[dict[str, float], float] | None:
        if steps is None:
            return None
        bounds = self.config.bounds_array() if self.config is not None else None
        key = (int(model_params), int(steps), objective)
        if key not in self._optima:
            self._optima[key] = self.landscape.optimum(model_params, steps, objective, self.domains, bounds)
        w, v = self._optima[key]
        return {d: float(x) for d, x in zip(self.domains, w)}, v
