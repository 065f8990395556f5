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
    # the mean-only path and the structured cross kernel give the same numbers
    assert np.allclose(gp.predict_mean(q), mu, rtol=0, atol=1e-9)  # summation order differs
    X = gp.transform(q)
    model = gp.model_
    with torch.no_grad():
        assert torch.allclose(model.cross_kernel(X), model.kernel_matrix(X, model.train_X), rtol=1e-12, atol=1e-15)


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
    # the posterior is GPyTorch's exact GP posterior (same kernel, mean, noise and data) ...
    with torch.no_grad():
        ref = _exact_gp_posterior(gp, X.detach())
        assert np.allclose(ref.mean.numpy(), mu, atol=1e-8)
        assert np.allclose(ref.variance.sqrt().numpy(), sd, atol=1e-6)
        # ... jointly too: a batch of q points has the exact joint covariance
        joint = gp.botorch_model.posterior(X.detach().unsqueeze(0))
        ref_cov = ref.covariance_matrix * 1.0
        assert torch.allclose(joint.mvn.covariance_matrix[0], ref_cov, atol=1e-8 * gp.y_std_ ** 2)
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
    gp2 = get_model("mfms-gp").fit(runs_table(32), "loss_x", warm_start=gp)
    mu2, _ = gp2.predict(q)
    assert np.abs(mu2 - mu).max() < 0.05


def _exact_gp_posterior(gp, X):
    """GPyTorch's own exact-GP posterior at X with the fitted GP's kernel, noise, mean and data
    (objective units): what the direct Cholesky posterior must equal."""
    import gpytorch

    m = gp.model_

    class Exact(gpytorch.models.ExactGP):
        def __init__(self):
            lik = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=m.noise_var)
            super().__init__(m.train_X, (m.train_y - m.y_mean) / m.y_std, lik)

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal((m.prior_mean(x) - m.y_mean) / m.y_std, m.kernel(x))

    e = Exact().eval()
    with gpytorch.settings.fast_pred_var(False), gpytorch.settings.max_cholesky_size(10 ** 6):
        f = e(X)
    return gpytorch.distributions.MultivariateNormal(f.mean * m.y_std + m.y_mean,
                                                     f.covariance_matrix * m.y_std ** 2)


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


def test_mixing_law_screens_its_starts_and_finishes_the_best(monkeypatch):
    """Starts of the wrong sign of k drift without converging; they are cut at a small budget
    and only the best start runs on, which finds the law every start given the full budget
    finds, at a fraction of the evaluations."""
    import engine.models.mixing_law as ml

    df, _ = _mixing_law_table()
    m = get_model("mixing-law").fit(df, "loss_x")
    n_starts = 2 * m.n_starts
    assert m.nfev_ <= n_starts * ml.SCREEN_NFEV + ml.MAX_NFEV
    monkeypatch.setattr(ml, "SCREEN_NFEV", ml.MAX_NFEV)  # every start to the end, as before
    full = get_model("mixing-law").fit(df, "loss_x")
    assert full.nfev_ > 2 * m.nfev_
    np.testing.assert_allclose(m.params_, full.params_, rtol=1e-8)


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


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflowing starts, on purpose
def test_mixing_law_counts_scale_terms_and_reports_failed_fits():
    from engine.errors import ValidationError

    df = runs_table(5, every=500)  # sizes and lengths vary: K + 2 + 2 = 7 parameters
    with pytest.raises(ValidationError, match=r"mixing-law with 3 domains needs at least 7 runs "
                                              r"\(it has 7 parameters\); the table holds only 5 run"):
        get_model("mixing-law").fit(df, "loss_x")
    df = runs_table(8, every=500)
    df["loss_x"] = np.where(np.arange(len(df)) % 2, 1e308, -1e308)  # every start fails
    with pytest.raises(ValidationError, match="could not be fitted: all 12 least-squares starts failed"):
        get_model("mixing-law").fit(df, "loss_x")


