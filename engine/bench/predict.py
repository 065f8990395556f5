"""`mixplan bench predict`: how well the loss models predict held-out runs, on real data.

Three benchmarks (each skips cleanly, returning ``None``, where its data is absent):

- ``regmix_bench``: the RegMix tables (``../shared/benchmarks/regmix``, Liu et al. 2024). Fit
  on the 512 1M-parameter runs; R2 and Spearman on the 256 held-out 1M runs; Spearman against
  the same 256 mixtures trained at 60M and the 64 mixtures at ~1B (25B tokens). Predictions
  for the 60M / 1B mixtures are made at the training scale (1M, 1B tokens): the task is to rank
  mixtures, as in the paper. One row per (model, target domain), plus the mean over domains;
  the paper's linear regression is the reference row (``linear``). Every registry model gets
  a row (``REGMIX_MODELS``); one that cannot fit gets a row with its error.
- ``mfms_bench``: the MFMS-BO simulator (``../shared/benchmarks/mfms-sim``). Splits E1..E5:
  runs (random Dirichlet mixtures, every 100-step checkpoint up to 19,500 steps) at the sizes
  <= X, predictions for fresh mixtures at every size > X at 19,500 steps: RMSE and Spearman,
  and the regret at 1B / 19,500 of each model's optimum (simulator value at the model's
  optimum minus the best of 20,000 random mixtures). Every model of ``MFMS_MODELS`` gets a
  row; AutoScale gets per-domain token counts from the simulator's study config
  (``tokens_per_step`` = 1,048,576, as :mod:`engine.runners.mfms_sim` sets it).
- ``scaling_bench``: MFMS-GP fit + predict time on ~100k checkpoint rows (mean and std, and
  the mean alone), and accuracy / time against the exact GP at sizes where the exact GP still
  runs.

Run: ``python -m engine.bench.predict [regmix|mfms|scaling|all] [--quick]``; the results are
dicts of plain lists (``rows``) so the CLI can dump them as JSON; :func:`format_tables` turns
them into rich tables (per model and split, with fit and predict seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

REGMIX_SCALES = {"1m": (1_000_000, 1e9), "60m": (60_000_000, 1e9), "1B": (1_000_000_000, 25e9)}
#: every loss model of the registry plus the paper's linear reference
REGMIX_MODELS = ("linear", "auto", "dmsl", "mixing-law", "regmix", "mfms-gp", "autoscale", "uniform", "natural")
MFMS_MODELS = ("mfms-gp", "auto", "dmsl", "dmsl-joint", "autoscale", "mixing-law", "regmix", "uniform", "natural")
#: the MFMS simulator's tokens per step (engine.runners.mfms_sim's study config)
MFMS_TOKENS_PER_STEP = 1_048_576


def find_benchmarks(path: str | Path | None = None) -> Path | None:
    """The shared benchmarks folder: ``path``, $MIXPLAN_BENCHMARKS, or ../shared/benchmarks
    (relative to the cwd, then to the repository); None where absent."""
    cands = [Path(path)] if path else []
    if os.environ.get("MIXPLAN_BENCHMARKS"):
        cands.append(Path(os.environ["MIXPLAN_BENCHMARKS"]))
    cands += [Path.cwd() / ".." / "shared" / "benchmarks",
              Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks"]
    for c in cands:
        if c.is_dir():
            return c
    return None


# ---------------------------------------------------------------------------------------------
# RegMix tables
# ---------------------------------------------------------------------------------------------
def read_regmix_pair(mixture_csv: Path, loss_csv: Path, model_params: int, tokens: float,
                     split: str) -> pd.DataFrame:
    """A RegMix mixture file + loss file -> run-table rows (one per run), joined on ``index``.

    ``train_the_pile_<d>`` -> ``w_<d>`` (renormalised: the files round to 3 decimals);
    ``metric/the_pile_<d>_val_loss`` -> ``loss_<d>``.
    """
    mix = pd.read_csv(mixture_csv)
    loss = pd.read_csv(loss_csv)
    mix = mix.rename(columns={c: "w_" + c[len("train_the_pile_"):] for c in mix.columns
                              if c.startswith("train_the_pile_")})
    loss = loss.rename(columns={c: "loss_" + c[len("metric/the_pile_"):-len("_val_loss")] for c in loss.columns
                                if c.startswith("metric/the_pile_") and c.endswith("_val_loss")})
    df = mix.merge(loss, on="index", how="inner")
    wc = [c for c in df.columns if c.startswith("w_")]
    df[wc] = df[wc].div(df[wc].sum(axis=1), axis=0)
    df.insert(0, "run_id", [f"regmix-{split}-{i}" for i in df["index"]])
    df.insert(1, "model_params", model_params)
    df.insert(2, "tokens", tokens)
    return df.drop(columns=["index"])


def load_regmix(folder: Path) -> dict[str, pd.DataFrame]:
    """{'train': 512 1M runs, 'test_1m', 'test_60m', 'test_1B'} as run tables."""
    out = {"train": read_regmix_pair(folder / "train_mixture_1m.csv", folder / "train_pile_loss_1m.csv",
                                     *REGMIX_SCALES["1m"], "train")}
    for key, (mp, tok) in REGMIX_SCALES.items():
        out[f"test_{key}"] = read_regmix_pair(folder / f"test_mixture_{key}.csv", folder / f"test_pile_loss_{key}.csv",
                                              mp, tok, f"test_{key}")
    return out


class LinearRegression:
    """The RegMix paper's linear-regression reference: OLS of the loss on the mixture weights."""

    name = "linear"

    def fit(self, runs, objective, **_):
        from engine.models.base import prepare

        p = prepare(runs, objective)
        self.domains_ = p.domains
        X = np.column_stack([np.ones(len(p.y)), p.W])
        self.coef_, *_ = np.linalg.lstsq(X, p.y, rcond=None)
        return self

    def predict(self, query):
        W = query[[f"w_{d}" for d in self.domains_]].to_numpy(float)
        mu = np.column_stack([np.ones(len(W)), W]) @ self.coef_
        return mu, np.zeros(len(mu))


