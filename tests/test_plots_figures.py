"""engine.plots: pure functions that return Plotly figures (no browser needed)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from engine.simulators.synthetic import runs_table
from engine.models.base import Optimum
from engine.plots import (
    ScalePoint,
    budget_points,
    final_checkpoints,
    line_grid,
    observed_at,
    plot_loss_curves,
    plot_line,
    plot_parallel_coordinates,
    plot_regret_curves,
    plot_scaling,
    plot_slice,
    plot_ternary,
    plot_trajectory,
    predict_grid,
    scaling_table,
    simplex_grid,
    size_points,
    slice_grid,
    speedup_value,
    speedups,
    with_objective,
)

DOMS = ["web", "code", "books"]


class Quadratic:
    """A toy fitted model: loss = |w - c(m)|^2 + 1/log(m), optimum c(m) moving with size."""

    def __init__(self, domains):
        self.domains_ = list(domains)

    def centre(self, m):
        t = np.clip((np.log10(np.asarray(m, float)) - 7) / 2, 0, 1)[:, None]
        a = np.array([0.6, 0.2, 0.2] + [0.0] * (len(self.domains_) - 3))
        b = np.array([0.2, 0.6, 0.2] + [0.0] * (len(self.domains_) - 3))
        return (1 - t) * a + t * b

    def predict(self, q):
        W = q[[f"w_{d}" for d in self.domains_]].to_numpy(float)
        m = q["model_params"].to_numpy(float)
        mean = ((W - self.centre(m)) ** 2).sum(1) + 10 / np.log(m)
        return mean, np.full(len(q), 0.01)

    def optimum(self, model_params, *, steps=None, tokens=None, bounds=None, direction=None):
        c = self.centre([model_params])[0]
        q = pd.DataFrame([{f"w_{d}": v for d, v in zip(self.domains_, c)} | {"model_params": model_params}])
        mean, std = self.predict(q)
        return Optimum(dict(zip(self.domains_, c)), float(mean[0]), float(std[0]), model_params, steps, tokens)


class Toy(Quadratic):
    """Quadratic as a registry model (the app's tests register it as "toy"): its optimum moves
    from web-heavy at 10M to code-heavy at 1B, also along the training length (tokens)."""

    objective_ = "mean_loss"

    def __init__(self, **_):
        pass

    def fit(self, runs, objective, *, domains, tokens_per_step=None):
        Quadratic.__init__(self, domains)
        self.objective_ = objective
        self.n_runs_ = int(runs["run_id"].nunique())
        return self

    def centre(self, m, tokens=None):
        t = np.clip((np.log10(np.asarray(m, float)) - 7) / 2, 0, 1)
        if tokens is not None:
            t = 0.5 * t + 0.5 * np.clip((np.log10(np.asarray(tokens, float)) - 8) / 3, 0, 1)
        t = np.atleast_1d(t)[:, None]
        a = np.array([0.6, 0.2, 0.2] + [0.0] * (len(self.domains_) - 3))
        b = np.array([0.2, 0.6, 0.2] + [0.0] * (len(self.domains_) - 3))
        return (1 - t) * a + t * b

    def predict(self, q):
        W = q[[f"w_{d}" for d in self.domains_]].to_numpy(float)
        m = q["model_params"].to_numpy(float)
        tok = q["tokens"].to_numpy(float) if "tokens" in q.columns else None
        mean = ((W - self.centre(m, tok)) ** 2).sum(1) + 10 / np.log(m)
        return mean, np.full(len(q), 0.01)

    def optimum(self, model_params, *, steps=None, tokens=None, bounds=None, direction=None):
        c = self.centre([model_params], None if tokens is None else [tokens])[0]
        q = pd.DataFrame([{f"w_{d}": v for d, v in zip(self.domains_, c)} | {"model_params": model_params}
                          | ({} if tokens is None else {"tokens": tokens})])
        mean, std = self.predict(q)
        return Optimum(dict(zip(self.domains_, c)), float(mean[0]), float(std[0]), model_params, steps, tokens)


def test_loss_curves_colour_by_weight_and_scale_to_1000_runs():
    runs = runs_table(1000, DOMS, checkpoints=20)
    t = time.perf_counter()
    fig = plot_loss_curves(runs, "mean_loss", "code")
    elapsed = time.perf_counter() - t
    assert isinstance(fig, go.Figure)
    assert elapsed < 3.0, elapsed
    markers = [tr for tr in fig.data if tr.mode == "markers"]
    assert len(markers) == 1 and len(markers[0].x) == 1000
    assert markers[0].marker.colorbar.title.text.endswith("code")
    lines = [tr for tr in fig.data if tr.mode == "lines"]
    assert 1 <= len(lines) <= 10
    assert sum(np.isfinite(np.asarray(tr.y, float)).sum() for tr in lines) == 20_000
    assert fig.layout.xaxis.type == "log"


def test_loss_curves_empty_table_says_so():
    fig = plot_loss_curves(runs_table(2, DOMS).iloc[0:0], "mean_loss", "web")
    assert fig.layout.annotations and "no runs" in fig.layout.annotations[0].text


def test_parallel_coordinates_has_a_dimension_per_domain_and_objective():
    runs = runs_table(40, DOMS)
    fig = plot_parallel_coordinates(runs, DOMS, "loss_web")
    labels = [d.label for d in fig.data[0].dimensions]
    assert labels[:3] == DOMS and labels[-1] == "loss_web"
    assert len(fig.data[0].dimensions[0].values) == 40


def test_simplex_and_slice_grids_are_mixtures():
    g = simplex_grid(DOMS, 10)
    assert len(g) == 66
    np.testing.assert_allclose(g.sum(axis=1), 1.0)
    doms = DOMS + ["wiki", "arxiv"]
    s = slice_grid(doms, "web", "code", {"books": 0.5, "wiki": 0.25, "arxiv": 0.25}, 11)
    np.testing.assert_allclose(s[[f"w_{d}" for d in doms]].sum(axis=1), 1.0)
    rest = s[(s["x"] + s["y"]) < 0.99]
    np.testing.assert_allclose(rest["w_books"] / rest["w_wiki"], 2.0)


def test_ternary_marks_observed_runs_and_the_optimum():
    model = Quadratic(DOMS)
    grid = predict_grid(model, simplex_grid(DOMS, 20), 10**8, steps=1000)
    opt = model.optimum(10**8)
    obs = with_objective(final_checkpoints(runs_table(10, DOMS)), "mean_loss")
    fig = plot_ternary(grid, DOMS, value="pred_mean", objective="mean_loss", observed=obs, optimum=opt.weights)
    names = [t.name for t in fig.data]
    assert names[1:] == ["observed runs", "predicted optimum"]
    assert fig.data[0].marker.color is not None and len(fig.data[0].a) == len(grid)
    assert fig.layout.ternary.aaxis.title.text == "web"
    # the best grid point is next to the optimum
    best = grid.loc[grid["pred_mean"].idxmin()]
    assert abs(best["w_web"] - opt.weights["web"]) < 0.06
    assert plot_ternary(grid, DOMS, value="pred_std").data[0].marker.colorbar.title.text == "std"


def test_slice_heatmap_masks_outside_the_simplex():
    doms = DOMS + ["wiki"]
    model = Quadratic(doms)
    opt = model.optimum(10**8)
    grid = predict_grid(model, slice_grid(doms, "web", "code", opt.weights, 21), 10**8)
    fig = plot_slice(grid, "web", "code", observed=None, optimum=opt.weights)
    z = np.asarray(fig.data[0].z, float)
    assert z.shape == (21, 21)
    assert np.isnan(z[-1, -1]) and np.isfinite(z[0, 0])
    assert fig.data[-1].name == "predicted optimum"


def test_observed_at_picks_nearest_checkpoint():
    runs = with_objective(runs_table(9, DOMS), "mean_loss")
    obs = observed_at(runs, 20_000_000, steps=1000)
    assert obs["run_id"].is_unique and len(obs) == runs[runs["model_params"] == 20_000_000]["run_id"].nunique()
    assert set(obs["steps"]) == {int(runs["steps"].iloc[(runs["steps"] - 1000).abs().argmin()])}


def test_scaling_table_finds_where_the_small_optimum_stops_being_optimal():
    models = {"gp": Quadratic(DOMS), "autoscale": Quadratic(DOMS)}
    scales = [ScalePoint(10**7, 1000), ScalePoint(10**8, 1000), ScalePoint(10**9, 1000)]
    table, errors = scaling_table(models, scales, DOMS)
    assert not errors and len(table) == 6
    gp = table[table["model"] == "gp"]
    assert gp["regret"].iloc[0] == pytest.approx(0.0)
    assert not gp["shifted"].iloc[0] and gp["shifted"].iloc[-1]
    fig = plot_scaling(table, DOMS, objective="mean_loss")
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 6  # 3 domains x 2 models
    assert any("no longer optimal" in a.text for a in fig.layout.annotations)
    assert fig.layout.barmode == "stack"


def test_scaling_table_reports_a_failing_model_and_keeps_the_others():
    class Broken(Quadratic):
        def optimum(self, *a, **k):
            raise ValueError("cannot extrapolate")

    table, errors = scaling_table({"ok": Quadratic(DOMS), "broken": Broken(DOMS)}, [ScalePoint(10**7, 100)], DOMS)
    assert list(table["model"]) == ["ok"] and "cannot extrapolate" in errors["broken"]


def test_trajectory_per_strategy_and_speedup():
    rows = []
    for s, costs, vals in (("random", [1, 2, 3, 4], [3.0, 2.8, 2.7, 2.6]), ("mfms-bo", [1, 2], [2.9, 2.55])):
        for c, v in zip(costs, vals):
            rows.append({"strategy": s, "cumulative_cost": c, "incumbent_pred": v, "trial_id": len(rows) + 1})
    df = pd.DataFrame(rows)
    fig = plot_trajectory(df, objective="mean_loss", budget=5)
    assert [t.name for t in fig.data] == ["random: predicted at target", "mfms-bo: predicted at target"]
    assert fig.data[0].line.shape == "hv"
    sp = speedups(df).set_index("strategy")
    assert sp.loc["random", "speedup"] == pytest.approx(1.0)
    assert sp.loc["mfms-bo", "speedup"] == pytest.approx(2.0)
    assert "no finished trial" in plot_trajectory(pd.DataFrame()).layout.annotations[0].text


def test_line_for_two_domains_marks_runs_and_the_optimum():
    doms = ["web", "code"]

    class Line(Quadratic):
        def centre(self, m):
            return np.tile([0.7, 0.3], (len(np.atleast_1d(m)), 1))

    model = Line(doms)
    g = line_grid(doms, 40)
    assert len(g) == 41 and np.allclose(g.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="two domains"):
        line_grid(DOMS)
    with pytest.raises(ValueError, match="line_grid"):
        simplex_grid(doms)
    grid = predict_grid(model, g, 10**8, steps=1000)
    opt = model.optimum(10**8)
    obs = with_objective(final_checkpoints(runs_table(6, doms)), "mean_loss")
    fig = plot_line(grid, doms, objective="mean_loss", observed=obs, optimum=opt.weights, optimum_value=opt.pred_mean)
    names = [t.name for t in fig.data]
    assert names == ["± 1 std", "predicted mean_loss", "observed runs", "predicted optimum"]
    assert fig.data[0].fill == "toself" and len(fig.data[1].x) == 41
    assert list(fig.data[2].x) == list(obs["w_web"])
    assert fig.data[3].x[0] == pytest.approx(0.7) and fig.data[3].y[0] == pytest.approx(opt.pred_mean)
    assert fig.layout.xaxis.title.text.startswith("weight of web")


def test_objective_direction_rule():
    from engine.config import config_from_dict, objective_direction

    loss = config_from_dict({"name": "a", "domains": ["x", "y"]})
    metric = config_from_dict({"name": "b", "domains": ["x", "y"], "objective": "metric_acc"})
    odd = config_from_dict({"name": "c", "domains": ["x", "y"], "objective": "metric_err", "direction": "minimize"})
    assert loss.direction_for("metric_acc") == "maximize" and loss.direction_for("loss_x") == "minimize"
    assert metric.direction_for("metric_acc") == "maximize" and metric.direction_for("mean_loss") == "minimize"
    assert odd.direction_for("metric_err") == "minimize" and odd.direction_for("metric_acc") == "maximize"
    assert objective_direction("metric_z") == "maximize" and objective_direction(None, odd) == "minimize"


def test_scaling_tolerance_ignores_tiny_regrets_of_models_without_std():
    """AutoScale reports std 0: a regret of 1e-6 on a loss of 2.4 is not a shift (tolerance
    max(std, 0.5% of the loss)); a regret of 0.05 is."""

    class NoStd(Quadratic):
        def __init__(self, domains, drift):
            super().__init__(domains)
            self.drift = drift

        def centre(self, m):
            t = np.clip((np.log10(np.asarray(m, float)) - 7) / 2, 0, 1)[:, None]
            return np.array([0.4, 0.3, 0.3]) + self.drift * t * np.array([1, -0.5, -0.5])

        def predict(self, q):
            mean, _ = super().predict(q)
            return mean, np.zeros(len(q))

    scales = [ScalePoint(10**7, 1000), ScalePoint(10**8, 1000), ScalePoint(10**9, 1000, extrapolated=True)]
    tiny, errors = scaling_table({"autoscale": NoStd(DOMS, 0.0008)}, scales, DOMS)
    assert not errors and (tiny["pred_std"] == 0).all()
    assert tiny["regret"].iloc[-1] > 1e-9  # the old rule (regret > max(std, 1e-9)) called this a shift
    assert not tiny["shifted"].any()
    assert tiny["tolerance"].iloc[-1] == pytest.approx(0.005 * tiny["pred_mean"].iloc[-1])
    big, _ = scaling_table({"autoscale": NoStd(DOMS, 0.5)}, scales, DOMS)
    assert big["shifted"].iloc[-1] and not big["shifted"].iloc[0]
    assert list(big["extrapolated"]) == [False, False, True] and big["scale"].iloc[-1].endswith("(extrap.)")
    fig = plot_scaling(big, DOMS)
    assert any("extrapolation" in (a.text or "") for a in fig.layout.annotations)


def test_budget_points_extrapolate_to_ten_times_the_longest_run():
    from engine.config import config_from_dict
    from engine.simulators.synthetic import config_dict

    runs = runs_table(10, DOMS, checkpoints=6)
    cfg = config_from_dict(config_dict("s", DOMS, checkpoints=6))
    pts = budget_points(cfg, runs, 20_000_000)
    longest = runs["tokens"].max()
    assert [p.extrapolated for p in pts][-3:] == [True, True, True]
    assert pts[-1].tokens == pytest.approx(10 * longest) and pts[-1].steps == pytest.approx(10 * runs["steps"].max())
    inside = [p for p in pts if not p.extrapolated]
    assert 2 <= len(inside) <= 5 and inside[-1].tokens == pytest.approx(longest)
    sizes = size_points(cfg, runs)
    assert [p.model_params for p in sizes] == sorted({*runs["model_params"], *(s.model_params for s in cfg.scales)})
    tok = config_from_dict(config_dict("t", DOMS, checkpoints=6, length="tokens"))
    tpts = budget_points(tok, runs_table(10, DOMS, checkpoints=6, length="tokens"), 20_000_000)
    assert all(p.steps is None and p.tokens for p in tpts) and tpts[-1].extrapolated


@pytest.fixture
def traj_store(tmp_path):
    """A study whose first runs stop short of the target (1B / 20,000 steps)."""
    from engine.config import config_from_dict
    from engine.simulators.synthetic import config_dict
    from engine.store import Store

    store = Store(tmp_path / "t.duckdb")
    cfg = config_from_dict(config_dict("t", DOMS, checkpoints=4))
    early = runs_table(3, DOMS, checkpoints=4, seed=1)  # 20M, 60M, 150M
    store.import_runs("t", early, config=cfg)
    return store, cfg


def test_trajectory_marks_incumbents_not_at_the_target(traj_store):
    from engine.trajectory import MODEL_AT_TARGET, OBSERVED_AT_TARGET, is_at_target, trajectory

    store, cfg = traj_store
    traj = trajectory(store, "t")
    keys = {"trial_id", "weights", "model_params", "steps", "tokens", "cost", "cumulative_cost",
            "incumbent_weights", "incumbent_pred"}
    assert all(keys <= set(e) for e in traj)  # DESIGN contract fields unchanged
    bases = [e["incumbent_basis"] for e in traj]
    assert bases[0] == "observed at 20M / 20K steps (no target run yet)"
    assert bases[-1] == "observed at 150M / 20K steps (no target run yet)"
    assert not any(is_at_target(b) for b in bases)
    late = runs_table(5, DOMS, checkpoints=4, seed=2).query("model_params == 1_000_000_000").assign(run_id="big")
    store.import_runs("t", late)
    traj = trajectory(store, "t")
    assert traj[-1]["incumbent_basis"] == OBSERVED_AT_TARGET and traj[-1]["model_params"] == 1_000_000_000
    assert is_at_target(MODEL_AT_TARGET)
    fig = plot_trajectory(pd.DataFrame(traj), objective="mean_loss")
    names = [t.name for t in fig.data]
    assert names == ["incumbent: best observed at target",
                     "incumbent: best observed below the target (no target run yet)"]
    below = np.asarray(fig.data[1].y, float)
    assert np.isfinite(below[:-1]).all() and np.isnan(below[-1])
    assert fig.data[1].marker.symbol == "circle-open" and fig.data[1].line.dash == "dot"
    assert "no run at the target yet" in fig.layout.title.text


def test_trajectory_of_a_tokens_only_study_has_an_incumbent(tmp_path):
    from engine.simulators.synthetic import create_study
    from engine.store import Store
    from engine.trajectory import OBSERVED_AT_TARGET, trajectory

    store = Store(tmp_path / "tok.duckdb")
    create_study(store, "tok", n_runs=6, checkpoints=4, length="tokens", proposals=0)
    traj = trajectory(store, "tok")
    assert all(e["steps"] is None for e in traj)
    assert all(e["incumbent_weights"] is not None and e["incumbent_pred"] is not None for e in traj)
    assert traj[0]["incumbent_basis"] == "observed at 20M / 5.24B tokens (no target run yet)"
    assert traj[-1]["incumbent_basis"] == OBSERVED_AT_TARGET


def test_speedups_take_an_explicit_reference_and_prefer_the_truth():
    rows = []
    for s, costs, pred, true in (("a (mfms-bo)", [1, 2], [2.9, 2.5], [2.95, 2.7]),
                                 ("b (random)", [1, 2, 3, 4], [3.0, 2.8, 2.7, 2.6], [3.0, 2.9, 2.8, 2.7])):
        for c, p, t in zip(costs, pred, true):
            rows.append({"strategy": s, "cumulative_cost": c, "incumbent_pred": p, "incumbent_true": t})
    df = pd.DataFrame(rows)
    assert speedup_value(df) == "incumbent_true"
    assert speedup_value(df.assign(incumbent_true=np.where(df["strategy"] == "b (random)", np.nan, 1.0))) \
        == "incumbent_pred"
    sp = speedups(df, reference="b (random)", value="incumbent_true").set_index("strategy")
    assert sp.loc["b (random)", "speedup"] == pytest.approx(1.0)
    assert sp.loc["a (mfms-bo)", "speedup"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="reference"):
        speedups(df, reference="random")


def bench_runs() -> pd.DataFrame:
    """A tiny optimize_runs.csv: mfms-bo reaches random's final regret at a third of the cost."""
    rows = []
    for seed in (0, 1):
        for name, regrets in (("mfms-bo", [0.5, 0.1, 0.02]), ("random", [0.5, 0.3, 0.2, 0.1, 0.08, 0.05, 0.02])):
            for it, r in enumerate(regrets):
                rows.append({"strategy": name, "seed": seed, "iteration": it, "cost": float(it),
                             "total_cost": 10.0 + it, "regret": r, "objective": "loss_x"})
    return pd.DataFrame(rows)


def test_bench_results_load_from_runs_curves_or_folder(tmp_path):
    from engine.bench.optimize import regret_curves
    from engine.bench.optimize_report import load_results
    from engine.errors import ValidationError

    runs = bench_runs()
    runs.to_csv(tmp_path / "optimize_runs.csv", index=False)
    curves, summary = load_results(tmp_path / "optimize_runs.csv")
    assert set(curves["strategy"]) == {"mfms-bo", "random"}
    row = summary.set_index("baseline").loc["random"]
    assert row["speedup_median"] == pytest.approx(16 / 12) and row["seeds"] == 2
    curves2, _ = load_results(tmp_path)  # the folder
    pd.testing.assert_frame_equal(curves, curves2)
    only = tmp_path / "c"
    only.mkdir()
    regret_curves(runs).to_csv(only / "optimize_curves.csv", index=False)
    c3, s3 = load_results(only)
    assert len(c3) == len(curves) and s3.empty
    fig = plot_regret_curves(curves)
    assert {t.name for t in fig.data if t.showlegend is not False} == {"mfms-bo", "random"}
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValidationError, match="neither"):
        load_results(tmp_path / "bad.csv")
    with pytest.raises(ValidationError, match="no benchmark results"):
        load_results(tmp_path / "missing")


def test_observed_incumbent_matches_a_brute_force_recomputation(tmp_path):
    """engine.trajectory keeps the observed incumbent incrementally; after every trial it equals
    the best value recomputed from scratch (at the target, else at the largest size's longest
    length)."""
    from engine.simulators.synthetic import create_study
    from engine.store import Store
    from engine.trajectory import trajectory

    store = Store(tmp_path / "b.duckdb")
    create_study(store, "b", n_runs=40, checkpoints=5, proposals=0, seed=11)
    runs = with_objective(store.runs_frame("b", meta=True), "mean_loss")
    cfg = store.get_config("b")
    traj = trajectory(store, "b")
    seen = []
    for e in traj:
        seen.append(e["trial_id"])
        df = runs[runs["trial_id"].isin(seen)]
        at = df[(df["model_params"] == cfg.target.model_params) & (df["steps"] == cfg.target.steps)]
        if at.empty:
            big = df[df["model_params"] == df["model_params"].max()]
            at = big[big["steps"] == big["steps"].max()]
        assert e["incumbent_pred"] == pytest.approx(at["objective"].min()), e["trial_id"]
    assert any("no target run yet" in e["incumbent_basis"] for e in traj)
    assert traj[-1]["incumbent_basis"] == "observed at target"