def test_bin_effective_counts_match_the_variance_of_the_bin_value():
    """A bin's value averages its checkpoints: its noise variance is sigma^2 / n_eff."""
    from engine.models.mfms_gp import bin_checkpoints

    z = np.arange(100, 6001, 100, dtype=float)  # 60 checkpoints per run
    curve = 2 + 3 * (z / 100) ** -0.3
    reps = 4000  # replicate runs of one curve with iid checkpoint noise, binned in one call
    rng = np.random.default_rng(0)
    run = np.repeat(np.arange(reps), len(z))
    y = np.tile(curve, reps) + rng.normal(0, 0.01, reps * len(z))
    _, _, vals, n_eff = bin_checkpoints(run, np.tile(z, reps), y, np.arange(len(y)), 4)
    vals, n_eff = vals.reshape(reps, 4), n_eff.reshape(reps, 4)[0]
    assert n_eff[-1] == 1.0 and n_eff[0] == 1.0  # the last checkpoint; a bin of < 4: its middle one
    var_ratio = vals.var(axis=0) / 0.01 ** 2  # Monte Carlo variance over one checkpoint's
    assert np.allclose(var_ratio, 1.0 / n_eff, rtol=0.1)
    assert n_eff[2] > 10  # the bin of ~45 checkpoints is known > 10x better than one checkpoint


def test_mfms_gp_noise_scales_with_checkpoint_counts():
    df = runs_table(10, max_steps=3000, every=50)  # 60 checkpoints per run, 8 points per run
    gp = get_model("mfms-gp").fit(df, "loss_x")
    assert gp.counts_.max() > 5 and (gp.counts_ >= 1).all()
    # the solve's covariance is K(X, X) + diag(sigma^2 / n_eff)
    model = gp.model_
    with torch.no_grad():
        Kxx = model.kernel_matrix(model.train_X, model.train_X)
        noise = torch.diagonal(model.L @ model.L.T - Kxx).numpy()
    sigma2 = float(model.noise_model.noise)
    assert np.allclose(noise, sigma2 / gp.counts_ + model.jitter, rtol=1e-6, atol=1e-10)
    # conditioning on a new point (a believer) gives it one checkpoint's noise, sigma^2
    x = gp.transform(query(1, 3e7, 700)[0])
    with torch.no_grad():
        cond = model.condition_on_observations(x, model.posterior(x.unsqueeze(-2)).mean.reshape(-1))
        L2 = cond.L @ cond.L.T - cond.kernel_matrix(cond.train_X, cond.train_X)
    assert float(L2[-1, -1]) == pytest.approx(sigma2 + model.jitter, rel=1e-6)


def test_mfms_gp_keeps_every_run_above_the_run_cap():
    df = runs_table(45, max_steps=1000)  # 45 runs > max_points // 3 = 20: runs used to be dropped
    gp = get_model("mfms-gp", max_points=60, maxiter=5).fit(df, "loss_x")
    assert gp.points_per_run_ == 1 and gp.runs_dropped_ == 0
    assert set(gp._design_runs) == set(df["run_id"]) and gp.n_train_ == 45
    # one point per run: the last checkpoint
    last = df.sort_values("steps").groupby("run_id").tail(1)
    assert np.allclose(np.sort(gp.model_.train_y.numpy()), np.sort(last["loss_x"].to_numpy()))
    gp = get_model("mfms-gp", max_points=60, maxiter=5).fit(runs_table(25, max_steps=1000), "loss_x")
    assert gp.points_per_run_ == 2 and gp.n_train_ == 50
    with pytest.warns(UserWarning, match="70 runs exceed max_points=60; 10 runs"):
        gp = get_model("mfms-gp", max_points=60, maxiter=5).fit(runs_table(70, max_steps=500), "loss_x")
    assert gp.runs_dropped_ == 10 and gp.n_train_ == 60


