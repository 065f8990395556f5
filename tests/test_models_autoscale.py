"""AutoScale: the DDO allocation check, the s = 2 identity, recovery of a known law."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import ValidationError
from engine.models.autoscale import AutoScale, ddo_loss, ddo_optimum, extrapolate

# The paper's fitted constants (GPT-2 Large; CC, GitHub, Books, Wiki, C4, StackExchange, ArXiv)
A = np.array([2.66587, 6.61618, 2.67360, 2.46311, 2.51838, 2.88996, 3.31917])
GAMMA = np.array([1.24920, 1.43600, 1.53626, 1.82873, 1.18587, 1.95363, 1.92667])
EXPECTED = np.array([1.6248, 0.2, 1.2742, 1.1798, 1.8519, 0.6372, 0.2322])


def test_ddo_check_paper_constants():
    # the form is sum_i (N_i + N0_i)^-gamma_i with N0 = a (units of the uniform per-domain amount)
    x = ddo_optimum(A, GAMMA, 7.0, 0.2)
    assert x.sum() == pytest.approx(7.0, abs=1e-9)
    assert np.abs(x - EXPECTED).max() < 1e-3
    # and it is the minimum: random feasible allocations do no better
    rng = np.random.default_rng(0)
    R = 0.2 + rng.dirichlet(np.ones(7), 2000) * (7 - 1.4)
    assert ddo_loss(x, A, GAMMA) <= ddo_loss(R, A, GAMMA).min() + 1e-12


def test_extrapolation_identity_s2():
    rng = np.random.default_rng(1)
    N1 = rng.uniform(0.5, 2.0, 6)
    N2 = N1 * rng.uniform(0.8, 3.0, 6)
    N3 = N2 * N2 / N1  # the paper's N(3) = N(2) N(1)^-1 N(2)
    Ns, s = extrapolate(N1, N2, N3.sum())
    assert s == pytest.approx(2.0, abs=1e-9)
    assert np.allclose(Ns, N3, rtol=1e-9)
    Nb, sb = extrapolate(N1, N2, N2.sum())
    assert sb == pytest.approx(1.0, abs=1e-9)


K = 3
N0_TRUE = np.array([0.5, 1.5, 1.0])
G_TRUE = np.array([0.8, 1.2, 0.5])
C_TRUE = 2.0


def _law(T, budget):
    return ddo_loss(T / (budget / K), N0_TRUE, G_TRUE, C_TRUE)


def ddo_design(budgets=(1e8, 2e8)):
    rows = []
    for B in budgets:
        base = np.full(K, B / K)
        runs = [base]
        for i in range(K):
            for f in (0.2, 3.0):
                t = base.copy()
                t[i] *= f
                runs.append(t)
        for j, t in enumerate(runs):
            rows.append({"run_id": f"{B:g}-{j}", "model_params": 10**6, "tokens": t.sum(),
                         **{f"w_d{i}": t[i] / t.sum() for i in range(K)}, "loss_x": _law(t[None], B)[0]})
    return pd.DataFrame(rows)


def test_recovers_known_law_and_optimum():
    df = ddo_design()
    m = AutoScale(n_bootstrap=5).fit(df, "loss_x")
    assert [law.design for law in m.laws_] == ["perturbation", "perturbation"]
    # loss surface inside the fitted range (0.2 .. 3 units per domain): within 2e-3 (three points
    # per domain pin the curve there; a nearby (N0, gamma) pair can pass through the same points)
    rng = np.random.default_rng(0)
    X = rng.uniform(0.2, 3.0, (200, K))
    law = m.laws_[0]
    assert np.abs(ddo_loss(X, law.N0, law.gamma, law.c) - ddo_loss(X, N0_TRUE, G_TRUE, C_TRUE)).max() < 2e-3
    mu, _ = m.predict(df)
    assert np.abs(mu - df["loss_x"]).max() < 1e-8
    # stage 1 optimum at the budget and stage 2 at 4x the larger budget (s = 3)
    x_true = ddo_optimum(N0_TRUE, G_TRUE, K, 0.2)
    o = m.optimum(10**6, tokens=1e8)
    assert np.allclose(list(o.weights.values()), x_true / K, atol=0.01)
    o = m.optimum(10**6, tokens=8e8)
    assert o.info["s"] == pytest.approx(3.0, abs=1e-6)
    assert np.allclose(list(o.weights.values()), x_true / K, atol=0.01)  # same law in units: same mixture
    assert o.pred_std >= 0 and set(o.info["weights_std"]) == {"d0", "d1", "d2"}


def test_least_squares_fallback_on_random_runs():
    rng = np.random.default_rng(3)
    B = 3e8
    W = rng.dirichlet(np.ones(K) * 3, 30)
    T = W * B
    df = pd.DataFrame({"run_id": [f"r{i}" for i in range(30)], "model_params": 10**6, "tokens": B,
                       **{f"w_d{i}": W[:, i] for i in range(K)}, "loss_x": _law(T, B)})
    m = AutoScale(n_bootstrap=3).fit(df, "loss_x")
    assert m.laws_[0].design == "least-squares" and m.laws_[0].rmse < 1e-3
    x_true = ddo_optimum(N0_TRUE, G_TRUE, K, 0.2)
    o = m.optimum(10**6, tokens=B)
    assert np.allclose(list(o.weights.values()), x_true / K, atol=0.02)


def test_extrapolation_continues_the_path_forward():
    # the root nearest [0, 1] was s = -1.30 (mixture [0.012, 0.988]): the path walked backwards
    N1, N2 = np.array([0.5, 0.5]), np.array([1.5, 0.05])
    Ns, s = extrapolate(N1, N2, 10.0)
    assert s > 1 and Ns.sum() == pytest.approx(10.0, rel=1e-10)
    assert Ns[0] / Ns.sum() > 0.999
    # below the smaller budget: the largest root < 0; in between: the root in [0, 1]
    Nb, sb = extrapolate(np.array([0.5, 1.0]), np.array([1.0, 1.5]), 1.0)
    assert sb < 0 and Nb.sum() == pytest.approx(1.0, rel=1e-10)
    with pytest.raises(ValidationError, match="no s gives a total"):  # this path never shrinks below 0.94
        extrapolate(N1, N2, 0.8)
    Nm, sm = extrapolate(N1, N2, 1.2)
    assert 0 <= sm <= 1 and Nm.sum() == pytest.approx(1.2, rel=1e-10)


def test_ddo_optimum_large_gamma_and_total():
    # log lam ~ -97 here: the old fixed bracket [-60, 60] returned a near-equal spread
    N0, g, total = np.ones(3), np.array([15.0, 18.0, 19.0]), 1000.0
    x = ddo_optimum(N0, g, total)
    assert x.sum() == pytest.approx(total, rel=1e-12) and (x > 0).all()
    marginal = g * (x + N0) ** -(g + 1)  # KKT: equal marginal gains off the bounds
    assert np.allclose(marginal, marginal[0], rtol=1e-6)
    # and it beats nearby feasible allocations
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = rng.normal(0, 1.0, 3)
        d -= d.mean()
        assert ddo_loss(x, N0, g) <= ddo_loss(x + d, N0, g) * (1 + 1e-12)
    # with a lower bound that binds, the bound holds and the free marginals agree
    x = ddo_optimum(N0, g, total, lower=np.array([0.0, 0.0, 400.0]))
    assert x[2] == pytest.approx(400.0) and x.sum() == pytest.approx(total)
    m = g * (x + N0) ** -(g + 1)
    assert m[0] == pytest.approx(m[1], rel=1e-6) and m[2] <= m[0] * (1 + 1e-9)


def _partial_design(factors_last):
    """A DDO design at 1e8 whose last domain has only ``factors_last`` perturbations, plus
    replicates of the base (so the group still has 2K + 1 runs)."""
    B = 1e8
    base = np.full(K, B / K)
    runs = [base] * (3 - len(factors_last))
    for i in range(K):
        for f in ((0.2, 3.0) if i < K - 1 else factors_last):
            t = base.copy()
            t[i] *= f
            runs.append(t)
    return pd.DataFrame([{"run_id": f"r{j}", "model_params": 10**6, "tokens": t.sum(),
                          **{f"w_d{i}": t[i] / t.sum() for i in range(K)}, "loss_x": _law(t[None], B)[0]}
                         for j, t in enumerate(runs)])


def test_missing_perturbation_is_fitted_not_defaulted():
    # d2 has one perturbation: it used to keep (N0, gamma) = (1, 1) with rmse 0, off its own run
    df = _partial_design((3.0,))
    assert len(df) == 2 * K + 1
    with pytest.warns(UserWarning, match="d2 had one perturbation"):
        m = AutoScale(n_bootstrap=3).fit(df, "loss_x")
    assert m.laws_[0].design == "least-squares" and m.notes_
    mu, _ = m.predict(df)
    assert np.abs(mu - df["loss_x"]).max() < 1e-6  # every run of the design, the d2 x3 one included
    # no perturbation of d2 at all: a clear error, not a silent default
    with pytest.raises(ValidationError, match="no perturbation of d2") as e:
        AutoScale(n_bootstrap=3).fit(_partial_design(()), "loss_x")
    assert "x0.2 and x3 runs of d2" in str(e.value)


def test_metric_objective_is_maximised():
    df = ddo_design()
    df["metric_x"] = 10.0 - df["loss_x"]  # higher is better, rises with tokens
    m = AutoScale(n_bootstrap=3).fit(df, "metric_x")
    mu, sd = m.predict(df)
    assert np.abs(mu - df["metric_x"]).max() < 1e-8 and (sd >= 0).all()
    o = m.optimum(10**6, tokens=8e8)  # maximize: the default for metric_*
    ref = AutoScale(n_bootstrap=3).fit(df, "loss_x").optimum(10**6, tokens=8e8)
    assert np.allclose(list(o.weights.values()), list(ref.weights.values()), atol=1e-9)
    assert o.pred_mean == pytest.approx(10.0 - ref.pred_mean, abs=1e-9)
    with pytest.raises(ValidationError, match="can only maximize 'metric_x'"):
        m.optimum(10**6, tokens=8e8, direction="minimize")


def test_prediction_uses_the_budget_of_the_total_tokens():
    # a skewed mixture trained on 2e8 tokens: K x median(w) x tokens called it a 6e7-token run
    df = ddo_design((1e8, 2e8))
    m = AutoScale(n_bootstrap=0).fit(df, "loss_x")
    w = np.array([0.8, 0.1, 0.1])
    q = pd.DataFrame({**{f"w_d{i}": [w[i]] for i in range(K)}, "model_params": [10**6], "tokens": [2e8]})
    mu, _ = m.predict(q)
    law2 = [law for law in m.laws_ if law.budget == pytest.approx(2e8)][0]
    assert mu[0] == pytest.approx(float(law2.loss(w[None] * 2e8)[0]), abs=1e-12)
    assert mu[0] == pytest.approx(float(_law(w[None] * 2e8, 2e8)[0]), abs=2e-3)
    # while a design run is predicted by its own budget's law (the x3 perturbation at 1e8 holds
    # 1.67e8 tokens, nearer 2e8 in log)
    mu_d, _ = m.predict(df)
    assert np.abs(mu_d - df["loss_x"]).max() < 1e-8


def test_stage2_follows_a_mixture_that_shifts_across_budgets():
    # each budget has its own law (in its own units), so the optimal mixture moves with budget;
    # stage 2 must continue that path: N_i(s) = N_i(1) (N_i(2) / N_i(1))^s at the target total
    laws = {1e8: (np.array([0.5, 1.5, 1.0]), np.array([0.8, 1.2, 0.5])),
            3e8: (np.array([0.3, 2.0, 0.6]), np.array([1.1, 0.9, 0.6]))}
    rows = []
    for B, (N0, g) in laws.items():
        base = np.full(K, B / K)
        runs = [base] + [base * np.where(np.arange(K) == i, f, 1.0) for i in range(K) for f in (0.2, 3.0)]
        for j, t in enumerate(runs):
            rows.append({"run_id": f"{B:g}-{j}", "model_params": 10**6, "tokens": t.sum(),
                         **{f"w_d{i}": t[i] / t.sum() for i in range(K)},
                         "loss_x": float(ddo_loss(t / (B / K), N0, g, 2.0))})
    m = AutoScale(n_bootstrap=3).fit(pd.DataFrame(rows), "loss_x")
    # the true DDO optima (tokens) at both budgets, and the path through them, solved here by brentq
    from scipy.optimize import brentq

    N1, N2 = (ddo_optimum(*laws[B], K, 0.2) * B / K for B in (1e8, 3e8))
    target = 2.7e9
    s = brentq(lambda s: np.sum(N1 * (N2 / N1) ** s) - target, 1.0, 20.0)
    expect = N1 * (N2 / N1) ** s
    o = m.optimum(10**6, tokens=target)
    w = np.array(list(o.weights.values()))
    assert o.info["stage"] == 2 and o.info["s"] == pytest.approx(s, rel=0.01)
    assert np.abs(w - expect / target).max() < 0.01
    # the mixture really moves: the target's differs from both budgets' optima
    assert np.abs(w - N1 / N1.sum()).max() > 0.05 and np.abs(w - N2 / N2.sum()).max() > 0.05
