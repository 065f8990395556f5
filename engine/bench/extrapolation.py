"""`mixplan bench predict extrapolation`: fit small, predict larger, on real tables.

The question mixplan answers is which mixture is best at a scale nobody trained at, so the
models are compared by leave-larger-out splits (:func:`engine.models.backtest.backtest`:
Spearman, mean relative error, regret of the predicted best, +-1/+-2 std coverage of the
calibrated std), never by in-sample fit:

- ``regmix``: the RegMix tables (Liu et al. 2024): the 512 training runs and the first 64 test
  mixtures at 1M parameters, the same 64 mixtures at 60M, fitted; the 64 mixtures trained at
  ~1B parameters (25B tokens) predicted (size 16.7x, tokens 25x beyond). One backtest per loss
  domain (the paper's per-domain ranking task) plus the mean over domains.
- ``mfms``: the MFMS-BO simulator's SlimPajama runs: ``runs_per_size`` random mixtures at each
  of its sizes (20M-1B), a checkpoint every ``checkpoint_every`` steps up to 19,500, a little
  noise per checkpoint and per run (real runs are not noiseless); splits fit the sizes <= X and
  predict the final checkpoint of every run at each larger size. A ``noise ceiling`` row per
  split scores the noise-free simulator itself against the noisy runs: the Spearman and the
  "best found" no model can beat, since the seed noise alone reorders close mixtures.

``mfms-gp`` (the default before ``auto``) is the baseline measured in the same run; ``auto``
is mixplan's default (the backtest-chosen, calibrated model, choosing on the fitted sizes only).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from engine.bench.predict import REGMIX_SCALES, find_benchmarks, load_regmix
from engine.models.backtest import final_rows

MODELS = ("mfms-gp", "auto", "dmsl", "dmsl-joint", "mixing-law", "regmix")
#: the simulator's noise-free value as a "model": what seed noise leaves for any model to find
CEILING = "noise ceiling"
MFMS_SPLITS = {"E3": 150, "E4": 300, "E5": 500}


def regmix_table(folder: Path, n_test: int = 64) -> pd.DataFrame:
    """The leave-larger-out RegMix study: 512 train + ``n_test`` test runs at 1M, the same
    ``n_test`` mixtures at 60M, and the 64 runs at ~1B (the held-out size)."""
    data = load_regmix(folder)
    parts = [data["train"], data["test_1m"].head(n_test), data["test_60m"].head(n_test), data["test_1B"]]
    return pd.concat(parts, ignore_index=True)


def regmix_extrapolation(folder: str | Path | None = None, *, models=MODELS, targets: list[str] | None = None,
                         jobs: int = 1, log=print) -> dict | None:
    """Per-domain backtests of RegMix's tables, cut at 60M (module docstring); ``jobs`` domains
    at once (:func:`run_tasks`)."""
    root = find_benchmarks(folder)
    if root is None or not (root / "regmix" / "train_mixture_1m.csv").exists():
        log("extrapolation/regmix: ../shared/benchmarks/regmix absent, skipped")
        return None
    doms = [c[5:] for c in regmix_table(root / "regmix").columns if c.startswith("loss_")]
    rows = run_tasks(_regmix_domain, [(root, dom, tuple(models)) for dom in targets or doms], jobs, log)
    df = pd.DataFrame(rows)
    return {"rows": rows, "mean": _mean(df, ["model"]).to_dict("records"), "n_fit_runs": 512 + 64 + 64,
            "held_out": "64 mixtures at ~1B params, 25B tokens"}


def _regmix_domain(root: Path, dom: str, models: tuple[str, ...]) -> tuple[list[dict], str]:
    """One RegMix domain's backtest: its rows and its log line."""
    from engine.models.backtest import backtest

    t0 = time.perf_counter()
    res = backtest(regmix_table(root / "regmix"), f"loss_{dom}", models=models, cut=REGMIX_SCALES["60m"][0])
    recs = res.rows.to_dict("records")
    line = f"extrapolation/regmix {dom:18s} " + "  ".join(
        f"{r['model']}: rho {r['spearman']:.3f} mre {r['mre']:.1%}" for r in recs if r["error"] is None
    ) + f"  ({time.perf_counter() - t0:.0f}s)"
    return [_row(r) | {"target": dom} for r in recs], line