def _r2(y, mu):
    return float(1 - np.sum((y - mu) ** 2) / np.sum((y - y.mean()) ** 2))


def _spearman(y, mu):
    from scipy.stats import spearmanr

    if np.ptp(mu) == 0:  # a constant prediction (fixed-mixture baselines) ranks nothing
        return float("nan")
    return float(spearmanr(y, mu)[0])


def _make(name: str, **kw):
    if name == "linear":
        return LinearRegression()
    from engine.models import get_model

    return get_model(name, **kw)


def _fit(model: str, runs: pd.DataFrame, objective: str, **fit_kw):
    """(fitted model, fit seconds, None) or (None, seconds, error text): a model that cannot fit
    still gets its row in the benchmark, saying why."""
    t0 = time.perf_counter()
    try:
        m = _make(model).fit(runs, objective, **fit_kw)
    except Exception as exc:  # noqa: BLE001 - reported in the model's row
        return None, time.perf_counter() - t0, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return m, time.perf_counter() - t0, None


def _note(m) -> str:
    """What a row should say about a fitted model (a natural mixture without domain sizes, a
    GP whose hyperparameter fit failed, AutoScale's design notes)."""
    parts = []
    if getattr(m, "fit_ok_", True) is False:
        parts.append(m.fit_message_)
    if getattr(m, "note_", None) and "not given" in m.note_:
        parts.append(m.note_)
    parts += list(getattr(m, "notes_", []) or [])
    return "; ".join(parts)


