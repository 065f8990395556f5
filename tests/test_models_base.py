"""Common interface of the loss models: validation errors, registry, simplex helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import NotFoundError, ValidationError
from engine.models import MODELS, get_model
from engine.models.base import optimize_simplex, project_simplex


def table(n_runs=12, K=3, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.ones(K), n_runs)
    df = pd.DataFrame({f"w_d{i}": W[:, i] for i in range(K)})
    df["run_id"] = [f"r{i}" for i in range(n_runs)]
    df["model_params"] = 1_000_000
    df["tokens"] = 1e9
    df["loss_a"] = 2 + (W ** 2).sum(1)
    df["loss_b"] = 3 - W[:, 0]
    return df


def test_registry_names():
    assert set(MODELS) >= {"mfms-gp", "autoscale", "mixing-law", "regmix", "uniform", "natural"}
    with pytest.raises(NotFoundError, match="mfms-gp"):
        get_model("mfms_gp")


@pytest.mark.parametrize("name", ["mixing-law", "regmix", "uniform", "mfms-gp"])
def test_unknown_objective(name):
    with pytest.raises(ValidationError, match="unknown objective.*loss_a"):
        get_model(name).fit(table(), "loss_zzz")


def test_one_domain_only():
    df = table().drop(columns=["w_d1", "w_d2"])
    df["w_d0"] = 1.0
    with pytest.raises(ValidationError, match="at least two"):
        get_model("uniform").fit(df, "loss_a")


def test_off_simplex():
    df = table()
    df.loc[3, "w_d0"] += 0.3
    with pytest.raises(ValidationError, match="row 4.*off the simplex"):
        get_model("regmix").fit(df, "loss_a")
    df = table()
    df.loc[2, "w_d0"] = -0.1
    with pytest.raises(ValidationError, match="negative"):
        get_model("regmix").fit(df, "loss_a")


def test_nan_objective():
    df = table()
    df.loc[5, "loss_a"] = np.nan
    with pytest.raises(ValidationError, match="NaN.*row 6|row 6.*NaN"):
        get_model("mixing-law").fit(df, "loss_a")


def test_mean_loss_does_not_skip_missing_losses():
    from engine.runtable.schema import objective_values

    df = table()
    df.loc[4, "loss_b"] = np.nan  # the mean of the remaining loss_a alone would be a biased value
    y = objective_values(df, "mean_loss")
    assert np.isnan(y[4]) and np.isfinite(y.drop(index=4)).all()
    assert y[0] == pytest.approx((df.loc[0, "loss_a"] + df.loc[0, "loss_b"]) / 2)
    with pytest.raises(ValidationError, match="row 5: the objective 'mean_loss' is NaN or missing on 1 row"):
        get_model("mixing-law").fit(df, "mean_loss")


def test_fewer_runs_than_parameters():
    with pytest.raises(ValidationError, match="parameters.*only 3 run"):
        get_model("mixing-law").fit(table(n_runs=3), "loss_a")
    with pytest.raises(ValidationError) as e:
        get_model("autoscale").fit(table(n_runs=5), "loss_a")
    assert str(e.value) == ("autoscale with 3 domains needs at least 7 runs (it has 7 parameters); the table holds "
                            "only 5 run(s). Fix: add at least 2 more run(s) with different mixtures, or use a "
                            "simpler model (e.g. 'uniform').")


def test_mean_loss_and_query_errors():
    m = get_model("uniform").fit(table(), "mean_loss")
    q = table().drop(columns=["w_d2"])
    with pytest.raises(ValidationError, match="w_d2"):
        m.predict(q)
    mean, std = m.predict(table())
    assert mean.shape == (12,) and std.shape == (12,)


def test_project_simplex_and_bounds():
    V = np.array([[0.5, 0.5, 0.5], [2.0, -1.0, 0.0]])
    W = project_simplex(V)
    assert np.allclose(W.sum(1), 1) and (W >= 0).all()
    b = np.array([[0.1, 0.5], [0.2, 0.6], [0.0, 1.0]])
    W = project_simplex(V, b)
    assert np.allclose(W.sum(1), 1, atol=1e-9)
    assert (W >= b[:, 0] - 1e-9).all() and (W <= b[:, 1] + 1e-9).all()


def test_an_optimiser_residue_is_snapped_to_its_bound():
    """3e-6 of a domain is not a share anyone chose: it goes to the bound (0, or the study's
    lower bound) and the rest is scaled to sum to 1; real small shares and upper bounds stay."""
    from engine.mixture import MIN_SHARE, snap_to_bounds

    free = np.array([[0.0, 1.0]] * 4)
    w = snap_to_bounds(np.array([0.6, 3.27e-6, 0.37474, 0.0252567]), free)
    assert w[1] == 0.0 and w.sum() == pytest.approx(1.0) and w[0] > 0.6
    assert np.array_equal(snap_to_bounds(np.array([0.6, 2 * MIN_SHARE, 0.3, 0.0998]), free),
                          np.array([0.6, 2 * MIN_SHARE, 0.3, 0.0998]))
    lower = np.array([[0.05, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    w = snap_to_bounds(np.array([0.05002, 0.45, 0.45, 0.04998]), lower)
    assert w[0] == 0.05 and w.sum() == pytest.approx(1.0)
    # a share at its upper bound takes nothing; the freed mass goes where there is room
    capped = np.array([[0.0, 0.5], [0.0, 0.5], [0.0, 1.0], [0.0, 1.0]])
    assert np.allclose(snap_to_bounds(np.array([0.5, 0.4999, 0.00005, 0.00005]), capped), [0.5, 0.5, 0, 0])
    full = np.array([[0.0, 0.5], [0.0, 0.49995], [0.0, 1.0]])
    v = np.array([0.5, 0.49995, 0.00005])
    assert np.array_equal(snap_to_bounds(v, full), v)  # no share has room: unchanged


def test_optimize_simplex_quadratic():
    target = np.array([0.6, 0.3, 0.1])
    w = optimize_simplex(lambda W: ((W - target) ** 2).sum(1), 3)
    assert np.allclose(w, target, atol=1e-4)
    b = np.array([[0.0, 0.4], [0.0, 1.0], [0.0, 1.0]])
    w = optimize_simplex(lambda W: ((W - target) ** 2).sum(1), 3, b)
    assert w[0] == pytest.approx(0.4, abs=1e-4)
