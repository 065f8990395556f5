"""MFMS-GP's parts (engine.models.gp): the pluggable prior mean, the settings, the warm state,
and the shim around BoTorch/GPyTorch's private names."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from engine.errors import ValidationError
from engine.models import get_model
from engine.models.gp.means import GPMean, register_mean

K = 3
W_STAR = np.array([0.5, 0.3, 0.2])


def scale_law(m, z):
    """The scale part of the synthetic surface: E + A / N^alpha + B / D^beta (D in steps)."""
    return 1.0 + 3.0 * (m / 1e7) ** -0.2 + 2.0 * (z / 100) ** -0.4


def surface(W, m, z):
    return scale_law(m, z) + 2.0 * ((W - W_STAR) ** 2).sum(-1)


def table(n_runs=12, sizes=(1e7, 2e7), max_steps=600, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.ones(K), n_runs)
    rows = [{"run_id": f"r{r}", "model_params": int(sizes[r % len(sizes)]), "steps": z,
             **{f"w_d{i}": W[r, i] for i in range(K)}, "loss_x": surface(W[r], sizes[r % len(sizes)], z)}
            for r in range(n_runs) for z in range(100, max_steps + 1, 100)]
    return pd.DataFrame(rows)


class TrueLaw(GPMean):
    """The synthetic surface's own scale law as a fixed prior mean, with its irreducible loss E
    a parameter (so the test can see whether the likelihood moves it)."""

    learnable = False

    def __init__(self, E: float = 1.0) -> None:
        super().__init__()
        self.E = torch.nn.Parameter(torch.tensor(E, dtype=torch.float64))

    def forward(self, X):
        m, z = self.scales(X)
        return self.E + 3.0 * (m / 1e7) ** -0.2 + 2.0 * (z / 100) ** -0.4


def query(m, z, n=64, seed=1):
    W = np.random.default_rng(seed).dirichlet(np.ones(K), n)
    q = pd.DataFrame({f"w_d{i}": W[:, i] for i in range(K)})
    q["model_params"], q["steps"] = int(m), int(z)
    return q, W


def test_a_fixed_law_mean_carries_the_prediction_far_beyond_the_runs():
    """With the surface's true scale law as a fixed prior mean, the GP models only the mixture
    residual: 500x beyond the largest run (1e10 parameters, 30x the steps) it predicts the true
    surface (law + residual) where the default scaling mean, fitted on the same small runs,
    misses by a loss unit; the law's parameter is not moved by the fit."""
    df = table(36)
    law = TrueLaw()
    gp = get_model("mfms-gp", mean=law).fit(df, "loss_x")
    assert float(gp.mean_.E) == 1.0 and float(law.E) == 1.0  # held fixed; the object given is untouched
    q, W = query(2e7, 600)  # inside the data: the residual (the mixture bowl) is learned
    assert np.sqrt(np.mean((gp.predict(q)[0] - surface(W, 2e7, 600)) ** 2)) < 0.02
    q, W = query(1e10, 18_000)
    truth = surface(W, 1e10, 18_000)
    mu, _ = gp.predict(q)
    default, _ = get_model("mfms-gp").fit(df, "loss_x").predict(q)
    assert np.abs(mu - truth).max() < 0.2 and np.abs(default - truth).max() > 0.5
    # with the whole surface as the mean there is no residual: the prediction is the mean
    class Surface(TrueLaw):
        def forward(self, X):
            return super().forward(X) + 2.0 * ((X[..., :K] - torch.as_tensor(W_STAR)) ** 2).sum(-1)

    exact, _ = get_model("mfms-gp", mean=Surface()).fit(df, "loss_x").predict(q)
    assert np.abs(exact - truth).max() < 1e-3


def test_a_learnable_mean_is_moved_by_the_likelihood():
    class LearnedLaw(TrueLaw):
        learnable = True

    gp = get_model("mfms-gp", mean=LearnedLaw(E=0.7)).fit(table(), "loss_x")
    assert float(gp.mean_.E) != pytest.approx(0.7, abs=1e-6)