def regmix_bench(folder: str | Path | None = None, *, models=REGMIX_MODELS,
                 targets: list[str] | None = None, log=print) -> dict | None:
    """The RegMix evaluation (module docstring). ``targets``: domains (default: all 13)."""
    root = find_benchmarks(folder) if folder is None or not (Path(folder) / "train_mixture_1m.csv").exists() else None
    reg = Path(folder) if folder is not None and (Path(folder) / "train_mixture_1m.csv").exists() else (
        root / "regmix" if root else None)
    if reg is None or not (reg / "train_mixture_1m.csv").exists():
        log("regmix: ../shared/benchmarks/regmix absent, skipped")
        return None
    data = load_regmix(reg)
    train = data["train"]
    doms = [c[5:] for c in train.columns if c.startswith("loss_")]
    targets = targets or doms
    rows = []
    for model in models:
        for dom in targets:
            obj = f"loss_{dom}"
            m, fit_s, err = _fit(model, train, obj)
            rec = {"model": model, "target": dom, "fit_s": fit_s, "r2_1m": float("nan"),
                   "spearman_1m": float("nan"), "spearman_60m": float("nan"), "spearman_1B": float("nan"),
                   "predict_s": float("nan"), "note": err or _note(m)}
            if m is not None:
                pred_s = 0.0
                for key in ("1m", "60m", "1B"):
                    test = data[f"test_{key}"]
                    q = test.assign(model_params=REGMIX_SCALES["1m"][0], tokens=REGMIX_SCALES["1m"][1])
                    t0 = time.perf_counter()
                    mu, _ = m.predict(q)
                    pred_s += time.perf_counter() - t0
                    y = test[obj].to_numpy(float)
                    if key == "1m":
                        rec["r2_1m"] = _r2(y, mu)
                    rec[f"spearman_{key}"] = _spearman(y, mu)
                rec["predict_s"] = pred_s
            rows.append(rec)
            log(f"regmix {model:11s} {dom:18s} R2 {rec['r2_1m']:.3f}  rho 1M {rec['spearman_1m']:.3f} "
                f"60M {rec['spearman_60m']:.3f} 1B {rec['spearman_1B']:.3f}  fit {fit_s:.2f}s "
                f"predict {rec['predict_s']:.3f}s" + (f"  ({rec['note']})" if rec["note"] else ""))
    df = pd.DataFrame(rows)
    mean = df.groupby("model", sort=False)[["r2_1m", "spearman_1m", "spearman_60m", "spearman_1B",
                                           "fit_s", "predict_s"]].mean().reset_index()
    mean.insert(1, "target", "mean")
    for rec in mean.to_dict("records"):
        log(f"regmix {rec['model']:11s} {'mean':18s} R2 {rec['r2_1m']:.3f}  rho 1M {rec['spearman_1m']:.3f} "
            f"60M {rec['spearman_60m']:.3f} 1B {rec['spearman_1B']:.3f}  fit {rec['fit_s']:.2f}s "
            f"predict {rec['predict_s']:.3f}s (per domain)")
    return {"rows": rows, "mean": mean.to_dict("records"), "n_train": len(train),
            "n_test": {k: len(v) for k, v in data.items() if k != "train"}}


# ---------------------------------------------------------------------------------------------
# MFMS simulator splits
# ---------------------------------------------------------------------------------------------
SPLITS = {"E1": 20, "E2": 60, "E3": 150, "E4": 300, "E5": 500}


