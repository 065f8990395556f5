"""The strategies' view of the ``mfms-gp`` loss model (engine.models): a thin adapter.

:class:`Surrogate` fits the model on a run table (warm-starting from its previous fit and only
re-learning hyperparameters every ``refit_every`` asks, so a refit at 500 runs costs about a
second; while the study is small enough that its hyperparameters are learned on all of it, a
cold fit competes with the warm one and the better likelihood wins, so the first few runs'
hyperparameters do not stick), and exposes what the acquisition code needs: the BoTorch
model, the encoding of (mixtures, model size, steps) into its inputs, and mean/std arrays. Predictions stored with a
proposal come from :meth:`predict`, i.e. from the model's own ``predict``, so they match it.
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


def _make_model(**kw):
    from engine.models import get_model

    return get_model("mfms-gp", **kw)


class Surrogate:
    """A warm-started ``mfms-gp`` on a study's runs. ``max_points`` caps the GP's design
    (binned checkpoints), ``max_fit_points`` the subset its hyperparameters are learned on;
    ``noise="far"`` (mfms-gp's noise model for finding the optimum at the largest scale: the
    misfit grows below it) by default, as it measured better in ``mixplan bench optimize``."""

    def __init__(self, *, max_points: int = 1000, max_fit_points: int = 300, maxiter: int = 60,
                 warm_maxiter: int = 8, refit_every: int = 3, bins_per_run: int = 8, noise: str = "far",
                 seed: int = 0) -> None:
        self.max_points = max_points
        self.noise = noise
        self.max_fit_points = max_fit_points
        self.maxiter = maxiter
        self.warm_maxiter = warm_maxiter
        self.refit_every = refit_every
        self.bins_per_run = bins_per_run
        self.seed = seed
        self.last_fit_: dict = {}
        self.model_ = None
        self._fits = 0

    def fit(self, runs: pd.DataFrame, objective: str, domains: list[str], tokens_per_step: int | None = None,
            *, key: object = None) -> "Surrogate":
        """Fit on ``runs`` (every checkpoint row). ``key`` identifies the data source: a warm
        start only happens from a fit with the same key (same study and objective)."""
        prev = self.model_ if getattr(self, "_key", None) == key else None
        hyper = prev is None or self._fits % max(1, self.refit_every) == 0
        cols = ["run_id", "model_params", "steps"] + [f"w_{d}" for d in domains]
        extra = [c for c in runs.columns if c.startswith(("loss_", "metric_"))]
        table = runs[cols + extra]

        def fitted(warm_start, warm_maxiter: int):
            m = _make_model(max_points=self.max_points, max_fit_points=self.max_fit_points, maxiter=self.maxiter,
                            warm_maxiter=warm_maxiter, bins_per_run=self.bins_per_run, noise=self.noise,
                            seed=self.seed)
            m.fit(table, objective, domains=list(domains), tokens_per_step=tokens_per_step, warm_start=warm_start)
            return m

        model = fitted(prev, self.warm_maxiter if hyper else 0)
        self.last_fit_ = {"warm": prev is not None, "hyper": hyper}
        if prev is not None and hyper and model.n_train_ <= self.max_fit_points:
            # a small study: warm starts would keep the optimum its first few runs' likelihood
            # chose; a cold fit is cheap at this size, and the better likelihood of the same
            # data wins
            cold = fitted(None, self.warm_maxiter)
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
    def gp(self):
        """The fitted model as a BoTorch ``SingleTaskGP`` (Standardize outcome transform,
        frozen hyperparameters; posterior in objective units): what the acquisition code
        reads its kernel, mean, noise and training data from."""
        m = self.model_
        return m.singletask_gp if hasattr(m, "singletask_gp") else m.botorch_model

    @property
    def domains(self) -> list[str]:
        return list(self.model_.domains_)

    def encode(self, W: np.ndarray, model_params, steps):
        """(n, K) mixtures at sizes / steps -> the GP's (n, K+2) float64 input tensor."""
        return self.model_.encode(np.atleast_2d(W), model_params, np.asarray(steps, dtype=float))

    def fixed_columns(self, model_params: int, steps: int) -> dict[int, float]:
        """{column: value} fixing the size and length inputs (for optimize_acqf)."""
        return self.model_.scale_columns(model_params, steps=steps)

    def query(self, W: np.ndarray, model_params, steps) -> pd.DataFrame:
        W = np.atleast_2d(W)
        df = pd.DataFrame(W, columns=[f"w_{d}" for d in self.domains])
        df["model_params"] = np.broadcast_to(np.asarray(model_params, dtype=np.int64), (len(W),)).copy()
        df["steps"] = np.broadcast_to(np.asarray(steps, dtype=np.int64), (len(W),)).copy()
        return df

    def predict(self, W: np.ndarray, model_params, steps) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std through the model's public ``predict`` (what proposals store)."""
        return self.model_.predict(self.query(W, model_params, steps))

    def means(self, X) -> np.ndarray:
        """Posterior means at encoded inputs, variances skipped (cheap)."""
        import gpytorch
        import torch

        out = []
        with torch.no_grad(), gpytorch.settings.skip_posterior_variances(True):
            for s in range(0, len(X), 8192):
                out.append(self.gp.posterior(X[s:s + 8192].unsqueeze(-2)).mean.reshape(-1).numpy())
        return np.concatenate(out) if out else np.zeros(0)