def run_tasks(fn, args: list[tuple], jobs: int, log) -> list[dict]:
    """``fn(*a)`` for every ``a`` (each returns (rows, log line)), ``jobs`` at a time in fresh
    processes with one torch thread each (2 jobs on 2 cores take about half the time); rows in
    the order of ``args`` whatever order they finish in, each log line as it finishes."""
    if jobs <= 1 or len(args) <= 1:
        out = []
        for a in args:
            rows, line = fn(*a)
            log(line)
            out.append(rows)
        return [r for rows in out for r in rows]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a forked child of a process whose OpenMP pool is running can hang
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_one_thread) as ex:
        with _this_module_as_main():  # the workers start at the first submissions
            futures = {ex.submit(fn, *a): i for i, a in enumerate(args)}
        done: dict[int, list[dict]] = {}
        for f in as_completed(futures):
            rows, line = f.result()
            log(line)
            done[futures[f]] = rows
    return [r for i in range(len(args)) for r in done[i]]


@contextmanager
def _this_module_as_main():
    """A spawned worker first imports its parent's ``__main__``. Where that is a script that must
    not run again (a Streamlit page run in-process, as the app's tests do, stays ``__main__``;
    the worker running it died at once), the workers import this module instead."""
    import importlib.util
    import sys
    import types

    main = sys.modules.get("__main__")
    stand_in = types.ModuleType("__main__")
    stand_in.__spec__ = importlib.util.find_spec(__name__)
    sys.modules["__main__"] = stand_in
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def mfms_table(path: str | Path | None = None, *, runs_per_size: int = 20, checkpoint_every: int = 500,
               noise: float = 0.004, run_noise: float = 0.003, seed: int = 0) -> pd.DataFrame | None:
    """Simulated SlimPajama runs at every size of the MFMS-BO simulator (None where absent)."""
    from engine.errors import NotFoundError
    from engine.simulators.mfms_sim import MAX_STEPS, SIZES_M, MFMSSimulator

    try:
        sim = MFMSSimulator.load(path)
    except NotFoundError:
        return None
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.full(5, 0.7), runs_per_size * len(SIZES_M))
    sizes = np.repeat(SIZES_M, runs_per_size)
    df = sim.run_table(W, sizes, MAX_STEPS, checkpoint_every=checkpoint_every, noise=noise, seed=seed,
                       run_prefix="mfms")
    # a run-level offset (seed-to-seed variation) on every output of the run
    offs = pd.Series(rng.normal(0.0, run_noise, len(W)), index=[f"mfms-{i}" for i in range(len(W))])
    for c in [c for c in df.columns if c.startswith("loss_")]:
        df[c] = df[c] + df["run_id"].map(offs).to_numpy()
    return df