def mfms_bench(path: str | Path | None = None, *, objective: str = "loss_stackexchange",
               models=MFMS_MODELS, splits=("E1", "E2", "E3", "E4", "E5"),
               runs_per_size: int = 20, n_test: int = 200, checkpoint_every: int = 100, seed: int = 0,
               log=print) -> dict | None:
    """Train on sizes <= X, predict every size > X at 19,500 steps (module docstring)."""
    from engine.errors import NotFoundError
    from engine.simulators.mfms_sim import DOMAINS, MAX_STEPS, OUTPUTS, SIZES_M, MFMSSimulator

    try:
        sim = MFMSSimulator.load(path)
    except NotFoundError:
        log("mfms: ../shared/benchmarks/mfms-sim/weights.json absent, skipped")
        return None
    j = OUTPUTS.index(objective)
    sign = -1.0 if objective.startswith("metric_") else 1.0
    rng = np.random.default_rng(seed)
    W_test = rng.dirichlet(np.ones(5), n_test)
    W_cand = rng.dirichlet(np.ones(5), 20_000)
    best_1b = float((sign * sim.evaluate(W_cand, 1000, MAX_STEPS)[:, j]).min())
    rows = []
    for split in splits:
        X = SPLITS[split]
        sizes = [s for s in SIZES_M if s <= X]
        W = rng.dirichlet(np.ones(5), runs_per_size * len(sizes))
        sz = np.repeat(sizes, runs_per_size)
        train = sim.run_table(W, sz, MAX_STEPS, checkpoint_every=checkpoint_every, run_prefix=split)
        for model in models:
            m, fit_s, err = _fit(model, train, objective, tokens_per_step=MFMS_TOKENS_PER_STEP)
            base = {"split": split, "train_sizes": f"<={X}M", "model": model, "n_train_rows": len(train),
                    "fit_s": fit_s, "note": err or _note(m)}
            mine = []
            for s in [s for s in SIZES_M if s > X]:
                rec = {**base, "test_size": f"{s}M", "rmse": float("nan"), "spearman": float("nan"),
                       "predict_s": float("nan"), "regret_1B": float("nan"), "optimum_s": float("nan")}
                if m is not None:
                    q = pd.DataFrame(W_test, columns=[f"w_{d}" for d in DOMAINS])
                    q["model_params"], q["steps"] = int(s * 1e6), MAX_STEPS
                    t0 = time.perf_counter()
                    mu, sd = m.predict(q)
                    rec["predict_s"] = time.perf_counter() - t0
                    y = sim.evaluate(W_test, s, MAX_STEPS)[:, j]
                    rec["rmse"], rec["spearman"] = float(np.sqrt(np.mean((mu - y) ** 2))), _spearman(y, mu)
                mine.append(rec)
            if m is not None:
                t0 = time.perf_counter()
                try:
                    opt = m.optimum(1_000_000_000, steps=MAX_STEPS)
                    w = np.array([opt.weights[d] for d in DOMAINS])
                    regret = float(sign * sim.evaluate(w, 1000, MAX_STEPS)[0, j] - best_1b)
                except Exception as exc:  # noqa: BLE001 - reported in the row
                    regret = float("nan")
                    base["note"] = (base["note"] + "; " if base["note"] else "") + \
                        f"optimum: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                opt_s = time.perf_counter() - t0
                for r in mine:
                    r.update(regret_1B=regret, optimum_s=opt_s, note=base["note"])
            rows += mine
            pred_total = float(np.nansum([r["predict_s"] for r in mine]))
            log(f"mfms {split} {model:11s} rmse " + " ".join(f"{r['test_size']}:{r['rmse']:.3f}" for r in mine)
                + f"  rho 1B {mine[-1]['spearman']:.3f}  regret@1B {mine[-1]['regret_1B']:.4f}  fit {fit_s:.1f}s"
                + f"  predict {pred_total:.2f}s ({len(mine)} x {n_test} rows)"
                + (f"  ({base['note']})" if base["note"] else ""))
    df = pd.DataFrame(rows)
    summary = df.groupby(["split", "model"], sort=False).agg(
        rmse=("rmse", "mean"), spearman=("spearman", "mean"), spearman_1B=("spearman", "last"),
        regret_1B=("regret_1B", "first"), fit_s=("fit_s", "first"), predict_s=("predict_s", "sum"),
        optimum_s=("optimum_s", "first"), n_train_rows=("n_train_rows", "first"),
        note=("note", "first")).reset_index()
    return {"objective": objective, "rows": rows, "summary": summary.to_dict("records")}