def test_mfms_gp_fit_failures_are_reported():
    from engine.errors import ValidationError
    from engine.models.mfms_gp import _fit_hypers

    df = runs_table(12, max_steps=500)
    gp = get_model("mfms-gp").fit(df, "loss_x")
    assert gp.fit_ok_ and gp.fit_message_.startswith("ok")
    # a real marginal likelihood that cannot be optimised (NaN lengthscales): restored, flagged
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    X = gp.X_train_[:30]
    m = SingleTaskGP(X, torch.sin(X.sum(-1, keepdim=True)))
    with torch.no_grad():
        m.covar_module.raw_lengthscale.fill_(float("nan"))
    ok, msg = _fit_hypers(ExactMarginalLogLikelihood(m.likelihood, m), 20)
    assert not ok and msg.startswith("hyperparameter fit failed")
    assert torch.isnan(m.covar_module.raw_lengthscale).all()  # the starting values, restored
    # through the model: a warning, fit_ok_ False, then a clear error instead of a broken Cholesky
    bad = get_model("mfms-gp").fit(df, "loss_x")
    bad.hypers_["kernel"] = {k: torch.full_like(v, float("nan")) if "raw_lengthscale" in k else v
                             for k, v in bad.hypers_["kernel"].items()}
    with pytest.warns(UserWarning, match="hyperparameter fit failed"):
        with pytest.raises(ValidationError, match="not positive definite even with a jitter of 1e-2"):
            get_model("mfms-gp").fit(df, "loss_x", warm_start=bad)


def test_mfms_gp_parameter_count_and_few_mixtures():
    from engine.errors import ValidationError

    gp = get_model("mfms-gp")
    assert gp.n_params(3) == 7 and get_model("mfms-gp", mean="linear").n_params(3) == 5
    with pytest.raises(ValidationError, match=r"mfms-gp with 3 domains needs at least 2 runs \(two mixtures"):
        gp.fit(runs_table(1), "loss_x")
    few = gp.fit(runs_table(3), "loss_x")  # 3 mixtures < K + 2: the mean's mixture exponents stay 0
    assert not few.mean_.mixture_terms_ and np.allclose(few.mean_.t[:K].detach().numpy(), 0)
    many = get_model("mfms-gp").fit(runs_table(12), "loss_x")
    assert many.mean_.mixture_terms_ and np.abs(many.mean_.t[:K].detach().numpy()).max() > 0


W_SMALL, W_BIG = np.array([0.6, 0.25, 0.15]), np.array([0.15, 0.3, 0.55])


def w_star(m):
    """An optimum that moves with model size: W_SMALL at 1e7 parameters to W_BIG at 1e9."""
    f = np.clip((np.log10(np.asarray(m, float)) - 7) / 2, 0, 1)[..., None]
    return (1 - f) * W_SMALL + f * W_BIG


def shifting_law(W, m, z):
    return 1 + 3 * (m / 1e7) ** -0.2 + 2 * (z / 100) ** -0.4 + 2 * ((W - w_star(m)) ** 2).sum(-1)


def test_mfms_gp_recovers_a_scale_dependent_optimum_at_a_held_out_size():
    # trained at 1e7, 3e7, 3e8 and 1e9 parameters; judged at 1e8, which no run has
    rng = np.random.default_rng(0)
    sizes = (1e7, 3e7, 3e8, 1e9)
    W = rng.dirichlet(np.ones(K), 48)
    rows = [{"run_id": f"r{r}", "model_params": int(sizes[r % 4]), "steps": z, **{f"w_d{i}": W[r, i] for i in range(K)},
             "loss_x": shifting_law(W[r], sizes[r % 4], z)} for r in range(48) for z in range(100, 1001, 100)]
    gp = get_model("mfms-gp").fit(pd.DataFrame(rows), "loss_x")
    Wq = np.random.default_rng(1).dirichlet(np.ones(K), 200)
    q = pd.DataFrame({f"w_d{i}": Wq[:, i] for i in range(K)})
    q["model_params"], q["steps"] = 100_000_000, 1000
    y = shifting_law(Wq, 1e8, 1000)
    mu, _ = gp.predict(q)
    # surface: RMSE < 1% of the loss and the ranking kept, at the held-out size
    assert np.sqrt(np.mean((mu - y) ** 2)) < 0.01 * y.mean() and spearmanr(mu, y)[0] > 0.95
    # optimum: within 0.08 of w*(1e8), which is 0.25+ away from the optima at the ends
    target = w_star(1e8)
    assert np.abs(W_SMALL - target).max() > 0.2 and np.abs(W_BIG - target).max() > 0.2
    o = gp.optimum(100_000_000, steps=1000)
    assert np.abs(np.array(list(o.weights.values())) - target).max() < 0.08
    assert abs(o.pred_mean - shifting_law(target, 1e8, 1000)) < 0.02