def mfms_extrapolation(path: str | Path | None = None, *, models=MODELS, objectives=("mean_loss",
                       "loss_stackexchange"), splits=tuple(MFMS_SPLITS), jobs: int = 1, log=print) -> dict | None:
    """Leave-larger-out splits of the simulator (module docstring); ``jobs`` (objective, split)
    pairs at once (:func:`run_tasks`)."""
    table = mfms_table(path)
    if table is None:
        log("extrapolation/mfms: ../shared/benchmarks/mfms-sim/weights.json absent, skipped")
        return None
    rows = run_tasks(_mfms_split, [(path, obj, split, tuple(models)) for obj in objectives for split in splits],
                     jobs, log)
    df = pd.DataFrame(rows)
    return {"rows": rows, "mean": _mean(df, ["objective", "model"]).to_dict("records"),
            "runs_per_size": int(table["run_id"].nunique() // 7)}


def _mfms_split(path, obj: str, split: str, models: tuple[str, ...]) -> tuple[list[dict], str]:
    """One (objective, split) of the simulator: the models' rows, the noise ceiling's, a log line."""
    from engine.models.backtest import backtest

    t0 = time.perf_counter()
    table = mfms_table(path)
    table = table.drop(columns=[c for c in table.columns if c.startswith("metric_") or c == "train_ce"])
    clean = final_rows(mfms_table(path, noise=0.0, run_noise=0.0)).set_index("run_id")
    cut = MFMS_SPLITS[split] * 1_000_000
    res = backtest(table, obj, models=models, cut=cut, tokens_per_step=1_048_576)
    rows = [_row(r) | {"objective": obj, "split": split} for r in res.rows.to_dict("records")]
    ceiling = noise_ceiling(table, clean, obj, cut, split)
    line = (f"extrapolation/mfms {obj} {split}: " + "  ".join(
        f"{r.model}: rho {r.spearman:.3f} mre {r.mre:.1%} cov {r.coverage_1std:.0%}"
        for r in res.summary.itertuples() if r.error is None)
        + f"  {CEILING}: rho {np.mean([c['spearman'] for c in ceiling]):.3f}"
        + f"  ({time.perf_counter() - t0:.0f}s)")
    return rows + ceiling, line


def noise_ceiling(table: pd.DataFrame, clean: pd.DataFrame, objective: str, cut: int, split: str) -> list[dict]:
    """Rows of the noise-free simulator (``clean``: final checkpoints by run id) scored as a
    model against the noisy held-out runs of ``table`` above ``cut`` (no std: no coverage)."""
    from engine.models.backtest import score
    from engine.runtable.schema import objective_values

    held = final_rows(table[table["model_params"] > cut])
    obs = objective_values(held, objective).to_numpy(float)
    truth = objective_values(clean.loc[held["run_id"]].reset_index(), objective).to_numpy(float)
    out = []
    for size, i in held.reset_index(drop=True).groupby("model_params").indices.items():
        sc = score(obs[i], truth[i], np.zeros(len(i)))
        out.append(_row(sc | {"model": CEILING, "cut": cut, "model_params": int(size), "coverage_1std": np.nan,
                              "coverage_2std": np.nan, "size_ratio": float(size) / cut, "fit_s": 0.0})
                   | {"objective": objective, "split": split})
    return out


def _row(r: dict) -> dict:
    keep = ("model", "cut", "model_params", "n", "spearman", "mre", "best_regret", "rel_regret", "coverage_1std",
            "coverage_2std", "coverage_1std_raw", "coverage_2std_raw", "size_ratio", "fit_s", "error")
    return {k: r.get(k) for k in keep}


def _mean(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    cols = ["spearman", "mre", "best_regret", "rel_regret", "coverage_1std", "coverage_2std", "fit_s"]
    ok = df[df["error"].isna()]
    out = ok.groupby(by, sort=False)[cols].mean().reset_index()
    found = ok.assign(found=ok["best_regret"] <= 1e-12).groupby(by, sort=False)["found"].mean().reset_index()
    return out.merge(found, on=by)


def run_extrapolation_bench(*, quick: bool = False, jobs: int = 1, log=print) -> dict:
    """Both tables; ``quick``: Pile-CC only on RegMix, mean_loss and split E4 on the simulator;
    ``jobs``: backtests run at once (one process and one torch thread each)."""
    return {"regmix": regmix_extrapolation(targets=["pile_cc"] if quick else None, jobs=jobs, log=log),
            "mfms": mfms_extrapolation(objectives=("mean_loss",) if quick else ("mean_loss", "loss_stackexchange"),
                                       splits=("E4",) if quick else tuple(MFMS_SPLITS), jobs=jobs, log=log)}


def format_extrapolation_tables(res: dict) -> list:
    """Rich tables: per model the mean over held-out groups (Spearman, MRE, regret, share of
    held-out sizes where the true best was found, coverage)."""
    from rich.table import Table

    out = []
    for key, title in (("regmix", "RegMix leave-larger-out: fit 1M + 60M, predict ~1B (mean over 13 domains)"),
                       ("mfms", "MFMS simulator leave-larger-out: fit sizes <= X, predict every larger size")):
        r = res.get(key)
        if not r:
            continue
        t = Table(*(["objective"] if key == "mfms" else []), "model", "Spearman", "MRE", "regret", "best found",
                  "±1σ cover", "±2σ cover", "fit s", title=title)
        for m in r["mean"]:
            t.add_row(*([m["objective"]] if key == "mfms" else []), m["model"], f"{m['spearman']:.3f}",
                      f"{m['mre']:.2%}", f"{m['best_regret']:.4f}", f"{m['found']:.0%}", _pct(m["coverage_1std"]),
                      _pct(m["coverage_2std"]), f"{m['fit_s']:.1f}")
        out.append(t)
    return out


def _pct(x) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.0%}"
