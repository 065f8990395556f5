"""``table``: a runner that answers from a real run table instead of training.

For strategies restricted to the table's mixtures (or benchmarks replaying real runs): a
trial is answered by the table's run of the same model size whose mixture is nearest to the
trial's (L1 distance; ``match = "exact"`` refuses anything farther than 1e-6), with that
run's checkpoints up to the trial's steps (or tokens). The result says which run answered and
how far its mixture was (``RunResult.info``: ``table_run``, ``distance``), so a nearest-mixture
answer is never mistaken for a real run of the proposed mixture.

Config: ``[runner] kind = "table"  path = "runs.csv"  match = "nearest" | "exact"``
``max_distance`` caps the nearest match (L1 between mixtures, 0 to 2; default
:data:`DEFAULT_MAX_DISTANCE`): a trial farther from every stored run of its size fails with the
distance and how to raise the limit, instead of being answered silently by a run of another
mixture (a 92%-encyclopedia trial was once answered from a run 0.84 away).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from engine.config import StudyConfig
from engine.errors import ValidationError
from engine.records import Checkpoint, RunResult, Trial
from engine.runners.base import Runner, RunFailed
from engine.runtable.schema import loss_columns, metric_columns, objective_values


#: The farthest (L1) a stored run's mixture may be from a trial's and still answer it: 0.2 moves
#: 10 percentage points of weight between domains.
DEFAULT_MAX_DISTANCE = 0.2


class TableRunner(Runner):
    kind: ClassVar[str] = "table"

    def __init__(self, table: pd.DataFrame | str | Path, *, match: str = "nearest",
                 max_distance: float = DEFAULT_MAX_DISTANCE, domains: list[str] | None = None,
                 study: str | None = None) -> None:
        if match not in ("nearest", "exact"):
            raise ValidationError(f"runner.match must be 'nearest' or 'exact', got {match!r}.")
        if isinstance(max_distance, bool) or not isinstance(max_distance, (int, float)) or not 0 <= max_distance <= 2:
            raise ValidationError(f"runner.max_distance must be a number from 0 to 2 (L1 between mixtures), got "
                                  f"{max_distance!r}.", fix=f"e.g. max_distance = {DEFAULT_MAX_DISTANCE}.")
        self.study = study
        if not isinstance(table, pd.DataFrame):
            from engine.runtable.reader import read_run_table

            table, _ = read_run_table(table, study_domains=domains)
        self.table = table.reset_index(drop=True)
        self.match = match
        self.max_distance = float(max_distance)
        wcols = [c for c in self.table.columns if c.startswith("w_")]
        self.domains = domains or [c[2:] for c in wcols]
        runs = self.table.groupby("run_id", sort=False).head(1)
        self._run_ids = runs["run_id"].astype(str).to_numpy()
        self._W = runs[[f"w_{d}" for d in self.domains]].to_numpy(float)
        self._m = runs["model_params"].to_numpy(dtype=np.int64)

    @classmethod
    def from_config(cls, config: StudyConfig) -> "TableRunner":
        o = config.runner.options
        if "path" not in o:
            raise ValidationError("a table runner needs a run table.", fix='add path = "runs.csv" under [runner].')
        return cls(o["path"], match=o.get("match", "nearest"), max_distance=o.get("max_distance", DEFAULT_MAX_DISTANCE),
                   domains=list(config.domains), study=config.name)

    def lookup(self, weights: dict[str, float], model_params: int) -> tuple[str, float]:
        """(run id, L1 distance) of the table run answering this mixture at this size."""
        same = self._m == int(model_params)
        if not same.any():
            raise RunFailed(f"the run table has no run of {model_params} parameters "
                            f"(sizes: {sorted(set(self._m.tolist()))}).")
        w = np.array([weights.get(d, 0.0) for d in self.domains])
        dist = np.abs(self._W[same] - w).sum(axis=1)
        i = int(np.argmin(dist))
        d = float(dist[i])
        rid = str(self._run_ids[same][i])
        if self.match == "exact" and d > 1e-6:
            raise RunFailed(f"no run of the table has this mixture at {model_params} parameters "
                            f"(nearest: run '{rid}' at L1 distance {d:.3g}; match = \"exact\").")
        if d > self.max_distance:
            study = self.study or "S"
            raise RunFailed(
                f"the nearest table run of {model_params} parameters (run '{rid}') is at L1 distance {d:.3g} from "
                f"this mixture, beyond max_distance = {self.max_distance:g}: its losses would not be this mixture's. "
                f"To accept it, raise the limit with `mixplan study edit --study {study} --config patch.toml`, "
                f"patch.toml holding: [runner] max_distance = {min(2.0, round(d + 0.05, 2)):g}")
        return rid, d

    def _rows(self, trial: Trial) -> tuple[pd.DataFrame, str, float]:
        rid, d = self.lookup(trial.weights, trial.model_params)
        rows = self.table[self.table["run_id"].astype(str) == rid]
        if trial.steps is not None and "steps" in rows.columns and rows["steps"].notna().all():
            rows = rows[rows["steps"] <= trial.steps]
        elif trial.tokens is not None and "tokens" in rows.columns and rows["tokens"].notna().all():
            rows = rows[rows["tokens"] <= trial.tokens * (1 + 1e-9)]
        if rows.empty:
            raise RunFailed(f"table run {rid} has no checkpoint up to the trial's length.")
        return rows, rid, d

    def run(self, trial: Trial, out_dir: Path, *, cancel: threading.Event | None = None,
            on_checkpoint: Callable[[Checkpoint], None] | None = None) -> RunResult:
        t0 = time.perf_counter()
        rows, rid, d = self._rows(trial)
        lcols, mcols = loss_columns(rows), metric_columns(rows)
        cks = []
        for _, r in rows.iterrows():
            steps = None if "steps" not in rows.columns or pd.isna(r.get("steps")) else int(r["steps"])
            tokens = None if "tokens" not in rows.columns or pd.isna(r.get("tokens")) else float(r["tokens"])
            ck = Checkpoint(steps, tokens, {c[5:]: float(r[c]) for c in lcols if pd.notna(r[c])},
                            {c[7:]: float(r[c]) for c in mcols if pd.notna(r[c])},
                            cost=None if "cost" not in rows.columns or pd.isna(r.get("cost")) else float(r["cost"]))
            if cancel is not None and cancel.is_set():
                raise RunFailed(f"trial {trial.trial_id} cancelled.")
            if on_checkpoint is not None:
                on_checkpoint(ck)
            cks.append(ck)
        cost = cks[-1].cost
        return RunResult(cks, cost=cost, wall_s=time.perf_counter() - t0,
                         info={"runner": self.kind, "table_run": rid, "distance": d, "match": self.match})

    def true_value(self, weights, model_params, steps, objective) -> float | None:
        """The table's value for the matched run at the step count (exact matches only)."""
        try:
            rid, d = self.lookup(weights, model_params)
        except RunFailed:
            return None
        if d > 1e-6:
            return None
        rows = self.table[self.table["run_id"].astype(str) == rid]
        if steps is not None and "steps" in rows.columns:
            rows = rows[rows["steps"] == steps]
        if rows.empty:
            return None
        return float(objective_values(rows, objective).iloc[-1])
