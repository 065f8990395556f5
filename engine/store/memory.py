"""``MemoryStore``: a study store held in this process (the :class:`~engine.store.base.StudyStore`
protocol), for benchmarks and tests that run thousands of asks without a database file.

It keeps the DuckDB store's rules where the loop depends on them: trials move only along
:data:`engine.records.TRANSITIONS`, weights are validated against the study's domains and
bounds, run ids are unique per study (``t<trial_id>`` by default), costs come from the study's
config where a run reports none, and run tables come out in the same columns and order (by
trial, then steps). It does not persist anything, and one process owns it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from engine.config import StudyConfig
from engine.errors import NotFoundError, StateError, ValidationError
from engine.records import TRANSITIONS, Proposal, RunResult, Trial, TrialState
from engine.runtable import schema as rt
from engine.store.base import STRATEGY_STATE, checked_proposal
from engine.store.store import Store


@dataclass
class _Study:
    config: StudyConfig
    trial_ids: list[int]
    new: list[pd.DataFrame]  # checkpoint rows of runs finished since the table was last built
    table: pd.DataFrame | None = None  # the run table so far (built incrementally: one concat per read)


class MemoryStore:
    """An in-memory study store (module docstring)."""

    def __init__(self) -> None:
        self._studies: dict[str, _Study] = {}
        self._trials: dict[int, Trial] = {}
        self._events: list[dict[str, Any]] = []
        self._states: dict[tuple[str, str], str] = {}  # (study, key) -> the latest state, as JSON
        self._next_trial = 1
        self._next_ck = 1

    # ---- studies ---------------------------------------------------------------------------
    def create_study(self, config: StudyConfig, *, actor: str = "user") -> None:
        if config.name in self._studies:
            raise ValidationError(f"a study named '{config.name}' already exists.")
        self._studies[config.name] = _Study(config, [], [])
        self._event(config.name, None, "study_created", actor, {"config": config.to_dict()})

    def _study(self, study: str) -> _Study:
        if study not in self._studies:
            raise NotFoundError(f"no study named '{study}'.")
        return self._studies[study]

    def get_config(self, study: str) -> StudyConfig:
        return self._study(study).config

    def import_runs(self, study: str, table: pd.DataFrame, *, source: str = "<table>",
                    config: StudyConfig | None = None, actor: str = "import") -> int:
        """Add a validated run table as done trials (one per run); returns the number of runs."""
        if study not in self._studies:
            if config is None:
                raise NotFoundError(f"no study named '{study}' (pass config= to create it).")
            self.create_study(config, actor=actor)
        st = self._study(study)
        taken = {self._trials[t].run_id for t in st.trial_ids}
        keep = ["run_id", "model_params", "steps", "tokens", "cost"] + rt.weight_columns(table) \
            + rt.loss_columns(table) + rt.metric_columns(table)
        table = table[[c for c in keep if c in table.columns]]
        for run_id, g in table.groupby("run_id", sort=False):
            if str(run_id) in taken:
                raise ValidationError(f"run '{run_id}' already exists in study '{study}'.")
            tid = self._new_trial_id()
            first = g.iloc[0]
            weights = {c[2:]: float(first[c]) for c in rt.weight_columns(table)}
            self._trials[tid] = Trial(tid, study, str(run_id), TrialState.DONE, weights, int(first["model_params"]),
                                      None if "steps" not in g else int(g["steps"].max()),
                                      None if "tokens" not in g else float(g["tokens"].max()), "import", None,
                                      None, None, None, None if "cost" not in g else float(g["cost"].max()),
                                      f"imported from {source}", None)
            st.trial_ids.append(tid)
            rows = g.drop(columns=[c for c in ("run_id",) if c in g]).copy()
            rows.insert(0, "run_id", str(run_id))
            st.new.append(self._meta(rows, self._trials[tid]))
        self._event(study, None, "import", actor, {"source": source, "runs": int(table["run_id"].nunique())})
        return int(table["run_id"].nunique())

    # ---- run tables ----------------------------------------------------------------------------
    def _meta(self, rows: pd.DataFrame, trial: Trial) -> pd.DataFrame:
        rows = rows.copy()
        n = len(rows)
        rows["trial_id"] = trial.trial_id
        rows["checkpoint_id"] = np.arange(self._next_ck, self._next_ck + n)
        self._next_ck += n
        rows["source"] = trial.source
        rows["strategy"] = trial.strategy
        return rows

    @staticmethod
    def _table(cfg: StudyConfig, parts: list[pd.DataFrame]) -> pd.DataFrame:
        """The run table from its pieces: the database's columns and order (trial, then steps)."""
        wcols = [f"w_{d}" for d in cfg.domains]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=["run_id", "model_params", "steps", "trial_id"] + wcols)
        vals = rt.loss_columns(df) + rt.metric_columns(df)
        for c in ("tokens", "steps", "cost", "wall_s"):
            if c not in df.columns:
                df[c] = np.nan
        df = df.sort_values(["trial_id", "steps"], kind="stable") if len(df) else df
        cols = ["run_id", "model_params", "tokens", "steps"] + wcols + vals + [
            "cost", "trial_id", "checkpoint_id", "wall_s", "source", "strategy"]
        df = df[[c for c in cols if c in df.columns]].reset_index(drop=True)
        if len(df):
            df["model_params"] = df["model_params"].astype("int64")
            df["steps"] = df["steps"].astype("Int64")
            for c in ("tokens", "cost", "wall_s"):
                df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        return df

    def runs_frame(self, study: str, *, meta: bool = False, states: Sequence[TrialState] | None = None,
                   purpose: str | None = "fit") -> pd.DataFrame:
        st = self._study(study)
        if st.table is None or st.new:
            parts = ([st.table] if st.table is not None else []) + st.new
            st.table, st.new = self._table(st.config, parts), []
        df = st.table
        state_of = {t: self._trials[t].state.value for t in st.trial_ids}
        purpose_of = {t: self._trials[t].purpose for t in st.trial_ids}
        out = (df.assign(state=df["trial_id"].map(state_of), purpose=df["trial_id"].map(purpose_of)) if len(df)
               else df.assign(state=[], purpose=[]))
        if purpose is not None:
            out = out[out["purpose"] == purpose].reset_index(drop=True)
        if states:
            keep = {str(TrialState(s)) for s in states}
            out = out[out["state"].isin(keep)].reset_index(drop=True)
        if not meta:
            out = out.drop(columns=[c for c in ("trial_id", "state", "checkpoint_id", "wall_s", "source", "strategy",
                                                "purpose") if c in out.columns])
        return out

    # ---- trials ----------------------------------------------------------------------------
    def _new_trial_id(self) -> int:
        tid = self._next_trial
        self._next_trial += 1
        return tid

    def trials(self, study: str, states: Iterable[TrialState | str] | None = None, *,
               purpose: str | None = "fit") -> list[Trial]:
        st = self._study(study)
        keep = None if states is None else {TrialState(s) for s in states}
        return [self._trials[t] for t in st.trial_ids if (keep is None or self._trials[t].state in keep)
                and (purpose is None or self._trials[t].purpose == purpose)]

    def get_trial(self, trial_id: int) -> Trial:
        if int(trial_id) not in self._trials:
            raise NotFoundError(f"no trial with id {trial_id}.")
        return self._trials[int(trial_id)]

    def add_trials(self, study: str, proposals: Sequence[Proposal], *, actor: str = "user",
                   state: TrialState = TrialState.PROPOSED, purpose: str = "fit") -> list[Trial]:
        state = TrialState(state)
        if state not in (TrialState.PROPOSED, TrialState.APPROVED):
            raise StateError(f"new trials start as proposed or approved, not {state}.")
        st = self._study(study)
        cfg = st.config
        taken = {self._trials[t].run_id for t in st.trial_ids}
        new: list[Trial] = []
        for i, p in enumerate(proposals):  # validate all first: all-or-nothing
            tid = self._next_trial + len(new)
            w, steps, tokens, run_id = checked_proposal(p, cfg, f"proposal {i + 1}", f"t{tid:05d}", taken)
            cost = p.cost if p.cost is not None else cfg.cost(p.model_params, steps=steps, tokens=tokens)
            new.append(Trial(tid, study, run_id, state, dict(w), int(p.model_params),
                             None if steps is None else int(round(steps)), tokens,
                             "manual" if p.strategy == "manual" else "strategy", p.strategy, p.acq_value,
                             p.pred_mean, p.pred_std, cost, p.reason, p.seed, purpose=purpose))
        for t in new:
            self._new_trial_id()
            self._trials[t.trial_id] = t
            st.trial_ids.append(t.trial_id)
            self._event(study, t.trial_id, state.value, actor, {"strategy": t.strategy, "weights": t.weights})
        return list(new)

    def _move(self, trial_id: int, to: TrialState, actor: str, detail: dict | None = None, **changes) -> Trial:
        t = self.get_trial(trial_id)
        if to not in TRANSITIONS[t.state]:
            raise StateError(f"trial {trial_id} is {t.state}; it cannot become {to}.")
        if to == TrialState.RUNNING:
            changes["attempts"] = t.attempts + 1
        t = replace(t, state=to, **changes)
        self._trials[t.trial_id] = t
        self._event(t.study, t.trial_id, to.value, actor, detail or {})
        return t

    def transition(self, trial_ids: Sequence[int], to: TrialState | str, *, actor: str = "user",
                   reason: str | None = None, study: str | None = None) -> None:
        to = TrialState(to)
        for tid in trial_ids:  # all legal, or none happens
            t = self.get_trial(tid)
            if study is not None and t.study != study:
                raise NotFoundError(f"trial {tid} does not belong to this study.")
            if to not in TRANSITIONS[t.state]:
                raise StateError(f"trial {tid} is {t.state}; it cannot become {to}.")
        for tid in trial_ids:
            # as the database does: the proposer's reason stays; who rejected it and why are kept apart
            extra = ({"rejection_reason": reason, "rejected_by": actor}
                     if to in (TrialState.REJECTED, TrialState.CANCELLED) else {})
            self._move(tid, to, actor, {"reason": reason} if reason else None, **extra)

    # the same decisions as the database's (approve / reject all proposed ones when no id is given)
    approve = Store.approve
    reject = Store.reject

    def start_trial(self, trial_id: int, *, actor: str = "dispatch", job_id: str | None = None) -> None:
        self._move(trial_id, TrialState.RUNNING, actor, {"job_id": job_id}, job_id=job_id)

    def complete_trial(self, trial_id: int, result: RunResult, *, actor: str = "worker",
                       replace: bool = False) -> bool:
        t = self.get_trial(trial_id)
        if t.state == TrialState.DONE:
            return False
        if not result.checkpoints:
            raise ValidationError(f"trial {trial_id}: the run reported no checkpoint.")
        st = self._study(t.study)
        cfg = st.config
        rows = []
        for c in result.checkpoints:
            values = {rt.LOSS_PREFIX + k: float(v) for k, v in c.losses.items()}
            values.update({rt.METRIC_PREFIX + k: float(v) for k, v in c.metrics.items()})
            if not all(np.isfinite(list(values.values()))) or not c.losses:
                raise ValidationError(f"trial {trial_id}: checkpoint at steps={c.steps} has no or non-finite losses.")
            rows.append({"run_id": t.run_id, "model_params": t.model_params, "steps": c.steps, "tokens": c.tokens,
                         **{f"w_{d}": t.weights.get(d, 0.0) for d in cfg.domains}, **values, "cost": c.cost,
                         "wall_s": c.wall_s})
        cost = result.cost
        if cost is None:
            ck = [c.cost for c in result.checkpoints if c.cost is not None]
            cost = max(ck) if ck else cfg.cost(t.model_params, steps=t.steps, tokens=t.tokens)
        if t.state == TrialState.QUEUED:
            t = self._move(trial_id, TrialState.RUNNING, actor)
        t = self._move(trial_id, TrialState.DONE, actor, {"cost": cost, "checkpoints": len(rows)}, cost=cost)
        st.new.append(self._meta(pd.DataFrame(rows), t))
        return True

    def fail_trial(self, trial_id: int, reason: str, *, log_tail: str = "", actor: str = "worker") -> None:
        self._move(trial_id, TrialState.FAILED, actor, {"reason": reason, "log_tail": log_tail[-4000:]}, reason=reason)

    # ---- events and strategy state -----------------------------------------------------------
    def _event(self, study: str | None, trial_id: int | None, kind: str, actor: str, detail: dict | None) -> None:
        self._events.append({"event_id": len(self._events) + 1, "study": study, "trial_id": trial_id, "kind": kind,
                             "actor": actor, "detail": json.dumps(detail or {}, default=str),
                             "created_at": pd.Timestamp.now()})

    def log_event(self, study: str, kind: str, *, actor: str = "user", trial_id: int | None = None,
                  detail: dict[str, Any] | None = None) -> None:
        self._study(study)
        self._event(study, trial_id, kind, actor, detail)

    def events(self, study: str, *, limit: int | None = None, trial_id: int | None = None) -> pd.DataFrame:
        self._study(study)
        ev = [e for e in reversed(self._events) if e["study"] == study
              and (trial_id is None or e["trial_id"] == int(trial_id))]
        df = pd.DataFrame(ev[:limit] if limit is not None else ev,
                          columns=["event_id", "study", "trial_id", "kind", "actor", "detail", "created_at"])
        return df.drop(columns=["study"])

    def strategy_states(self, study: str) -> dict[str, dict]:
        self._study(study)
        return {key: json.loads(text) for (s, key), text in self._states.items() if s == study}

    def save_strategy_state(self, study: str, key: str, state: dict, *, actor: str = "strategy") -> None:
        self._study(study)
        self._event(study, None, f"{STRATEGY_STATE}:{key}", actor, state)
        self._states[(study, key)] = self._events[-1]["detail"]  # through JSON, as a database would