def test_mfms_gp_loss_law_stays_a_loss_far_beyond_its_runs():
    """For a loss, the scaling mean is a loss's law (irreducible loss >= 0, falling with size and
    length): five small runs extrapolated 100x in size and 30x in length give no negative loss,
    and the learned mean keeps those bounds (seen before: -1.3 nats from four runs)."""
    df = runs_table(5, sizes=(1e7, 2e7), max_steps=600, every=100, seed=3)
    gp = get_model("mfms-gp", seed=0).fit(df, "loss_x", domains=[f"d{i}" for i in range(K)])
    q, truth = query(64, 1e9, 18_000)
    mu, sd = gp.predict(q)
    assert (mu > 0).all() and np.isfinite(sd).all()
    assert float(mu.min()) >= 0.5 * float(truth.min())  # floor: no collapse below a plausible loss
    mean, K_ = gp.mean_, len(gp.domains_)
    assert float(mean.k) >= 0 and (mean.t[K_:K_ + 2] <= 0).all()
    assert float(mean.c) * float(mean.scale) + float(mean.loc) >= -1e-9  # the irreducible loss


def test_mfms_gp_warm_start_without_relearning_keeps_the_mean():
    """warm_maxiter = 0 (hyperparameters not re-learned): the previous fit's scaling mean is
    kept, re-expressed in the new standardisation (the same law in objective units), instead
    of being re-fitted by least squares on the new data alone."""
    gp = get_model("mfms-gp").fit(runs_table(20), "loss_x")
    bigger = runs_table(24)
    gp2 = get_model("mfms-gp", warm_maxiter=0).fit(bigger, "loss_x", warm_start=gp)
    assert gp2.y_mean_ != gp.y_mean_  # new data, new standardisation
    X = gp.transform(query(50, 3e8, 2000)[0])  # far beyond the runs: the mean dominates there
    with torch.no_grad():
        m1, m2 = gp.mean_(X), gp2.mean_(X)
    assert torch.allclose(m1, m2, atol=1e-9)
    # re-learning (warm_maxiter > 0) refits the mean as before
    gp3 = get_model("mfms-gp", warm_maxiter=5).fit(bigger, "loss_x", warm_start=gp)
    with torch.no_grad():
        m3 = gp3.mean_(X)
    assert not torch.allclose(m1, m3, atol=1e-6)


def test_mfms_gp_far_noise_grows_below_the_largest_scale():
    """noise="far": every design point is one observation whose noise grows with its distance
    below the largest (size, steps); where the early checkpoints are the noisy ones, the
    learned growth over steps is large and the fit at the largest scale beats the
    count-scaled noise, whose one sigma is set by the early checkpoints."""
    from engine.errors import ValidationError

    df = runs_table(24, max_steps=2000, every=50)
    # noise the kernel cannot follow, large early and fading (std 0.1 at 50 steps, 0.005 at 2,000)
    noise = np.random.default_rng(3).normal(0.0, 1.0, len(df)) * 0.1 * (df["steps"].to_numpy() / 50.0) ** -0.8
    df["loss_x"] += noise
    far = get_model("mfms-gp", noise="far").fit(df, "loss_x")
    count = get_model("mfms-gp").fit(df, "loss_x")
    noise_model = far.model_.noise_model
    assert float(noise_model.far[1]) > 1.0  # the steps term: early checkpoints are the noisy ones
    u = far.X_train_[:, -2:]
    noise_var = far.model_.noise_var.numpy()
    sigma2 = float(noise_model.noise)
    top = (u == u.max(0).values).all(-1).numpy()
    assert top.any() and np.allclose(noise_var[top], sigma2, rtol=1e-9)  # sigma^2 there
    assert noise_var[~top].min() >= sigma2 * (1 - 1e-9) and noise_var.max() > 2 * noise_var[top].min()
    # held-out mixtures at the largest size and length, against the noiseless law
    q, y = query(200, 1e8, 2000)
    err = {name: float(np.sqrt(np.mean((m.predict(q)[0] - y) ** 2))) for name, m in (("far", far), ("count", count))}
    assert err["far"] < err["count"], err
    # a warm start never crosses noise models; an unknown one is refused
    assert get_model("mfms-gp", noise="far").fit(df, "loss_x", warm_start=count).fit_ok_
    with pytest.raises(ValidationError, match="noise model"):
        get_model("mfms-gp", noise="gaussian")
