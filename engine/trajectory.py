"""The optimisation trajectory: cost spent against the incumbent at the target.

One entry per finished trial (state ``done``), in finishing order (the order of their
``done`` events; imported runs, which have none, come first in trial order)::

    {"trial_id", "weights", "model_params", "steps", "tokens", "cost", "cumulative_cost",
     "incumbent_weights", "incumbent_pred", "incumbent_std"[, "incumbent_true"],
     "incumbent_source", "incumbent_basis"}

``incumbent_regret`` (where the runner knows the true optimum at the target: the ``synthetic``
landscape) is ``incumbent_true`` minus that optimum's value (for a maximised objective, the optimum
minus ``incumbent_true``): >= 0, and 0 at the true best mixture.

``incumbent_std`` is the model's std of ``incumbent_pred`` (None for an observed value): with
few runs a model's best mixture at the target is an extrapolation, and its std says so.

The incumbent after a trial is the ``incumbent`` event autopilot recorded once the strategy
had seen that trial's result (or a later one's, with nothing else finishing in between).
Where no event exists (runs finished outside autopilot), it is computed on the fly, cheaply:
the best value observed at the target fidelity so far (else at the largest fidelity
reached), ``incumbent_source = "observed"``. ``incumbent_true`` comes from the study's runner
where it knows the truth (simulators).

``incumbent_basis`` says what the value stands on, since only the first two are "at the
target": ``"model at target"`` (a model's prediction at the target), ``"observed at target"``
(the best run measured at the target size and length), or ``"observed at <size> / <length>
(no target run yet)"`` (no run has reached the target, so the best run at the largest size and
length reached stands in; such values mix sizes and can rise as larger runs arrive). Training
lengths are steps where the runs have them, else tokens (tokens-only run tables).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from engine.records import TrialState
from engine.runtable.schema import objective_values
from engine.scales import length_axis, run_lengths, target_length


def _truth(config):
    from engine.runners.registry import SIMULATED_KINDS

    if config.runner.kind not in SIMULATED_KINDS:
        return None
    try:
        from engine.runners.registry import make_runner

        return make_runner(config)
    except Exception:  # noqa: BLE001 - no truth available
        return None


def trajectory(store, study: str, *, with_truth: bool = True) -> list[dict[str, Any]]:
    """The trajectory of a study (see the module docstring)."""
    config = store.get_config(study)
    trials = {t.trial_id: t for t in store.trials(study, [TrialState.DONE])}
    ev = store.events(study)
    ev = ev.sort_values("event_id")
    done_order = [int(t) for t in ev.loc[ev["kind"] == "done", "trial_id"].dropna() if int(t) in trials]
    seen = set(done_order)
    order = sorted(t for t in trials if t not in seen) + done_order
    inc_events: dict[int, dict] = {}
    for tid, detail in zip(ev.loc[ev["kind"] == "incumbent", "trial_id"], ev.loc[ev["kind"] == "incumbent", "detail"]):
        if tid is None or (isinstance(tid, float) and np.isnan(tid)):
            continue
        inc_events[int(tid)] = json.loads(detail) if isinstance(detail, str) else dict(detail)
    runs = store.runs_frame(study, meta=True)
    axis = length_axis(config, runs)
    t = config.target
    sign = 1.0 if config.direction == "minimize" else -1.0
    runner = _truth(config) if with_truth else None
    truth_cache: dict[tuple, float | None] = {}

    def true_of(w: dict[str, float]) -> float | None:
        if runner is None or t is None:
            return None
        key = tuple(round(w[d], 12) for d in sorted(w))
        if key not in truth_cache:
            try:
                truth_cache[key] = runner.true_value(w, t.model_params, t.steps, config.objective)
            except Exception:  # noqa: BLE001
                truth_cache[key] = None
        return truth_cache[key]

    best = None
    if runner is not None and t is not None:
        try:
            opt = runner.true_optimum(t.model_params, t.steps, config.objective)
        except Exception:  # noqa: BLE001 - the optimum is optional
            opt = None
        best = None if opt is None else float(opt[1])

    out = []
    cum = 0.0
    observed = _ObservedIncumbent(runs, config, sign, axis)
    last_inc: dict | None = None
    for tid in order:
        tr = trials[tid]
        cost = float(tr.cost) if tr.cost is not None else 0.0
        cum += cost
        observed.add(tid)
        inc = inc_events.get(tid)
        source = None
        if inc is not None:
            w, pred, source = inc["weights"], inc.get("pred_mean"), inc.get("source", "model")
            std = inc.get("pred_std") if source != "observed" else None
            true = inc.get("true")
            if source == "observed":  # a model-free strategy's best run: at the target only if one exists
                basis = observed.current()[2] or OBSERVED_AT_TARGET
            else:
                basis = MODEL_AT_TARGET
        else:
            w, pred, basis = observed.current()
            source, std = "observed", None
            true = None
            if w is None and last_inc is not None:
                w, pred, basis, std = last_inc["weights"], last_inc["pred"], last_inc["basis"], last_inc["std"]
        if true is None and w is not None:
            true = true_of(w)
        entry = {"trial_id": tid, "weights": tr.weights, "model_params": tr.model_params, "steps": tr.steps,
                 "tokens": tr.tokens, "cost": tr.cost, "cumulative_cost": cum, "incumbent_weights": w,
                 "incumbent_pred": pred, "incumbent_std": std, "incumbent_source": source,
                 "incumbent_basis": basis}
        if runner is not None or true is not None:
            entry["incumbent_true"] = true
        if best is not None:
            entry["incumbent_regret"] = None if true is None else max(0.0, sign * (float(true) - best))
        last_inc = {"weights": w, "pred": pred, "basis": basis, "std": std}
        out.append(entry)
    return out


#: config keys that may differ between studies of one comparison (one study per strategy)
_IDENTITY_KEYS = ("name", "description", "budget", "seed")


def comparable_studies(store, study: str) -> list[str]:
    """The other studies that ran the same experiment: identical config (domains, objective,
    scales, target, runner and its options) but for name, description, budget and seed. One
    study per strategy of a comparison (the bundled ``demo-bo-*``, or studies made from one
    config file): the Trajectory page draws them together by default."""
    def key(cfg) -> dict:
        d = cfg.to_dict()
        for k in _IDENTITY_KEYS:
            d.pop(k, None)
        return d

    mine = key(store.get_config(study))
    return [n for n in store.study_names() if n != study and key(store.get_config(n)) == mine]


#: ``incumbent_basis`` values (the fallback's is built by :func:`fallback_basis`).
MODEL_AT_TARGET = "model at target"
OBSERVED_AT_TARGET = "observed at target"
NO_TARGET_RUN = "(no target run yet)"


def fallback_basis(model_params: int, length: float, axis: str) -> str:
    """'observed at 150M / 20K steps (no target run yet)'."""
    from engine.plots._common import human

    unit = "steps" if axis == "steps" else "tokens"
    return f"observed at {human(model_params)} / {human(length)} {unit} {NO_TARGET_RUN}"


def is_at_target(basis: str | None) -> bool:
    """Whether an ``incumbent_basis`` is judged at the target (model or observed there)."""
    return basis in (MODEL_AT_TARGET, OBSERVED_AT_TARGET)


def _first_per_group(groups: np.ndarray, y: np.ndarray, mask: np.ndarray) -> dict[int, int]:
    """{group: index of its smallest ``y``} over the rows where ``mask`` holds (first on ties)."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return {}
    order = idx[np.lexsort((idx, y[idx], groups[idx]))]
    first = np.ones(len(order), bool)
    first[1:] = groups[order][1:] != groups[order][:-1]
    return {int(groups[i]): int(i) for i in order[first]}