# ---------------------------------------------------------------------------------------------
# 100k rows, and against the exact GP
# ---------------------------------------------------------------------------------------------
def scaling_bench(path: str | Path | None = None, *, rows: int = 100_000, objective: str = "loss_stackexchange",
                  exact_runs=(5, 10, 20, 40), exact_checkpoints: int = 20, seed: int = 0, log=print) -> dict | None:
    """MFMS-GP on ~``rows`` simulator checkpoints (fit, predict all rows, held-out accuracy), and
    MFMS-GP vs the exact GP on small tables (every run with ``exact_checkpoints`` checkpoints)."""
    from engine.errors import NotFoundError
    from engine.models import get_model
    from engine.simulators.mfms_sim import DOMAINS, MAX_STEPS, OUTPUTS, SIZES_M, MFMSSimulator

    try:
        sim = MFMSSimulator.load(path)
    except NotFoundError:
        log("scaling: ../shared/benchmarks/mfms-sim/weights.json absent, skipped")
        return None
    j = OUTPUTS.index(objective)
    rng = np.random.default_rng(seed)
    W_test = rng.dirichlet(np.ones(5), 500)
    s_test = rng.choice(SIZES_M, 500)
    z_test = rng.integers(10, 196, 500) * 100
    q = pd.DataFrame(W_test, columns=[f"w_{d}" for d in DOMAINS])
    q["model_params"], q["steps"] = (s_test * 1e6).astype(np.int64), z_test
    y_test = sim.evaluate(W_test, s_test, z_test)[:, j]
    out: dict = {"objective": objective}

    n_runs = int(np.ceil(rows / 195))
    W = rng.dirichlet(np.ones(5), n_runs)
    big = sim.run_table(W, rng.choice(SIZES_M, n_runs), MAX_STEPS, checkpoint_every=100)
    t0 = time.perf_counter()
    gp = get_model("mfms-gp").fit(big, objective)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mu_all, _ = gp.predict(big)
    pred_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gp.predict_mean(big)
    pred_mean_s = time.perf_counter() - t0
    mu, _ = gp.predict(q)
    out["big"] = {"rows": len(big), "runs": n_runs, "gp_points": gp.n_train_, "fit_s": fit_s,
                  "predict_all_rows_s": pred_s, "predict_mean_all_rows_s": pred_mean_s,
                  "train_rmse": float(np.sqrt(np.mean((mu_all - big[objective]) ** 2))),
                  "test_rmse": float(np.sqrt(np.mean((mu - y_test) ** 2))), "test_spearman": _spearman(y_test, mu),
                  "fit_ok": bool(gp.fit_ok_)}
    log(f"scaling: {len(big):,} rows ({n_runs} runs) -> {gp.n_train_} GP points: fit {fit_s:.1f}s, "
        f"predict {len(big):,} rows {pred_s:.1f}s (mean only {pred_mean_s:.1f}s), "
        f"held-out RMSE {out['big']['test_rmse']:.4f}")
    # warm refit after adding 4 runs
    W4 = rng.dirichlet(np.ones(5), 4)
    more = pd.concat([big, sim.run_table(W4, 1000, 2000, run_prefix="new")], ignore_index=True)
    t0 = time.perf_counter()
    get_model("mfms-gp").fit(more, objective, warm_start=gp)
    out["big"]["warm_refit_s"] = time.perf_counter() - t0
    log(f"scaling: warm-started refit with 4 more runs {out['big']['warm_refit_s']:.1f}s")

    cmp = []
    grid = np.unique(np.geomspace(100, MAX_STEPS, exact_checkpoints).round(-2))
    for R in exact_runs:
        W = rng.dirichlet(np.ones(5), R)
        sz = rng.choice(SIZES_M, R)
        parts = []
        for i in range(R):
            t = sim.run_table(W[i:i + 1], sz[i], MAX_STEPS, checkpoint_every=100, run_prefix=f"r{i}")
            parts.append(t[t["steps"].isin(grid)])
        small = pd.concat(parts, ignore_index=True)
        for name in ("mfms-gp", "mfms-gp-exact"):
            t0 = time.perf_counter()
            m = get_model(name).fit(small, objective)
            f_s = time.perf_counter() - t0
            mu, _ = m.predict(q)
            cmp.append({"runs": R, "rows": len(small), "model": name, "gp_points": m.n_train_, "fit_s": f_s,
                        "test_rmse": float(np.sqrt(np.mean((mu - y_test) ** 2))),
                        "test_spearman": _spearman(y_test, mu)})
            log(f"scaling: {len(small)} rows {name:13s} points {m.n_train_:5d} fit {f_s:.1f}s "
                f"RMSE {cmp[-1]['test_rmse']:.4f} rho {cmp[-1]['test_spearman']:.3f}")
    out["vs_exact"] = cmp
    return out


def run_predict_bench(which: str = "all", *, quick: bool = False, jobs: int = 1, log=print) -> dict:
    """Run the chosen benchmarks; ``quick`` shrinks them (Pile-CC only, E1/E3, 20k rows);
    ``jobs``: the extrapolation backtests run at once (separate processes)."""
    res: dict = {}
    if which in ("regmix", "all"):
        res["regmix"] = regmix_bench(targets=["pile_cc"] if quick else None, log=log)
    if which in ("mfms", "all"):
        res["mfms"] = mfms_bench(splits=("E1", "E3") if quick else tuple(SPLITS), log=log)
    if which in ("scaling", "all"):
        res["scaling"] = scaling_bench(rows=20_000 if quick else 100_000,
                                       exact_runs=(5, 10) if quick else (5, 10, 20, 40), log=log)
    if which in ("extrapolation", "all"):
        from engine.bench.extrapolation import run_extrapolation_bench

        res["extrapolation"] = run_extrapolation_bench(quick=quick, jobs=jobs, log=log)
    return res


