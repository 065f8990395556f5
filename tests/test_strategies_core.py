"""Every strategy proposes valid trials; batches differ; stored predictions match the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.store import Store
from engine.strategies import StudyState, get_strategy, propose, strategy_names
from tests.test_strategies_helpers import DOMAINS, seed_runs, study_config

BOUNDS = {"web": [0.1, 0.8], "default": [0.0, 0.9]}
ALL = ["mfms-bo", "autoscale", "random", "hyperband", "mf-bo", "bo", "mf-kg"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(tmp_path_factory.mktemp("strat") / "runs.duckdb")
    s.create_study(study_config("synth", bounds=BOUNDS))
    seed_runs(s, "synth", n=8)
    seed_runs(s, "synth", n=4, seed=1, fidelity=(10_000_000, 900))  # a few at the target (bo, mf-bo)
    return s


def test_registry_names():
    assert set(ALL) <= set(strategy_names())


def _valid(state: StudyState, p, *, on_grid: bool = True) -> None:
    w = np.array([p.weights[d] for d in DOMAINS])
    assert abs(w.sum() - 1) < 1e-9 and (w >= -1e-12).all()
    for d, (lo, hi) in zip(DOMAINS, state.config.bounds_array()):
        assert lo - 1e-9 <= p.weights[d] <= hi + 1e-9, (d, p.weights[d])
    fids = {(f.model_params, f.steps) for f in state.fidelities()}
    if on_grid:
        assert (p.model_params, p.steps) in fids
    else:  # autoscale's perturbation runs change the length: size offered, steps in range
        assert p.model_params in {m for m, _ in fids}
        assert min(s for _, s in fids) * 0.5 <= p.steps <= max(s for _, s in fids)
    assert p.cost is not None and p.cost > 0
    assert p.reason


@pytest.mark.parametrize("name", ALL)
def test_strategy_proposes_valid_distinct_trials(store, name):
    state = StudyState.from_store(store, "synth")
    strat = get_strategy(name, seed=1)
    props = strat.ask(state, 3)
    assert 1 <= len(props) <= 3
    for p in props:
        assert p.strategy == name
        _valid(state, p, on_grid=name != "autoscale")
    keys = {(tuple(np.round([p.weights[d] for d in DOMAINS], 6)), p.model_params, p.steps) for p in props}
    assert len(keys) == len(props), "a batch must not repeat a trial"


@pytest.mark.parametrize("name", ["mfms-bo", "bo", "mf-bo"])
def test_stored_prediction_matches_model(store, name):
    state = StudyState.from_store(store, "synth")
    strat = get_strategy(name, seed=2)
    props = strat.ask(state, 2)
    assert strat.model_ is not None, f"{name} should have fitted its GP"
    q = pd.DataFrame([{**{f"w_{d}": p.weights[d] for d in DOMAINS}, "model_params": p.model_params,
                       "steps": p.steps} for p in props])
    mu, sd = strat.model_.predict(q)
    np.testing.assert_allclose([p.pred_mean for p in props], mu, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([p.pred_std for p in props], sd, rtol=1e-4, atol=1e-9)
    assert all(p.acq_value is not None for p in props)


def test_mf_kg_is_botorchs_multi_fidelity_gp_and_kg(store):
    """mf-kg: a SingleTaskMultiFidelityGP on the target size's checkpoints only; its stored
    prediction is that GP's posterior at the proposal; the incumbent is judged at the target."""
    import torch
    from botorch.models import SingleTaskMultiFidelityGP

    from engine.strategies.mf_kg import _MFData

    state = StudyState.from_store(store, "synth")
    strat = get_strategy("mf-kg", seed=4)
    props = strat.ask(state, 2)
    assert isinstance(strat.model_, SingleTaskMultiFidelityGP)
    t = state.target()
    assert all(p.model_params == t.model_params for p in props)
    n_target_rows = int((state.usable_runs()["model_params"] == t.model_params).sum())
    assert 0 < strat.model_.train_inputs[0].shape[0] <= n_target_rows
    data = _MFData(state, strat.offered(state), strat.per_run, strat.max_points)
    for p in props:
        x = data.X(np.array([p.weights[d] for d in DOMAINS]), data.fidelity(p.steps))
        with torch.no_grad():
            post = strat.model_.posterior(x)
        assert p.pred_mean == pytest.approx(-float(post.mean), rel=1e-6)  # loss: the GP models -y
        assert p.acq_value is not None and "KG per unit cost" in p.reason
    inc = strat.incumbent_
    with torch.no_grad():
        mu = -strat.model_.posterior(data.X(np.array([inc.weights[d] for d in DOMAINS]), 1.0)).mean
    assert inc.pred_mean == pytest.approx(float(mu), rel=1e-6)


