"""``mixplan bench optimize``: every strategy on the MFMS simulator, the paper's protocol.

Protocol (Yen et al. 2025, as their code runs it; FORMAT.md): the target is 1B / 19,500 steps;
per seed, 20 random initial runs (Dirichlet(1) mixture, a random (size, steps) of the study's
grid: sizes 20M..1B, steps 300/700/2,200/6,500/19,500) with every 100-step checkpoint observed,
shared by all strategies; then one run per iteration (q = 1), chosen by the strategy, costs
from FORMAT.md (1B for 100 steps = 1), until the budget is spent or ``max_iter`` iterations.
After every result the strategy's incumbent (its best mixture at the target: model-based
strategies judge it with their model, model-free ones by the best observed value) is scored by
the simulator at 1B / 19,500 steps: regret = its true value minus the true optimum (found by
:mod:`engine.bench.optimize_truth`, cached in ``OUT/true_optima.json``).

Cumulative cost counts the initial design (the same for every strategy of a seed) plus each
strategy's runs. Speed-up of mfms-bo over a baseline, per seed: the cost at which the baseline
first reached its final regret, divided by the cost at which mfms-bo first reached that
regret; ``speedup`` on cumulative cost including the initial design (conservative),
``speedup_own`` on the strategies' own spending. A seed where mfms-bo never reaches the
baseline's final regret counts as speed-up 0 (a loss). Reported: median over seeds with the
25-75% range and min-max, and how many seeds mfms-bo reached the baseline's regret.

The loop is autopilot's (:func:`engine.autopilot.autopilot`: the same ask / approve / run /
tell as ``mixplan autopilot``, through :class:`engine.study.Study`) on an in-memory store
(:class:`engine.store.memory.MemoryStore`: no database), which is what makes 10 seeds x 6
strategies feasible on 2 cores; seeds run in ``workers`` processes, one torch thread each.
Proposal latency (fit + acquisition for q = 4, 500 runs x 20 checkpoints) is measured
separately by :func:`latency`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_STRATEGIES = ("mfms-bo", "random", "hyperband", "mf-bo", "bo", "autoscale")
BASELINES = ("random", "hyperband", "mf-bo", "bo", "autoscale")


@dataclass(frozen=True)
class BenchSpec:
    objective: str = "loss_stackexchange"
    budget: float = 3000.0
    n_init: int = 20
    max_iter: int = 200
    noise: float = 0.0
    weights_path: str | None = None


# ---------------------------------------------------------------------------------------------
# One seed
# ---------------------------------------------------------------------------------------------
def _initial_design(cfg, runner, n: int, seed: int) -> pd.DataFrame:
    from engine.strategies.base import StudyState

    rng = np.random.default_rng([seed, 12345])
    fids = StudyState(cfg, pd.DataFrame()).fidelities()
    W = rng.dirichlet(np.ones(5), n)
    idx = rng.integers(len(fids), size=n)
    df = runner.sim.run_table(W, [fids[i].model_params / 1e6 for i in idx], [fids[i].steps for i in idx], 100,
                              noise=runner.noise, seed=seed, run_prefix=f"init{seed}")
    return df


def _bench_study(spec: BenchSpec, seed: int, init: pd.DataFrame, runner):
    """A MemoryStore holding the seed's study with the shared initial design imported."""
    from engine.runners.mfms_sim import mfms_study_config
    from engine.store.memory import MemoryStore

    cfg = mfms_study_config(f"bench-{seed}", spec.objective, path=runner.path, noise=spec.noise, seed=seed)
    store = MemoryStore()
    store.create_study(cfg)
    store.import_runs(cfg.name, init, source="initial design")
    return store, cfg


