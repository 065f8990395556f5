"""Each model recovers a known synthetic law (loss surface and optimum) within a stated tolerance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from engine.models import get_model
from engine.models.base import optimize_simplex

W_STAR = np.array([0.5, 0.3, 0.2])
K = 3


def law(W, m, z):
    """1 + 3 (m/1e7)^-0.2 + 2 (z/100)^-0.4 + 2 * |w - w*|^2: optimum w* at every scale."""
    return 1 + 3 * (m / 1e7) ** -0.2 + 2 * (z / 100) ** -0.4 + 2 * ((W - W_STAR) ** 2).sum(-1)


def runs_table(n_runs, sizes=(1e7, 3e7, 1e8), max_steps=1000, every=100, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.ones(K), n_runs)
    rows = []
    for r in range(n_runs):
        m = sizes[r % len(sizes)]
        for z in range(every, max_steps + 1, every):
            rows.append({"run_id": f"r{r}", "model_params": int(m), "steps": z,
                         **{f"w_d{i}": W[r, i] for i in range(K)}, "loss_x": law(W[r], m, z)})
    return pd.DataFrame(rows)


def query(n, m, z, seed=1):
    W = np.random.default_rng(seed).dirichlet(np.ones(K), n)
    q = pd.DataFrame({f"w_d{i}": W[:, i] for i in range(K)})
    q["model_params"], q["steps"] = int(m), z
    return q, law(W, m, z)


def test_mfms_gp_recovers_surface_and_optimum():
    df = runs_table(40)
    gp = get_model("mfms-gp").fit(df, "loss_x")
    q, y = query(200, 1e8, 1000)
    mu, sd = gp.predict(q)
    # held-out mixtures at the largest trained scale: RMSE < 1% of the loss, ranking kept
    assert np.sqrt(np.mean((mu - y) ** 2)) < 0.01 * y.mean()
    assert spearmanr(mu, y)[0] > 0.95 and (sd > 0).all()
    o = gp.optimum(int(1e8), steps=1000)
    assert np.abs(np.array(list(o.weights.values())) - W_STAR).max() < 0.08
    assert abs(o.pred_mean - law(W_STAR, 1e8, 1000)) < 0.02


def test_mfms_gp_botorch_access_and_warm_start():
    df = runs_table(30)
    gp = get_model("mfms-gp").fit(df, "loss_x")
    q, _ = query(5, 3e7, 500)
    X = gp.transform(q)
    assert X.shape == (5, K + 2) and X.dtype == torch.float64
    assert np.allclose(X[:, :K].sum(1).numpy(), 1) and (0 <= X[:, K]).all() and (X[:, K] <= 1).all()
    X.requires_grad_(True)
    post = gp.botorch_model.posterior(X)
    post.mean.sum().backward()
    assert X.grad is not None and torch.isfinite(X.grad).all()
    fixed = gp.scale_columns(int(3e7), steps=500)
    mu, sd = gp.predict(q)
    assert np.allclose(post.mean.detach().squeeze(-1).numpy(), mu)
    with torch.no_grad():
        ref = gp.singletask_gp.posterior(X.detach())
        assert np.allclose(ref.mean.squeeze(-1).numpy(), mu, atol=1e-8)
        assert np.allclose(ref.variance.squeeze(-1).sqrt().numpy(), sd, atol=1e-6)
    # an MC acquisition function over the mixture with the scale columns fixed
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.optim import optimize_acqf

    acq = qLogExpectedImprovement(gp.botorch_model, best_f=-float(mu.min()),
                                  objective=__import__("botorch").acquisition.objective.GenericMCObjective(
                                      lambda Y, X=None: -Y[..., 0]))
    bounds = torch.tensor([[0.0] * K + [0.0, 0.0], [1.0] * K + [1.0, 1.0]], dtype=torch.float64)
    cand, _ = optimize_acqf(acq, bounds, q=2, num_restarts=2, raw_samples=32, fixed_features=fixed,
                            equality_constraints=[(torch.arange(K), torch.ones(K, dtype=torch.float64), 1.0)],
                            options={"maxiter": 20})
    assert cand.shape == (2, K + 2) and torch.allclose(cand[:, :K].sum(-1), torch.ones(2, dtype=torch.float64))
    assert fixed == pytest.approx({K: float(X[0, K]), K + 1: float(X[0, K + 1])})
    # the fidelity slice model (inputs: w only) gives the same posterior at that fidelity
    fm = gp.fidelity_model(int(3e7), steps=500)
    with torch.no_grad():
        full = gp.botorch_model.posterior(X.detach().reshape(1, 5, K + 2))
        sl = fm.posterior(X.detach()[:, :K].reshape(1, 5, K))
    assert torch.allclose(full.mean, sl.mean, atol=1e-8)
    # covariances agree to ~1e-6 of the prior variance (the slice uses an explicit K^-1)
    tol = 1e-6 * gp.outputscale_ * gp.y_std_ ** 2
    assert torch.allclose(full.mvn.covariance_matrix, sl.mvn.covariance_matrix, atol=tol)
    gp2 = get_model("mfms-gp").fit(runs_table(32), "loss_x", warm_start=gp)
    mu2, _ = gp2.predict(q)
    assert np.abs(mu2 - mu).max() < 0.05


def test_mfms_gp_exact_variant_small():
    df = runs_table(12, max_steps=500)
    gp = get_model("mfms-gp-exact").fit(df, "loss_x")
    assert gp.n_train_ == len(df)
    q, y = query(50, 1e8, 500)
    mu, _ = gp.predict(q)
    assert np.sqrt(np.mean((mu - y) ** 2)) < 0.02 * y.mean()


def _mixing_law_table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.ones(K), n)
    t = np.array([-1.5, 0.5, 1.0])
    y = 2.0 + 0.7 * np.exp(W @ t)
    df = pd.DataFrame({f"w_d{i}": W[:, i] for i in range(K)})
    df["run_id"], df["model_params"], df["tokens"], df["loss_x"] = [f"r{i}" for i in range(n)], 10**6, 1e9, y
    return df, (lambda V: 2.0 + 0.7 * np.exp(V @ t))


def test_mixing_law_recovers_exact_law():
    df, f = _mixing_law_table()
    m = get_model("mixing-law").fit(df, "loss_x")
    q, _ = query(100, 1e6, 1)
    q = q.drop(columns=["steps"]).assign(tokens=1e9)
    Wq = q[[f"w_d{i}" for i in range(K)]].to_numpy()
    mu, _ = m.predict(q)
    assert np.abs(mu - f(Wq)).max() < 1e-4
    o = m.optimum(10**6, tokens=1e9, bounds=[(0.0, 0.8), (0.1, 1.0), (0.0, 1.0)])
    w_true = optimize_simplex(f, K, np.array([(0.0, 0.8), (0.1, 1.0), (0.0, 1.0)]))
    assert np.abs(np.array(list(o.weights.values())) - w_true).max() < 1e-3


def test_mixing_law_across_scales():
    df = runs_table(30, every=250)
    m = get_model("mixing-law").fit(df, "loss_x")
    q, y = query(100, 1e8, 1000)
    mu, _ = m.predict(q)
    assert spearmanr(mu, y)[0] > 0.6  # a different law: only the ranking is asked for


def test_regmix_recovers_ranking_and_optimum():
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.ones(K), 400)
    df = pd.DataFrame({f"w_d{i}": W[:, i] for i in range(K)})
    df["run_id"], df["model_params"], df["tokens"] = [f"r{i}" for i in range(400)], 10**6, 1e9
    df["loss_x"] = law(W, 1e7, 1000)
    m = get_model("regmix").fit(df, "loss_x")
    q, y = query(200, 1e6, 1)
    q = q.drop(columns=["steps"]).assign(tokens=1e9)
    mu, sd = m.predict(q)
    assert spearmanr(mu, y)[0] > 0.9 and (sd == 0).all()
    o = m.optimum(10**6, tokens=1e9)
    assert np.abs(np.array(list(o.weights.values())) - W_STAR).max() < 0.1


def test_fixed_mixtures():
    df = runs_table(9, every=500)
    u = get_model("uniform").fit(df, "loss_x")
    o = u.optimum(int(1e8), steps=1000)
    assert list(o.weights.values()) == pytest.approx([1 / 3] * 3)
    n = get_model("natural", domain_sizes={"d0": 6e9, "d1": 3e9, "d2": 1e9}).fit(df, "loss_x")
    o = n.optimum(int(1e8), steps=1000)
    assert list(o.weights.values()) == pytest.approx([0.6, 0.3, 0.1])
    # the scale curve follows the law's trend in size and steps
    assert n.predict(query(1, 1e8, 1000)[0])[0][0] < n.predict(query(1, 1e7, 100)[0])[0][0]
    o = get_model("natural").fit(df, "loss_x").optimum(int(1e8), steps=1000)
    assert sum(o.weights.values()) == pytest.approx(1.0)


def test_mixing_law_mean_loss_fits_one_law_per_domain():
    # each domain's loss is an exponential law of its own; their mean is not one exponential
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.ones(K), 40)
    ta, tb = np.array([-3.0, 1.0, 0.5]), np.array([1.5, -2.5, 0.0])
    fa = lambda V: 2.0 + 0.8 * np.exp(V @ ta)  # noqa: E731
    fb = lambda V: 1.5 + 0.6 * np.exp(V @ tb)  # noqa: E731
    df = pd.DataFrame({f"w_d{i}": W[:, i] for i in range(K)})
    df["run_id"], df["model_params"], df["tokens"] = [f"r{i}" for i in range(40)], 10**6, 1e9
    df["loss_a"], df["loss_b"] = fa(W), fb(W)
    m = get_model("mixing-law").fit(df, "mean_loss")
    assert set(m.laws_) == {"loss_a", "loss_b"}
    q, _ = query(200, 1e6, 1)
    q = q.drop(columns=["steps"]).assign(tokens=1e9)
    Wq = q[[f"w_d{i}" for i in range(K)]].to_numpy()
    truth = lambda V: (fa(V) + fb(V)) / 2  # noqa: E731
    mu, sd = m.predict(q)
    assert np.abs(mu - truth(Wq)).max() < 1e-4 and (sd < 1e-4).all()
    o = m.optimum(10**6, tokens=1e9)
    w_true = optimize_simplex(truth, K)
    assert np.abs(np.array(list(o.weights.values())) - w_true).max() < 1e-3


def test_mixing_law_counts_scale_terms_and_reports_failed_fits():
    from engine.errors import ValidationError

    df = runs_table(5, every=500)  # sizes and lengths vary: K + 2 + 2 = 7 parameters
    with pytest.raises(ValidationError, match="mixing-law with 3 domains has 7 parameters.*only 5 run"):
        get_model("mixing-law").fit(df, "loss_x")
    df = runs_table(8, every=500)
    df["loss_x"] = np.where(np.arange(len(df)) % 2, 1e308, -1e308)  # every start fails
    with pytest.raises(ValidationError, match="could not be fitted: all 12 least-squares starts failed"):
        get_model("mixing-law").fit(df, "loss_x")