def test_mf_kg_reports_a_maximised_metric_in_its_own_units():
    """The GP models -sign * objective (BoTorch maximises): for a metric to maximise its
    predictions and incumbent come back in the metric's units, not negated."""
    from engine.config import config_from_dict
    from tests.test_strategies_helpers import surface

    cfg = config_from_dict({
        "name": "acc", "domains": DOMAINS, "objective": "metric_acc", "direction": "maximize",
        "scales": [{"model_params": 10_000_000, "steps": [300, 900], "cost_per_step": 0.01}],
        "target": {"model_params": 10_000_000, "steps": 900}})
    rng = np.random.default_rng(0)
    rows = []
    for r, w in enumerate(rng.dirichlet(np.ones(len(DOMAINS)), 6)):
        for st in range(100, 901 if r % 2 else 301, 100):
            rows.append({"run_id": f"a{r}", "model_params": 10_000_000, "steps": st,
                         **{f"w_{d}": x for d, x in zip(DOMAINS, w)}, "metric_acc": -surface(w, 10_000_000, st)})
    import torch

    from engine.strategies.mf_kg import _MFData

    state = StudyState(cfg, pd.DataFrame(rows))
    assert state.maximize
    strat = get_strategy("mf-kg", seed=0)
    p = strat.ask(state, 1)[0]
    inc = strat.incumbent_
    data = _MFData(state, strat.offered(state), strat.per_run, strat.max_points)
    assert (data.y < 0).all()  # the GP's targets are the metric itself (-sign * metric, sign = -1)
    with torch.no_grad():
        mu_p = float(strat.model_.posterior(data.X(np.array([p.weights[d] for d in DOMAINS]),
                                                   data.fidelity(p.steps))).mean)
        mu_i = float(strat.model_.posterior(data.X(np.array([inc.weights[d] for d in DOMAINS]), 1.0)).mean)
    assert p.pred_mean == pytest.approx(mu_p, rel=1e-9)  # not negated
    assert inc.pred_mean == pytest.approx(mu_i, rel=1e-9)


def test_mfms_bo_incumbent_refines_the_screened_optimum(store):
    """The incumbent is the best predicted mixture at the target, found beyond the random
    screen's resolution: better (by the model) than every screened or observed mixture."""
    from engine.strategies import space

    state = StudyState.from_store(store, "synth")
    strat = get_strategy("mfms-bo", seed=1)
    sur = strat.fit(state)
    W_obs = strat.observed_mixtures(state)
    inc = strat.model_incumbent(state, sur, W_obs)
    t = state.target()
    screen = np.vstack([W_obs, space.sample(2048, state.bounds(), np.random.default_rng(strat.seed))])
    mu_screen, _ = sur.predict(screen, t.model_params, t.steps)
    w = np.array([inc.weights[d] for d in DOMAINS])
    mu_inc, _ = sur.predict(w, t.model_params, t.steps)
    assert inc.pred_mean == pytest.approx(float(mu_inc[0]), rel=1e-9)
    assert inc.pred_mean < mu_screen.min()
    assert space.in_bounds(w, state.bounds()).all()


def test_mfms_bo_uses_cheap_fidelities(store):
    """The per-fidelity incumbent keeps EI/cost from always choosing the most expensive run."""
    state = StudyState.from_store(store, "synth")
    props = get_strategy("mfms-bo", seed=3).ask(state, 3)
    target = state.target()
    assert any((p.model_params, p.steps) != (target.model_params, target.steps) for p in props)
    assert "augmented EI" in props[0].reason and "corr with the target" in props[0].reason
    # the per-fidelity-incumbent form too
    props = get_strategy("mfms-bo", seed=3, acquisition="fidelity").ask(state, 3)
    assert any((p.model_params, p.steps) != (target.model_params, target.steps) for p in props)
    assert "EI/cost" in props[0].reason and "corr with the target" in props[0].reason


def test_propose_stores_trials(store):
    trials = propose(store, "synth", "random", 2, seed=5)
    assert len(trials) == 2
    assert all(t.state.value == "proposed" and t.strategy == "random" for t in trials)
    store.reject("synth", [t.trial_id for t in trials])