def run_strategy(name: str, spec: BenchSpec, seed: int, optimum: float, maximize: bool,
                 init: pd.DataFrame | None = None) -> list[dict]:
    """One strategy, one seed: autopilot on an in-memory copy of the study, the regret of the
    incumbent after every round (list of rows)."""
    from engine.autopilot import autopilot
    from engine.runners.mfms_sim import MFMSSimRunner, mfms_study_config
    from engine.strategies.base import get_strategy

    runner = MFMSSimRunner(spec.weights_path, noise=spec.noise, seed=seed)
    if init is None:
        init = _initial_design(mfms_study_config("init", spec.objective, path=runner.path), runner, spec.n_init, seed)
    init_cost = float(init.groupby("run_id")["cost"].max().sum())
    store, cfg = _bench_study(spec, seed, init, runner)
    base, _, opts = name.partition(":")  # "mfms-bo:target_corr=1,incumbent=optimum" (variants)
    kw = {}
    for kv in filter(None, opts.split(",")):
        k, v = kv.split("=")
        kw[k] = v if not v.replace(".", "").isdigit() else (float(v) if "." in v else int(v))
    strat = get_strategy(base, seed=seed, **kw)
    rounds = []
    autopilot(store, cfg.name, strat, spec.budget, max_trials=spec.max_iter, seed=seed, runner=runner,
              on_round=rounds.append)
    t_ask = sum(r.ask_seconds for r in rounds)
    rows = []
    for it, r in enumerate(rounds):
        regret = math.nan
        if r.true is not None:
            regret = optimum - r.true if maximize else r.true - optimum
        p = r.proposed[0] if r.proposed else None
        rows.append({"strategy": name, "seed": seed, "iteration": it, "cost": r.spent, "total_cost": init_cost + r.spent,
                     "regret": regret, "incumbent_pred": None if r.incumbent is None else r.incumbent.pred_mean,
                     "fidelity": "" if p is None else f"{p.model_params // 1_000_000}M/{p.steps}",
                     "ask_seconds_total": t_ask})
    return rows


def run_seed(args) -> list[dict]:
    """All strategies on one seed (a worker process' unit of work)."""
    strategies, spec, seed, optimum, maximize = args
    import torch

    torch.set_num_threads(1)
    from engine.runners.mfms_sim import MFMSSimRunner, mfms_study_config

    runner = MFMSSimRunner(spec.weights_path, noise=spec.noise, seed=seed)
    cfg = mfms_study_config("init", spec.objective, path=runner.path)
    init = _initial_design(cfg, runner, spec.n_init, seed)
    out = []
    for name in strategies:
        t0 = time.perf_counter()
        try:
            rows = run_strategy(name, spec, seed, optimum, maximize, init)
        except Exception as exc:  # noqa: BLE001 - a crashing strategy is reported, not fatal
            rows = [{"strategy": name, "seed": seed, "iteration": 0, "cost": 0.0, "total_cost": math.nan,
                     "regret": math.nan, "error": f"{type(exc).__name__}: {exc}"}]
        for r in rows:
            r["wall_s"] = time.perf_counter() - t0
            r["objective"] = spec.objective
        out.extend(rows)
    return out


# ---------------------------------------------------------------------------------------------
# Speed-ups
# ---------------------------------------------------------------------------------------------
def _first_cost(traj: pd.DataFrame, level: float) -> float:
    from engine.trajectory import cost_to_reach

    return cost_to_reach(traj["total_cost"].to_numpy(), traj["regret"].to_numpy(), level)


def speedups(df: pd.DataFrame, reference: str = "mfms-bo") -> pd.DataFrame:
    """Per (objective, baseline, seed): the speed-up of ``reference`` (module docstring).

    ``speedup``: on cumulative cost including the shared initial design (conservative: both
    costs carry it). ``speedup_own``: on each strategy's own spending only (inf where the
    reference's incumbent already beat the baseline's final regret before spending anything).
    Where the reference never reaches the baseline's final regret, both are 0 (a loss) and
    ``reached`` is False."""
    rows = []
    for (obj, seed), g in df.groupby(["objective", "seed"]):
        ref = g[g["strategy"] == reference].sort_values("iteration")
        if ref.empty:
            continue
        for name, b in g.groupby("strategy"):
            if name == reference:
                continue
            b = b.sort_values("iteration")
            init = float(b["total_cost"].iloc[0] - b["cost"].iloc[0])
            final = float(b["regret"].iloc[-1])
            c_b = _first_cost(b, final)
            c_r = _first_cost(ref, final)
            reached = math.isfinite(c_r)
            own_b, own_r = c_b - init, (c_r - init) if reached else math.inf
            rows.append({"objective": obj, "baseline": name, "seed": seed, "baseline_final_regret": final,
                         "baseline_cost": c_b, "reference_cost": c_r if reached else math.nan,
                         "initial_design_cost": init,
                         "speedup": c_b / c_r if reached else 0.0,
                         "speedup_own": (own_b / own_r if own_r > 0 else math.inf) if reached else 0.0,
                         "reached": reached, "reference_final_regret": float(ref["regret"].iloc[-1]),
                         "reference_spent": float(ref["cost"].max()), "baseline_spent": float(b["cost"].max())})
    return pd.DataFrame(rows)


