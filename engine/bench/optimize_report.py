"""Plain-text tables of ``mixplan bench optimize`` results, and reading them back (:func:`load_results`)."""

from __future__ import annotations


def format_summary(res: dict) -> str:
    lines = [f"mfms-bo speed-up (cost for the baseline to reach its final regret / cost for mfms-bo to reach it); "
             f"{res['seeds']} seeds, budget {res['budget']:g}, at most {res['max_iter']} runs per strategy; "
             "'median' on cost incl. the shared initial design",
             f"{'objective':<22} {'baseline':<10} {'median':>7} {'25-75%':>13} {'min-max':>15} {'reached':>8} "
             f"{'regret b':>9} {'regret m':>9} {'own-cost median (25-75%)':>26}"]
    for r in res["summary"]:
        lines.append(f"{r['objective']:<22} {r['baseline']:<10} {r['speedup_median']:>7.2f} "
                     f"{r['speedup_q25']:>6.2f}-{r['speedup_q75']:<6.2f} {r['speedup_min']:>7.2f}-{r['speedup_max']:<7.2f} "
                     f"{r['mfms_reached']:>4}/{r['seeds']:<3} {r['baseline_final_regret_median']:>9.4f} "
                     f"{r['mfms_final_regret_median']:>9.4f} {r['speedup_own_median']:>9.3g} "
                     f"({r['speedup_own_q25']:.3g}-{r['speedup_own_q75']:.3g})")
    lat = res.get("latency")
    if lat:
        lines.append(f"proposal latency (mfms-bo, q={lat['q']}, {lat['runs']} runs x {lat['checkpoints_per_run']} "
                     f"checkpoints): cold {lat['cold_s']:.2f} s, warm median {lat['warm_median_s']:.2f} s "
                     f"({', '.join(f'{t:.2f}' for t in lat['warm_s'])})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Reading results back (the app's Trajectory page)
# ---------------------------------------------------------------------------------------------
RUNS_FILE = "optimize_runs.csv"
CURVES_FILE = "optimize_curves.csv"
SUMMARY_FILE = "optimize_summary.csv"
_RUNS_COLS = {"strategy", "seed", "iteration", "total_cost", "regret", "objective"}
_CURVES_COLS = {"objective", "strategy", "cost", "regret_median"}


def load_results(source, name: str | None = None):
    """The median regret curves and the speed-up summary of a ``mixplan bench optimize`` run.

    ``source``: its output folder, a path to ``optimize_runs.csv`` (every iteration: the curves
    and speed-ups are computed here with :func:`engine.bench.optimize.regret_curves`,
    :func:`~engine.bench.optimize.speedups` and :func:`~engine.bench.optimize.summarise`) or to
    ``optimize_curves.csv`` (the curves as written; the summary is read from
    ``optimize_summary.csv`` beside it where there is one), or an uploaded file of either
    (``name`` its file name). Returns ``(curves, summary)``; ``summary`` may be empty (no
    mfms-bo in the run, or curves alone)."""
    from pathlib import Path

    import pandas as pd

    from engine.bench.optimize import regret_curves, speedups, summarise
    from engine.errors import ValidationError

    folder = None
    if isinstance(source, (str, Path)):
        p = Path(source).expanduser()
        if p.is_dir():
            folder = p
            p = p / RUNS_FILE if (p / RUNS_FILE).exists() else p / CURVES_FILE
        if not p.exists():
            raise ValidationError(f"no benchmark results at {p}.",
                                  fix=f"give the folder `mixplan bench optimize --out` wrote, or its {RUNS_FILE} / "
                                      f"{CURVES_FILE}.")
        folder = folder or p.parent
        name = p.name
        source = p
    try:
        df = pd.read_csv(source)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise ValidationError(f"{name or 'the file'} is not a readable CSV ({exc}).") from exc
    cols = set(df.columns)
    if _RUNS_COLS <= cols:
        df = df.dropna(subset=["regret"])
        if df.empty:
            raise ValidationError(f"{name or 'the file'} has no finite regret (every strategy failed?).")
        curves = regret_curves(df)
        su = speedups(df) if "mfms-bo" in set(df["strategy"]) else pd.DataFrame()
        return curves, (summarise(su, df) if len(su) else pd.DataFrame())
    if _CURVES_COLS <= cols:
        summary = pd.DataFrame()
        if folder is not None and (folder / SUMMARY_FILE).exists():
            try:
                summary = pd.read_csv(folder / SUMMARY_FILE)
            except Exception:  # noqa: BLE001 - an empty summary file (no mfms-bo) is fine
                summary = pd.DataFrame()
        return df, summary
    raise ValidationError(
        f"{name or 'the file'} is neither {RUNS_FILE} nor {CURVES_FILE} of `mixplan bench optimize`.",
        fix=f"{RUNS_FILE} has columns {', '.join(sorted(_RUNS_COLS))}; {CURVES_FILE} has "
            f"{', '.join(sorted(_CURVES_COLS))}.")