def test_mean_is_validated_and_registrable():
    with pytest.raises(ValidationError, match="unknown mean 'scalng'. Did you mean 'scaling'"):
        get_model("mfms-gp", mean="scalng")
    with pytest.raises(ValidationError, match="mean must be a name or a GPMean object"):
        get_model("mfms-gp", mean=lambda X: X)
    with pytest.raises(ValidationError, match="unknown setting"):
        get_model("mfms-gp", bins=4)

    @register_mean("test-true-law")
    class Registered(TrueLaw):
        def __init__(self, K: int) -> None:
            super().__init__()

    gp = get_model("mfms-gp", mean="test-true-law").fit(table(6), "loss_x")
    assert isinstance(gp.mean_, Registered)


def test_warm_state_survives_json():
    """A fit's warm state goes through JSON (a database) and warm-starts the same fit."""
    gp = get_model("mfms-gp", preset="search").fit(table(8), "loss_x")
    bigger = table(10)
    direct = get_model("mfms-gp", preset="search", warm_maxiter=0).fit(bigger, "loss_x", warm_start=gp)
    state = json.loads(json.dumps(gp.warm_state()))
    via_json = get_model("mfms-gp", preset="search", warm_maxiter=0).fit(bigger, "loss_x", warm_start=state)
    q, _ = query(2e7, 500)
    assert np.array_equal(direct.predict(q)[0], via_json.predict(q)[0])
    # a warm state of another noise model is not used (a cold fit instead)
    cold = get_model("mfms-gp", warm_maxiter=0).fit(bigger, "loss_x", warm_start=state)
    assert "not re-learned" not in cold.fit_message_


def test_compat_log_ei_is_botorchs_log_expected_improvement():
    """The shim's log EI equals BoTorch's LogExpectedImprovement on the GP's posterior."""
    from botorch.acquisition.analytic import LogExpectedImprovement

    from engine.models.gp.compat import log_ei

    gp = get_model("mfms-gp").fit(table(8), "loss_x")
    X = gp.transform(query(2e7, 400, n=16)[0]).unsqueeze(-2)
    best = float(gp.predict(query(2e7, 600, n=1)[0])[0][0])
    with torch.no_grad():
        post = gp.model_.posterior(X)
        ours = log_ei(post.mean.reshape(-1), post.variance.reshape(-1).sqrt(), best, maximize=False)
        ref = LogExpectedImprovement(gp.model_, best_f=torch.tensor(best, dtype=torch.float64), maximize=False)(X)
    assert torch.allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_compat_likelihood_is_the_gaussian_marginal_likelihood():
    """The shim's Gaussian likelihood with the per-point noise model gives the exact Gaussian
    log marginal likelihood of the data (checked against scipy)."""
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from scipy.stats import multivariate_normal

    from engine.models.gp.compat import gaussian_likelihood
    from engine.models.gp.kernel import make_kernel
    from engine.models.gp.likelihood import ScaledNoise

    rng = np.random.default_rng(0)
    X = torch.as_tensor(np.column_stack([rng.dirichlet(np.ones(K), 12), rng.random((12, 2))]))
    y = torch.as_tensor(rng.normal(size=12))
    counts = torch.as_tensor(rng.integers(1, 9, 12).astype(float))
    noise = ScaledNoise("count", 1e-6)
    noise.set_train_counts(counts)
    from botorch.models import SingleTaskGP
    from gpytorch.means import ZeroMean

    kernel = make_kernel(K)
    lik = gaussian_likelihood(noise)
    model = SingleTaskGP(X, y.unsqueeze(-1), likelihood=lik, covar_module=kernel, mean_module=ZeroMean(),
                         outcome_transform=None)
    mll = ExactMarginalLogLikelihood(lik, model)
    model.train()
    with torch.no_grad():
        got = float(mll(model(X), y, X)) * len(y)
        cov = kernel(X).to_dense() + torch.diag(noise.noise.reshape(()) / counts)
        # each prior once (the likelihood is reached both from the mll and from the model)
        priors = sum(float(p.log_prob(c(m)).sum()) for p, m, c in
                     {id(p): (p, m, c) for _, m, p, c, _ in mll.named_priors()}.values())
    want = multivariate_normal(np.zeros(12), cov.numpy()).logpdf(y.numpy()) + priors
    assert got == pytest.approx(want, rel=1e-9)
