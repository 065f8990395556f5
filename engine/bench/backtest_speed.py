"""`mixplan bench backtest`: how long `mixplan backtest` takes on a 500-run study.

A user runs the backtest before trusting a model (and the recommendation runs it on every new
study), so it must stay fast: the target is a 500-run study, 4 models, calibrated, in < 60 s on
a 2-core machine. Two tables:

- ``synthetic``: the product's own synthetic study (:mod:`engine.simulators.synthetic`), 500
  runs x 20 checkpoints at 5 sizes, the mean loss of 3 domains (always available);
- ``mfms-sim``: 504 runs (72 per size, 7 sizes; 105 with ``quick``) of the MFMS-BO paper's simulator, every 1,000
  steps, one domain's loss (where ``../shared/benchmarks/mfms-sim`` is present).

The baseline, measured in the same run, is one fit of the same model on every run (what
``mixplan optimum`` pays): the ratio says how many fits a backtest costs, which the machine's
speed does not change. Per model: the fits the backtest made, its seconds and that ratio.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

#: the four models the target is stated for (auto's candidates: the laws, the GP, the tree model)
SPEED_MODELS = ("dmsl", "mixing-law", "mfms-gp", "regmix")
TARGET_S = 60.0


def _tables(quick: bool) -> list[tuple[str, pd.DataFrame, str, float]]:
    """(name, runs, objective, tokens_per_step) of each study timed; ``quick``: ~100 runs."""
    from engine.bench.extrapolation import mfms_table
    from engine.bench.predict import MFMS_TOKENS_PER_STEP
    from engine.simulators import synthetic

    n = 100 if quick else 500
    out = [("synthetic", synthetic.runs_table(n_runs=n, checkpoints=20), "mean_loss", synthetic.TOKENS_PER_STEP)]
    sim = mfms_table(runs_per_size=-(-n // 7), checkpoint_every=1000)  # 7 sizes: 504 runs
    if sim is not None:
        sim = sim[["run_id", "model_params", "steps"] + [c for c in sim.columns
                                                         if c.startswith("w_") or c == "loss_stackexchange"]]
        out.append(("mfms-sim", sim, "loss_stackexchange", MFMS_TOKENS_PER_STEP))
    return out


def backtest_speed(*, models=SPEED_MODELS, quick: bool = False, log: Callable[..., None] = print) -> dict:
    """Time a calibrated ``cut=auto`` backtest of each table with ``models`` (module docstring)."""
    from engine.models import get_model
    from engine.models.backtest import backtest

    tables = []
    for name, runs, objective, tps in _tables(quick):
        fits: dict[str, int] = {}

        def make(model_name: str, fits=fits):
            m = get_model(model_name)
            fit = m.fit

            def counted(*a, **k):
                fits[model_name] = fits.get(model_name, 0) + 1
                return fit(*a, **k)

            m.fit = counted
            return m

        log(f"backtest/{name}: {runs['run_id'].nunique()} runs, {len(runs):,} checkpoints, "
            f"{len(models)} models")
        t0 = time.perf_counter()
        res = backtest(runs, objective, models=list(models), tokens_per_step=tps, make_model=make)
        total = time.perf_counter() - t0
        per_model = res.rows.groupby(["model", "cut"], sort=False)["fit_s"].first().groupby("model", sort=False).sum()
        rows = []
        for m in models:
            t1 = time.perf_counter()
            get_model(m).fit(runs, objective, tokens_per_step=tps)
            one = time.perf_counter() - t1
            bt = float(per_model.get(m, np.nan))
            rows.append({"model": m, "fits": fits.get(m, 0), "backtest_s": bt, "one_fit_s": one,
                         "ratio": bt / one if one > 0 else np.nan})
            log(f"  {m}: backtest {bt:.1f} s ({fits.get(m, 0)} fits), one fit on every run {one:.2f} s")
        tables.append({"table": name, "runs": int(runs["run_id"].nunique()), "checkpoints": len(runs),
                       "objective": objective, "cuts": res.cuts, "total_s": total, "target_s": TARGET_S,
                       "recommended": res.recommended, "rows": rows})
        log(f"backtest/{name}: {total:.1f} s in all (target < {TARGET_S:.0f} s)")
    return {"tables": tables}


def format_backtest_speed(res: dict) -> list:
    """One rich table per study: a row per model and the total against the target."""
    from rich.table import Table

    out = []
    for tab in res["tables"]:
        t = Table("model", "fits", "backtest s", "one fit s", "backtest / one fit",
                  title=f"backtest of {tab['table']}: {tab['runs']} runs, {tab['checkpoints']:,} checkpoints, "
                        f"{len(tab['cuts'])} cuts, calibrated ({tab['objective']})")
        for r in tab["rows"]:
            t.add_row(r["model"], str(r["fits"]), f"{r['backtest_s']:.1f}", f"{r['one_fit_s']:.2f}",
                      f"{r['ratio']:.1f}x")
        verdict = "within" if tab["total_s"] < tab["target_s"] else "OVER"
        t.add_row("all", "", f"{tab['total_s']:.1f}", "", f"{verdict} the {tab['target_s']:.0f} s target",
                  end_section=True)
        out.append(t)
    return out