class _ObservedIncumbent:
    """The best observed value at the target among the trials added so far (else at the largest
    size reached, at its longest length), kept incrementally: each trial's rows are summarised
    once, so a trajectory of n trials costs O(rows + n), not O(rows x n). Lengths on ``axis``
    (steps, or tokens for tokens-only tables; :mod:`engine.scales`)."""

    def __init__(self, runs, config, sign: float, axis: str | None):
        self.domains = list(config.domains)
        self.per_trial: dict[int, tuple] = {}
        self.target: tuple | None = None  # (value, weights)
        self.big: tuple | None = None  # (model_params, length, value, weights)
        if runs.empty or axis is None:
            return
        try:
            y = sign * pd.to_numeric(objective_values(runs, config.objective), errors="coerce").to_numpy(dtype=float)
        except KeyError:
            return
        length = run_lengths(runs, config, axis)
        ok = np.isfinite(y) & np.isfinite(length)
        if not ok.any():
            return
        tid = runs["trial_id"].to_numpy()[ok].astype(np.int64)
        mp = runs["model_params"].to_numpy()[ok].astype(np.int64)
        W = runs[[f"w_{d}" for d in self.domains]].to_numpy(dtype=float)[ok]
        y, length = y[ok], length[ok]
        tl = target_length(config)
        tv = tl.value(axis) if tl is not None else None
        at = ((mp == int(config.target.model_params)) & np.isclose(length, float(tv), rtol=1e-9)) if tv is not None \
            else np.zeros(len(y), bool)
        self.sign, self.axis = sign, axis
        best_at = {int(t): (float(y[i]), self._w(W[i])) for t, i in _first_per_group(tid, y, at).items()}
        longest = pd.Series(length).groupby(tid).transform("max").to_numpy()
        for t, i in _first_per_group(tid, y, length == longest).items():
            self.per_trial[int(t)] = (best_at.get(int(t)), (int(mp[i]), float(length[i]), float(y[i]), self._w(W[i])))

    def _w(self, w: np.ndarray) -> dict[str, float]:
        return {d: float(x) for d, x in zip(self.domains, w)}

    def add(self, trial_id: int) -> None:
        summary = self.per_trial.get(int(trial_id))
        if summary is None:
            return
        at, (mp, length, y, w) = summary
        if at is not None and (self.target is None or at[0] < self.target[0]):
            self.target = at
        b = self.big
        if b is None or mp > b[0] or (mp == b[0] and length > b[1]) or (mp == b[0] and length == b[1] and y < b[2]):
            self.big = (mp, length, y, w)

    def current(self):
        """(weights, value, basis) or (None, None, None)."""
        if self.target is not None:
            return self.target[1], float(self.sign * self.target[0]), OBSERVED_AT_TARGET
        if self.big is not None:
            mp, length, y, w = self.big
            return w, float(self.sign * y), fallback_basis(mp, length, self.axis)
        return None, None, None