def _f(x, fmt: str) -> str:
    return "" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, fmt)


def format_tables(res: dict) -> list:
    """Rich tables of :func:`run_predict_bench`'s result: RegMix per (model, domain) with the
    per-domain means, MFMS per (split, model), and the scaling benchmark; each with fit and
    predict seconds."""
    from rich.table import Table

    out = []
    if res.get("extrapolation"):
        from engine.bench.extrapolation import format_extrapolation_tables

        out += format_extrapolation_tables(res["extrapolation"])
    reg = res.get("regmix")
    if reg:
        t = Table("model", "target", "R2 1M", "rho 1M", "rho 60M", "rho 1B", "fit s", "predict s", "note",
                  title=f"RegMix: fit on {reg['n_train']} 1M runs, rank held-out mixtures at 1M / 60M / 1B")
        means = {r["model"]: r for r in reg["mean"]}
        by_model: dict[str, list] = {}
        for r in reg["rows"]:
            by_model.setdefault(r["model"], []).append(r)
        for model, rs in by_model.items():
            for r in rs + ([{**means[model], "note": ""}] if len(rs) > 1 else []):
                t.add_row(model, r["target"], _f(r["r2_1m"], ".3f"), _f(r["spearman_1m"], ".3f"),
                          _f(r["spearman_60m"], ".3f"), _f(r["spearman_1B"], ".3f"), _f(r["fit_s"], ".2f"),
                          _f(r["predict_s"], ".3f"), r.get("note") or "")
            t.rows[-1].end_section = True
        out.append(t)
    mf = res.get("mfms")
    if mf:
        t = Table("split", "model", "RMSE", "rho", "rho 1B", "regret@1B", "fit s", "predict s", "optimum s",
                  "train rows", "note", title=f"MFMS simulator ({mf['objective']}): train on sizes <= X, "
                                              "predict every larger size at 19,500 steps")
        last = None
        for r in mf["summary"]:
            if last is not None and r["split"] != last:
                t.rows[-1].end_section = True
            last = r["split"]
            t.add_row(r["split"], r["model"], _f(r["rmse"], ".4f"), _f(r["spearman"], ".3f"),
                      _f(r["spearman_1B"], ".3f"), _f(r["regret_1B"], ".4f"), _f(r["fit_s"], ".1f"),
                      _f(r["predict_s"], ".2f"), _f(r["optimum_s"], ".1f"), f"{r['n_train_rows']:,}",
                      r.get("note") or "")
        out.append(t)
    sc = res.get("scaling")
    if sc:
        b = sc["big"]
        t = Table("rows", "runs", "GP points", "fit s", "predict s (mean+std)", "predict s (mean only)",
                  "warm refit s", "held-out RMSE", "rho", title=f"MFMS-GP at scale ({sc['objective']})")
        t.add_row(f"{b['rows']:,}", f"{b['runs']:,}", f"{b['gp_points']:,}", _f(b["fit_s"], ".1f"),
                  _f(b["predict_all_rows_s"], ".1f"), _f(b.get("predict_mean_all_rows_s"), ".1f"),
                  _f(b.get("warm_refit_s"), ".1f"), _f(b["test_rmse"], ".4f"), _f(b["test_spearman"], ".3f"))
        out.append(t)
        t = Table("runs", "rows", "model", "GP points", "fit s", "held-out RMSE", "rho",
                  title="MFMS-GP (binned) against the exact GP")
        for r in sc["vs_exact"]:
            t.add_row(str(r["runs"]), f"{r['rows']:,}", r["model"], f"{r['gp_points']:,}", _f(r["fit_s"], ".1f"),
                      _f(r["test_rmse"], ".4f"), _f(r["test_spearman"], ".3f"))
        out.append(t)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("which", nargs="?", default="all", choices=["regmix", "mfms", "scaling", "extrapolation", "all"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    a = ap.parse_args(argv)
    res = run_predict_bench(a.which, quick=a.quick)
    from rich.console import Console

    for t in format_tables(res):
        Console().print(t)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(res, indent=2, default=float))


if __name__ == "__main__":
    main()