def test_pending_trials_change_the_next_proposal(store):
    """Pending trials are X_pending: proposing again does not return the pending point."""
    trials = propose(store, "synth", "mfms-bo", 1, seed=7)
    state = StudyState.from_store(store, "synth")
    again = get_strategy("mfms-bo", seed=7).ask(state, 1)[0]
    first = trials[0]
    same = (np.allclose([first.weights[d] for d in DOMAINS], [again.weights[d] for d in DOMAINS], atol=1e-4)
            and (first.model_params, first.steps) == (again.model_params, again.steps))
    assert not same
    store.reject("synth", [first.trial_id])


def test_hyperband_promotes_the_best(tmp_path):
    s = Store(tmp_path / "hb.duckdb")
    s.create_study(study_config("hb"))
    from engine.autopilot import autopilot
    from tests.test_strategies_helpers import SynthRunner

    res = autopilot(s, "hb", "hyperband", budget=1e9, max_trials=14, runner=SynthRunner())
    trials = s.trials("hb")
    rungs = {t.run_id: t for t in trials}
    # bracket 1 (rungs 300 -> 900 at the target size): the promoted config was its rung's best
    r0 = [t for rid, t in rungs.items() if rid.startswith("hb0.1-r0")]
    r1 = [t for rid, t in rungs.items() if rid.startswith("hb0.1-r1")]
    assert r0 and r1 and all(t.steps == 900 for t in r1) and all(t.steps == 300 for t in r0)
    assert len(res.done) == 14


def test_acquisitions_read_the_gp_posterior(store):
    """Every score comes from the model's posterior: the stored predictions, the believer, and
    the acquisitions (FidelityLogEI without a target is BoTorch's LogExpectedImprovement)."""
    import torch
    from botorch.acquisition.analytic import LogExpectedImprovement

    from engine.strategies.acquisition import FidelityLogEI

    state = StudyState.from_store(store, "synth")
    strat = get_strategy("mfms-bo", seed=4)
    sur = strat.fit(state)
    W = np.random.default_rng(0).dirichlet(np.ones(3), 16)
    X = sur.encode(W, 1_000_000, 300)
    with torch.no_grad():
        post = sur.model.posterior(X.unsqueeze(-2))
    mu, sd = post.mean.reshape(-1).numpy(), post.variance.reshape(-1).sqrt().numpy()
    m2, s2 = sur.predict(W, 1_000_000, 300)
    np.testing.assert_allclose(mu, m2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sd, s2, rtol=1e-9, atol=1e-12)
    # believing a point shrinks the uncertainty there
    with torch.no_grad():
        believed = sur.model.believe(X[:1]).posterior(X[:1].unsqueeze(-2))
    assert float(believed.variance.sqrt()) < sd[0]
    best = torch.tensor(float(mu.min()), dtype=torch.float64)
    with torch.no_grad():
        ours = FidelityLogEI(sur.model, best, maximize=False)(X.unsqueeze(-2))
        ref = LogExpectedImprovement(sur.model, best_f=best, maximize=False)(X.unsqueeze(-2))
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-9, atol=1e-9)


def test_plain_ei_per_cost_variant(store):
    """The paper's form (no target correlation) still proposes valid, distinct trials."""
    state = StudyState.from_store(store, "synth")
    props = get_strategy("mfms-bo", seed=5, acquisition="fidelity", target_corr=False).ask(state, 2)
    for p in props:
        _valid(state, p)
    assert "log EI" in props[0].reason


