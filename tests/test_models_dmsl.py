"""DMSL (Shukor et al. 2025): recovers a known law, extrapolates it to larger sizes, keeps to a
loss law's bounds, fits a metric, and refuses what it cannot fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import ValidationError
from engine.models import get_model

DOMS = ("web", "code", "books")
E, C, GAMMA, A, ALPHA, B, BETA = 1.8, np.array([2.0, 1.0, 0.6]), np.array([0.5, 0.8, 0.3]), 3.0, 0.4, 2.0, 0.25


def true_loss(W: np.ndarray, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The additive DMSL law with the constants above (N in millions, D in thousands of steps)."""
    S = (np.where(W > 0, W, 0.0) ** GAMMA * C).sum(axis=1)
    return E + 1.0 / S + A / (n / 1e6) ** ALPHA + B / (d / 1e3) ** BETA


def law_table(sizes=(1e6, 3e6, 10e6), n_mix: int = 14, steps=(1000, 2000, 4000, 8000), noise: float = 0.002,
              seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in sizes:
        W = rng.dirichlet(np.ones(len(DOMS)), size=n_mix)
        for i, w in enumerate(W):
            for st in steps:
                y = true_loss(w[None], np.array([s]), np.array([st]))[0] + rng.normal(0, noise)
                rows.append({"run_id": f"{int(s)}-{i}", "model_params": int(s), "steps": st,
                             **{f"w_{d}": w[k] for k, d in enumerate(DOMS)}, "loss_x": y})
    return pd.DataFrame(rows)


def test_dmsl_recovers_the_law_and_extrapolates_to_larger_sizes():
    runs = law_table()
    m = get_model("dmsl").fit(runs, "loss_x")
    W = np.random.default_rng(5).dirichlet(np.ones(3), size=40)
    q = pd.DataFrame(W, columns=[f"w_{d}" for d in DOMS]).assign(model_params=int(40e6), steps=8000)
    mean, std = m.predict(q)
    truth = true_loss(W, np.full(40, 40e6), np.full(40, 8000))
    # 4x beyond the largest size: level within 1%, ranking nearly exact
    assert np.mean(np.abs(mean - truth) / truth) < 0.01
    from scipy.stats import spearmanr

    assert spearmanr(mean, truth)[0] > 0.97
    assert (std > 0).all() and np.isfinite(std).all()
    p = m.params()["loss_x"]
    assert p["alpha"] == pytest.approx(ALPHA, abs=0.15) and p["E"] >= 0


def test_dmsl_std_grows_beyond_the_data_and_mean_loss_averages_domains():
    runs = law_table()
    runs["loss_y"] = runs["loss_x"] * 1.1
    m = get_model("dmsl").fit(runs, "mean_loss")
    assert set(m.laws_) == {"loss_x", "loss_y"}
    w = {f"w_{d}": 1 / 3 for d in DOMS}
    q = pd.DataFrame([w | {"model_params": s, "steps": 8000} for s in (3e6, 30e6, 300e6)])
    mean, std = m.predict(q)
    assert std[0] < std[1] < std[2]
    both = (get_model("dmsl").fit(runs, "loss_x").predict_mean(q) + get_model("dmsl").fit(runs, "loss_y").predict_mean(q)) / 2
    np.testing.assert_allclose(mean, both, rtol=1e-6)


def test_dmsl_joint_form_and_optimum_on_the_simplex():
    runs = law_table()
    m = get_model("dmsl-joint").fit(runs, "loss_x")
    assert "a_mix" in m.params()["loss_x"]
    opt = m.optimum(int(40e6), steps=8000, bounds=[(0.0, 1.0), (0.0, 0.5), (0.0, 1.0)])
    w = np.array(list(opt.weights.values()))
    assert w.sum() == pytest.approx(1.0) and (w >= -1e-9).all() and w[1] <= 0.5 + 1e-9
    # the optimum is at least as good as every training mixture under the law
    truth_opt = true_loss(w[None], np.array([40e6]), np.array([8000]))[0]
    Wtr = runs[[f"w_{d}" for d in DOMS]].to_numpy()
    ok = Wtr[:, 1] <= 0.5
    assert truth_opt <= true_loss(Wtr[ok], np.full(ok.sum(), 40e6), np.full(ok.sum(), 8000)).min() + 0.01


def test_dmsl_single_size_drops_the_size_term_and_fits_a_metric():
    runs = law_table(sizes=(3e6,))
    m = get_model("dmsl").fit(runs, "loss_x")
    assert "A" not in m.params()["loss_x"] and "B" in m.params()["loss_x"]
    runs["metric_acc"] = 1.0 - runs["loss_x"] / 5
    mm = get_model("dmsl").fit(runs, "metric_acc")
    q = runs.iloc[:5]
    np.testing.assert_allclose(mm.predict_mean(q), q["metric_acc"], atol=0.01)


def test_dmsl_refuses_too_few_runs_and_unknown_form():
    runs = law_table(sizes=(1e6,), n_mix=3)
    with pytest.raises(ValidationError, match="at least 9 runs"):
        get_model("dmsl").fit(runs, "loss_x")
    with pytest.raises(ValidationError, match="form"):
        get_model("dmsl", form="multiplicative")


def test_the_gp_with_the_dmsl_mean_extrapolates_like_the_law():
    """mfms-gp-law: the DMSL law fitted on the GP's design is its fixed prior mean, so far beyond
    the runs the GP's prediction is the law's (the kernel's residual fades)."""
    from engine.models.gp.law_mean import DMSLMean

    runs = law_table()
    gp = get_model("mfms-gp-law").fit(runs, "loss_x")
    assert isinstance(gp.settings.mean, str) and gp.settings.mean == "dmsl"
    W = np.random.default_rng(3).dirichlet(np.ones(3), size=20)
    q = pd.DataFrame(W, columns=[f"w_{d}" for d in DOMS]).assign(model_params=int(1e9), steps=8000)
    mean, std = gp.predict(q)
    truth = true_loss(W, np.full(20, 1e9), np.full(20, 8000))
    assert np.mean(np.abs(mean - truth) / truth) < 0.02 and (std > 0).all()
    assert DMSLMean.learnable is False
