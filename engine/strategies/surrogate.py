"""The strategies' view of the ``mfms-gp`` loss model (engine.models): a thin adapter.

:class:`Surrogate` fits the model with the ``search`` settings (:mod:`engine.models.gp.settings`)
on a run table, warm-starting from the previous fit's hyperparameters and re-learning them only
every ``refit_every`` new runs, so a refit at 500 runs costs about a second; while the study is
small enough that its hyperparameters are learned on all of it, a cold fit competes with the
warm one and the better likelihood wins, so the first few runs' hyperparameters do not stick.
It exposes what the searches need: the fitted GP as a BoTorch model (:attr:`Surrogate.model`,
whose ``posterior`` every score comes from), the encoding of (mixtures, model size, steps) into
its inputs, and the model's own ``predict`` (what proposals store).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import pandas as pd


@contextmanager
def torch_threads(n: int | None = 1):
    """Run torch on ``n`` threads inside the block (restored after). On these 2-core machines
    two-thread torch collapses several-fold whenever the other core is busy; one thread is
    both faster and steadier for the small matrices of proposal-time GPs."""
    import torch

    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Surrogate:
    """A warm-started ``mfms-gp`` on a study's runs (module docstring). ``settings``: a
    :class:`~engine.models.gp.settings.GPSettings` (default the ``search`` preset); keyword
    overrides replace single fields (``max_points=``, ``refit_every=``, ...)."""

    def __init__(self, *, settings=None, **overrides) -> None:
        from engine.models.gp.settings import SEARCH

        self.settings = (settings if settings is not None else SEARCH).with_(**overrides)
        self.last_fit_: dict = {}
        self.model_ = None
        self._fits = 0

    def _new_model(self, warm_maxiter: int):
        from engine.models.mfms_gp import MFMSGP

        return MFMSGP(settings=self.settings.with_(warm_maxiter=warm_maxiter))

    def fit(self, runs: pd.DataFrame, objective: str, domains: list[str], tokens_per_step: int | None = None,
            *, key: object = None) -> "Surrogate":
        """Fit on ``runs`` (every checkpoint row). ``key`` identifies the data source: a warm
        start only happens from a fit with the same key (same study and objective)."""
        prev = self.model_ if getattr(self, "_key", None) == key else None
        hyper = prev is None or self._fits % max(1, self.settings.refit_every) == 0
        cols = ["run_id", "model_params", "steps"] + [f"w_{d}" for d in domains]
        extra = [c for c in runs.columns if c.startswith(("loss_", "metric_"))]
        table = runs[cols + extra]

        def fitted(warm_start, warm_maxiter: int):
            m = self._new_model(warm_maxiter)
            m.fit(table, objective, domains=list(domains), tokens_per_step=tokens_per_step, warm_start=warm_start)
            return m

        model = fitted(prev, self.settings.warm_maxiter if hyper else 0)
        self.last_fit_ = {"warm": prev is not None, "hyper": hyper}
        if prev is not None and hyper and model.n_train_ <= self.settings.max_fit_points:
            # a small study: warm starts would keep the optimum its first few runs' likelihood
            # chose; a cold fit is cheap at this size, and the better likelihood of the same
            # data wins
            cold = fitted(None, self.settings.warm_maxiter)
            w_nll, c_nll = float(model.neg_mll_), float(cold.neg_mll_)
            better = math.isfinite(c_nll) and (not math.isfinite(w_nll) or c_nll < w_nll)
            self.last_fit_.update(warm_neg_mll=w_nll, cold_neg_mll=c_nll, chosen="cold" if better else "warm")
            if better:
                model = cold
        self.model_ = model
        self._key = key
        self._fits += 1
        return self

    # ---- access --------------------------------------------------------------------------
    @property
    def model(self):
        """The fitted GP as a BoTorch ``Model`` (posterior in objective units)."""
        return self.model_.model_

    @property
    def domains(self) -> list[str]:
        return list(self.model_.domains_)

    def encode(self, W: np.ndarray, model_params, steps):
        """(n, K) mixtures at sizes / steps -> the GP's (n, K+2) float64 input tensor."""
        return self.model_.encode(np.atleast_2d(W), model_params, np.asarray(steps, dtype=float))

    def fixed_columns(self, model_params: int, steps: int) -> dict[int, float]:
        """{column: value} fixing the size and length inputs (for optimize_acqf)."""
        return self.model_.scale_columns(model_params, steps=steps)

    def target_columns(self, fidelity) -> tuple[float, float]:
        """The (u_m, u_z) of a fidelity (model size, steps)."""
        K = len(self.domains)
        fixed = self.fixed_columns(fidelity.model_params, fidelity.steps)
        return fixed[K], fixed[K + 1]

    def query(self, W: np.ndarray, model_params, steps) -> pd.DataFrame:
        W = np.atleast_2d(W)
        df = pd.DataFrame(W, columns=[f"w_{d}" for d in self.domains])
        df["model_params"] = np.broadcast_to(np.asarray(model_params, dtype=np.int64), (len(W),)).copy()
        df["steps"] = np.broadcast_to(np.asarray(steps, dtype=np.int64), (len(W),)).copy()
        return df

    def predict(self, W: np.ndarray, model_params, steps) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std through the model's public ``predict`` (what proposals store)."""
        return self.model_.predict(self.query(W, model_params, steps))