def test_augmented_scores_at_the_target_are_log_ei(store):
    """At the target fidelity the augmented score is plain log EI there (corr 1, cost ratio 1);
    elsewhere it adds log corr (<= 0) and subtracts the log cost ratio."""
    import math

    import torch

    from engine.models.gp.compat import log_ei
    from engine.strategies.search import augmented_scores

    state = StudyState.from_store(store, "synth")
    strat = get_strategy("mfms-bo", seed=6)
    sur = strat.fit(state)
    t = state.target()
    fids = state.fidelities()
    C = np.random.default_rng(1).dirichlet(np.ones(3), 12)
    best = float(state.observed_incumbent().pred_mean)
    sc, lei_t, lcorr = augmented_scores(sur.model, sur, C, fids, t, best, maximize=False, corr_power=2.0)
    with torch.no_grad():
        post = sur.model.posterior(sur.encode(C, t.model_params, t.steps).unsqueeze(-2))
        mu, sd = post.mean.reshape(-1), post.variance.reshape(-1).sqrt()
    np.testing.assert_allclose(lei_t, log_ei(mu, sd, best, False).numpy(), rtol=1e-6, atol=1e-9)
    for j, f in enumerate(fids):
        ratio = math.log(f.cost / t.cost)
        np.testing.assert_allclose(sc[:, j], lei_t + 2.0 * lcorr[:, j] - ratio, rtol=1e-9, atol=1e-9)
        if (f.model_params, f.steps) == (t.model_params, t.steps):
            assert np.all(lcorr[:, j] == 0)
        else:  # the correlation of the joint posterior at the two points
            x = torch.stack([sur.encode(C, f.model_params, f.steps), sur.encode(C, t.model_params, t.steps)], 1)
            with torch.no_grad():
                cov = sur.model.posterior(x).mvn.covariance_matrix
            corr = (cov[:, 0, 1] / (cov[:, 0, 0] * cov[:, 1, 1]).sqrt()).clamp(1e-6, 1).numpy()
            np.testing.assert_allclose(lcorr[:, j], np.log(corr), rtol=1e-6, atol=1e-9)
    assert np.all(lcorr <= 1e-12)


def test_mfms_bo_augmented_acquisition(store):
    """acquisition="augmented" proposes valid, distinct trials on offered fidelities and says why."""
    state = StudyState.from_store(store, "synth")
    props = get_strategy("mfms-bo", seed=8, acquisition="augmented", corr_power=2).ask(state, 3)
    for p in props:
        _valid(state, p)
    keys = {(tuple(np.round([p.weights[d] for d in DOMAINS], 6)), p.model_params, p.steps) for p in props}
    assert len(keys) == len(props)
    assert "augmented EI" in props[0].reason and "corr with the target" in props[0].reason
    with pytest.raises(Exception, match="unknown acquisition"):
        get_strategy("mfms-bo", acquisition="nope")


def test_mfms_bo_waits_for_k_plus_2_runs(store):
    """With fewer than K + 2 runs (what the GP's mixture-law mean needs) mfms-bo proposes its
    random initial design; from K + 2 on it fits the GP."""
    full = StudyState.from_store(store, "synth")
    ids = list(dict.fromkeys(full.runs["run_id"]))
    few = StudyState(full.config, full.runs[full.runs["run_id"].isin(ids[:len(DOMAINS) + 1])])
    strat = get_strategy("mfms-bo", seed=9)
    props = strat.ask(few, 2)
    assert strat.model_ is None and all("initial design" in p.reason for p in props)
    enough = StudyState(full.config, full.runs[full.runs["run_id"].isin(ids[:len(DOMAINS) + 2])])
    strat.ask(enough, 1)
    assert strat.model_ is not None


def test_surrogate_small_study_refit_keeps_the_better_of_warm_and_cold(tmp_path):
    """While a study is small, a hyperparameter refit fits cold too and keeps the better
    likelihood of the same data, so the first runs' hyperparameters do not stick."""
    from engine.strategies.surrogate import Surrogate

    store = Store(tmp_path / "runs.duckdb")
    store.create_study(study_config("s"))
    seed_runs(store, "s", n=6, seed=3)
    sur = Surrogate(refit_every=1, max_points=300, max_fit_points=300)
    cfg = store.get_config("s")

    def fit():
        state = StudyState(cfg, store.runs_frame("s"))
        sur.fit(state.runs, state.objective, state.domains, cfg.tokens_per_step, key="k")
        return sur.last_fit_

    assert fit() == {"warm": False, "hyper": True}
    seed_runs(store, "s", n=3, seed=4)
    f = fit()
    assert f["warm"] and f["hyper"] and f["chosen"] in ("warm", "cold")
    assert sur.model_.neg_mll_ == pytest.approx(min(f["warm_neg_mll"], f["cold_neg_mll"]))
    assert f["chosen"] == ("cold" if f["cold_neg_mll"] < f["warm_neg_mll"] else "warm")
    big = Surrogate(refit_every=1, max_points=300, max_fit_points=10)  # larger than the fit subset: warm only
    state = StudyState(cfg, store.runs_frame("s"))
    big.fit(state.runs, state.objective, state.domains, cfg.tokens_per_step, key="k")
    big.fit(state.runs, state.objective, state.domains, cfg.tokens_per_step, key="k")
    assert big.last_fit_ == {"warm": True, "hyper": True}