def summarise(su: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Median speed-up with the spread, per objective and baseline; final regrets."""
    out = []
    for (obj, name), g in su.groupby(["objective", "baseline"]):
        s = g["speedup"].to_numpy(float)
        o = g["speedup_own"].to_numpy(float)
        out.append({"objective": obj, "baseline": name, "seeds": len(g), "speedup_median": float(np.median(s)),
                    "speedup_q25": float(np.quantile(s, 0.25)), "speedup_q75": float(np.quantile(s, 0.75)),
                    "speedup_min": float(s.min()), "speedup_max": float(s.max()),
                    "speedup_own_median": float(np.median(o)), "speedup_own_q25": float(np.quantile(o, 0.25)),
                    "speedup_own_q75": float(np.quantile(o, 0.75)),
                    "mfms_reached": int(g["reached"].sum()),
                    "baseline_final_regret_median": float(g["baseline_final_regret"].median()),
                    "mfms_final_regret_median": float(g["reference_final_regret"].median()),
                    "baseline_spent_median": float(g["baseline_spent"].median()),
                    "mfms_spent_median": float(g["reference_spent"].median())})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------------------------
def regret_curves(df: pd.DataFrame, grid_n: int = 200) -> pd.DataFrame:
    """Median regret over seeds on a common cost grid (step functions), per objective and
    strategy."""
    out = []
    for obj, g in df.groupby("objective"):
        hi = float(g["total_cost"].max())
        lo = float(g["total_cost"].min())
        grid = np.geomspace(max(lo, 1e-3), hi, grid_n)
        for name, s in g.groupby("strategy"):
            curves = []
            for _, tr in s.groupby("seed"):
                tr = tr.sort_values("iteration")
                c, r = tr["total_cost"].to_numpy(), np.minimum.accumulate(tr["regret"].to_numpy()) \
                    if name in ("random",) else tr["regret"].to_numpy()
                idx = np.searchsorted(c, grid, side="right") - 1
                v = np.where(idx >= 0, r[np.clip(idx, 0, None)], np.nan)
                v[grid > c[-1]] = r[-1] if len(r) else np.nan
                curves.append(v)
            C = np.vstack(curves)
            with np.errstate(all="ignore"):
                med = np.nanmedian(C, axis=0)
                q25 = np.nanquantile(C, 0.25, axis=0)
                q75 = np.nanquantile(C, 0.75, axis=0)
            for x, m, a, b in zip(grid, med, q25, q75):
                out.append({"objective": obj, "strategy": name, "cost": x, "regret_median": m,
                            "regret_q25": a, "regret_q75": b})
    return pd.DataFrame(out)


def plot(curves: pd.DataFrame, path: Path) -> Path:
    """Regret vs cumulative cost (log-log), one panel per objective, as plotly HTML (the app's
    figure, :func:`engine.plots.trajectory.plot_regret_curves`)."""
    from engine.plots.trajectory import plot_regret_curves

    fig = plot_regret_curves(curves)
    fig.update_layout(title="mixplan bench optimize: MFMS simulator, median regret at 1B / 19,500 steps "
                            "(band: 25-75% of seeds)", width=480 * max(1, curves["objective"].nunique()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs="cdn")
    return path


# ---------------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------------
def latency(n_runs: int = 500, n_ckpt: int = 20, q: int = 4, repeats: int = 3, seed: int = 0,
            weights_path: str | None = None) -> dict:
    """Proposal latency of mfms-bo (fit + acquisition for a batch of q) with ``n_runs`` runs
    of ``n_ckpt`` checkpoints each in the study: the first (cold) ask and warm asks after new
    runs arrive (the GP warm-starts), on one torch thread."""
    import torch

    from engine.runners.mfms_sim import MFMSSimRunner, mfms_study_config
    from engine.store.memory import MemoryStore
    from engine.strategies.base import StudyState, get_strategy
    from engine.study import Study

    torch.set_num_threads(1)
    runner = MFMSSimRunner(weights_path)
    cfg = mfms_study_config("latency", path=runner.path)
    rng = np.random.default_rng(seed)
    fids = StudyState(cfg, pd.DataFrame()).fidelities()
    W = rng.dirichlet(np.ones(5), n_runs)
    idx = rng.integers(len(fids), size=n_runs)
    sizes = [fids[i].model_params / 1e6 for i in idx]
    steps = [fids[i].steps for i in idx]
    # 20 checkpoints per run: every steps/20
    parts = []
    for i in range(n_runs):
        every = max(1, steps[i] // n_ckpt)
        d = runner.sim.run_table(W[i:i + 1], sizes[i], steps[i], every, run_prefix=f"L{i}")
        parts.append(d.tail(n_ckpt))
    store = MemoryStore()
    store.create_study(cfg)
    store.import_runs(cfg.name, pd.concat(parts, ignore_index=True), source="latency")
    study = Study(store, cfg.name)
    strat = get_strategy("mfms-bo", seed=seed)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            trials = study.ask(strat, q)
            times.append(time.perf_counter() - t0)
            # a new result arrives before the next ask (the other proposals are declined)
            study.approve([trials[0].trial_id])
            study.reject([t.trial_id for t in trials[1:]])
            every = MFMSSimRunner(weights_path, checkpoint_every=max(1, trials[0].steps // n_ckpt))
            study.run(trials[0], every, Path(tmp))
    runs = study.runs()
    return {"runs": n_runs, "checkpoints_per_run": n_ckpt, "rows": int(len(runs)), "q": q,
            "cold_s": times[0], "warm_s": times[1:], "warm_median_s": float(np.median(times[1:])),
            "gp_points": int(getattr(strat.model_, "n_train_", -1))}


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def run_benchmark(objectives: list[str], strategies: list[str], seeds: int, out: Path, *, budget: float = 3000.0,
                  max_iter: int = 200, n_init: int = 20, workers: int = 2, noise: float = 0.0,
                  weights_path: str | None = None, measure_latency: bool = True, log=print) -> dict:
    """Run the benchmark and write ``OUT/optimize_runs.csv`` (every iteration),
    ``OUT/optimize_speedups.csv`` (per seed), ``OUT/optimize_summary.csv``,
    ``OUT/optimize_regret.html`` and ``OUT/optimize_summary.json``."""
    from multiprocessing import get_context

    from engine.bench.optimize_truth import cached_optimum
    from engine.runners.mfms_sim import MFMSSimRunner

    out.mkdir(parents=True, exist_ok=True)
    runner = MFMSSimRunner(weights_path)
    all_rows = []
    optima = {}
    t_start = time.perf_counter()
    for obj in objectives:
        maximize = obj.startswith("metric_")
        w_opt, v_opt = cached_optimum(out / "true_optima.json", runner, obj, 1_000_000_000, 19500, maximize=maximize)
        optima[obj] = {"weights": w_opt.tolist(), "value": v_opt}
        spec = BenchSpec(obj, budget, n_init, max_iter, noise, weights_path)
        jobs = [(list(strategies), spec, s, v_opt, maximize) for s in range(seeds)]
        log(f"{obj}: optimum {v_opt:.4f} at {np.round(w_opt, 3).tolist()}; {seeds} seeds x {len(strategies)} "
            f"strategies on {workers} process(es)")
        if workers > 1:
            with get_context("fork").Pool(workers) as pool:
                for rows in pool.imap_unordered(run_seed, jobs):
                    all_rows.extend(rows)
                    log(f"  seed {rows[0]['seed']} done ({time.perf_counter() - t_start:.0f} s)")
        else:
            for j in jobs:
                rows = run_seed(j)
                all_rows.extend(rows)
                log(f"  seed {rows[0]['seed']} done ({time.perf_counter() - t_start:.0f} s)")
    df = pd.DataFrame(all_rows)
    df.to_csv(out / "optimize_runs.csv", index=False)
    su = speedups(df) if "mfms-bo" in strategies else pd.DataFrame()
    summary = summarise(su, df) if len(su) else pd.DataFrame()
    su.to_csv(out / "optimize_speedups.csv", index=False)
    summary.to_csv(out / "optimize_summary.csv", index=False)
    curves = regret_curves(df.dropna(subset=["regret"]))
    curves.to_csv(out / "optimize_curves.csv", index=False)
    try:
        plot(curves, out / "optimize_regret.html")
    except Exception as exc:  # noqa: BLE001 - the CSVs are the result; the plot is a view
        log(f"plot skipped: {exc}")
    lat = latency(weights_path=weights_path) if measure_latency else None
    res = {"objectives": objectives, "strategies": strategies, "seeds": seeds, "budget": budget,
           "max_iter": max_iter, "n_init": n_init, "optima": optima, "latency": lat,
           "wall_s": time.perf_counter() - t_start,
           "summary": summary.to_dict(orient="records") if len(summary) else []}
    (out / "optimize_summary.json").write_text(json.dumps(res, indent=1, default=float))
    return res


def cpu_count() -> int:
    return max(1, min(2, os.cpu_count() or 1))
