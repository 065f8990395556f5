"""Store benchmark: import speed and the latency of the app's queries at 100k checkpoints.

A synthetic run table (``runs`` runs x ``checkpoints`` checkpoints, ``domains`` domains with a
loss column each) is written as CSV, then timed:

- ``read+validate``: :func:`engine.runtable.read_run_table` on that CSV;
- ``import``: :meth:`Store.import_runs` of the validated table (one transaction);
- the queries the app runs on every page view: ``runs_frame`` (a study's run table),
  ``latest_checkpoints`` (one row per run), ``list_studies`` and ``trials_frame``, each the
  median of ``repeats`` calls (each call opens and closes its own connection, as the app does);
- baselines measured in the same process on the same file: "raw CSV load" is DuckDB
  ``read_csv`` + ``CREATE TABLE AS`` of the CSV (no validation, no normalised schema);
  "raw SELECT *" reads that wide table into pandas (the cheapest possible "runs of a study");
  "raw latest/run" picks each run's last row from it with a window function. Ratios
  (store / baseline) travel between machines better than seconds.

This is a benchmark, not a test: ``mixplan bench store [--rows N] [--json]``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def synthetic_run_table(rows: int = 100_000, *, checkpoints: int = 20, domains: int = 5,
                        seed: int = 0) -> pd.DataFrame:
    """A run table of ``rows`` checkpoints: ``rows // checkpoints`` runs, Dirichlet mixtures,
    three model sizes, steps 100, 200, ... and losses that fall with steps."""
    rng = np.random.default_rng(seed)
    runs = max(1, rows // checkpoints)
    names = [f"d{i}" for i in range(domains)]
    w = np.round(rng.dirichlet(np.ones(domains), size=runs), 6)
    w[:, -1] = 1.0 - w[:, :-1].sum(axis=1)
    w = np.clip(w, 0, None)
    sizes = rng.choice([1_000_000, 10_000_000, 100_000_000], size=runs)
    run_idx = np.repeat(np.arange(runs), checkpoints)
    steps = np.tile(np.arange(1, checkpoints + 1) * 100, runs)
    df = pd.DataFrame({"run_id": [f"r{i:06d}" for i in run_idx], "model_params": sizes[run_idx],
                       "tokens": steps * 65536, "steps": steps})
    for j, d in enumerate(names):
        df[f"w_{d}"] = w[run_idx, j]
    base = 2.0 + 3.0 * np.exp(-steps / 800.0)
    for j, d in enumerate(names):
        df[f"loss_{d}"] = base - 0.5 * w[run_idx, j] + rng.normal(0, 0.01, len(df))
    return df.iloc[:rows].reset_index(drop=True)


@dataclass(frozen=True)
class Timing:
    name: str
    seconds: float
    rows: int
    baseline: str | None = None
    baseline_seconds: float | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    @property
    def ratio(self) -> float | None:
        if self.baseline_seconds is None or self.baseline_seconds <= 0:
            return None
        return self.seconds / self.baseline_seconds


def _median(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run_store_bench(rows: int = 100_000, *, repeats: int = 5, workdir: str | Path | None = None,
                    checkpoints: int = 20, domains: int = 5) -> dict[str, Any]:
    """Run the benchmark; returns ``{"rows", "runs", "timings": [...], ...}`` (see module doc)."""
    import duckdb

    from engine.runtable import read_run_table
    from engine.store import Store

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmpd = Path(tmp)
        table = synthetic_run_table(rows, checkpoints=checkpoints, domains=domains)
        csv = tmpd / "runs.csv"
        table.to_csv(csv, index=False)
        n = len(table)

        # baseline: raw DuckDB load of the same CSV
        raw_db = tmpd / "raw.duckdb"

        def raw_load() -> None:
            con = duckdb.connect(str(raw_db))
            con.execute("DROP TABLE IF EXISTS runs")
            con.execute(f"CREATE TABLE runs AS SELECT * FROM read_csv('{csv}', header = true)")
            con.close()

        raw_s, _ = _median(raw_load, 3)

        def raw_select() -> pd.DataFrame:
            con = duckdb.connect(str(raw_db), read_only=True)
            try:
                return con.execute("SELECT * FROM runs ORDER BY run_id, steps").df()
            finally:
                con.close()

        raw_q, _ = _median(raw_select, repeats)

        def raw_latest() -> pd.DataFrame:
            con = duckdb.connect(str(raw_db), read_only=True)
            try:
                return con.execute("SELECT * FROM runs QUALIFY row_number() OVER (PARTITION BY run_id "
                                   "ORDER BY steps DESC) = 1").df()
            finally:
                con.close()

        raw_l, _ = _median(raw_latest, repeats)

        t0 = time.perf_counter()
        clean, notes = read_run_table(csv)
        read_s = time.perf_counter() - t0

        db = tmpd / "store.duckdb"
        store = Store(db)
        t0 = time.perf_counter()
        store.import_runs("bench", clean, source=str(csv))
        import_s = time.perf_counter() - t0

        runs_s, frame = _median(lambda: store.runs_frame("bench"), repeats)
        latest_s, latest = _median(lambda: store.latest_checkpoints("bench"), repeats)
        list_s, _ = _median(store.list_studies, repeats)
        trials_s, trials = _median(lambda: store.trials_frame("bench"), repeats)
        assert len(frame) == n and len(latest) == notes.runs and len(trials) == notes.runs, "lost rows"

        timings = [
            Timing("read+validate CSV", read_s, n, "raw CSV load", raw_s),
            Timing("import (store)", import_s, n, "raw CSV load", raw_s),
            Timing("read+validate+import", read_s + import_s, n, "raw CSV load", raw_s),
            Timing("runs_frame", runs_s, len(frame), "raw SELECT *", raw_q),
            Timing("latest_checkpoints", latest_s, len(latest), "raw latest/run", raw_l),
            Timing("list_studies", list_s, 1),
            Timing("trials_frame", trials_s, len(trials)),
        ]
        return {
            "rows": n, "runs": notes.runs, "domains": domains, "repeats": repeats,
            "db_bytes": db.stat().st_size,
            "timings": [{**asdict(t), "rows_per_s": t.rows_per_s, "ratio": t.ratio} for t in timings],
        }
