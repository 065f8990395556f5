"""The strategy interface: ask for the next runs given the study (Optuna-style ask/tell).

A :class:`Strategy` looks at a :class:`StudyState` (the study's config, its run table so far
and its pending trials) and returns ``q`` :class:`~engine.records.Proposal` objects from
:meth:`Strategy.ask`. "Tell" is simply results landing in the store (``complete_trial``): the
next ``ask`` sees them in the run table. :func:`propose` asks and stores the proposals as
trials in state ``proposed``.

Every proposal carries ``strategy``, ``acq_value``, ``pred_mean`` / ``pred_std`` (the
strategy's model at the proposal, in objective units; None for model-free strategies),
``cost`` and a human-readable ``reason``.

A strategy object may keep state between asks to go faster (a warm-started GP), but never
relies on it: everything it needs to resume is in the store (hyperband, for example, names its
trials ``hb<bracket>-r<rung>-c<config>`` and reads its schedule back from them).

Strategies also say which mixture they currently believe best at the target scale
(:meth:`Strategy.incumbent`), which autopilot records after every result for the trajectory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from engine.config import StudyConfig
from engine.errors import NotFoundError, ValidationError
from engine.records import PENDING_STATES, Proposal, Trial, TrialState
from engine.runtable.schema import objective_values

if TYPE_CHECKING:  # pragma: no cover
    from engine.store import Store


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fidelity:
    """A (model size, steps) on offer and what one run there costs."""

    model_params: int
    steps: int
    cost: float

    def label(self) -> str:
        return f"{_size_label(self.model_params)}/{self.steps} steps"


@dataclass(frozen=True)
class Incumbent:
    """The mixture a strategy believes best at the target fidelity, and its value there
    (``pred_mean``/``pred_std`` from the strategy's model, or the observed value where
    ``source == "observed"``)."""

    weights: dict[str, float]
    pred_mean: float
    pred_std: float | None = None
    source: str = "model"  # "model" | "observed"


@dataclass(frozen=True)
class StudyState:
    """What a strategy sees when asked.

    ``runs``: the run table (:mod:`engine.runtable.schema`, one row per checkpoint) of every
    stored checkpoint, with ``trial_id`` where it comes from the store. ``pending``: trials
    that are proposed, approved, queued or running (their results are not in yet).
    ``trials``: every trial (any state), oldest first, for strategies that keep a schedule.
    """

    config: StudyConfig
    runs: pd.DataFrame
    pending: tuple[Proposal, ...] = ()
    trials: tuple[Trial, ...] = ()

    # ---- derived -------------------------------------------------------------------------
    @property
    def domains(self) -> list[str]:
        return list(self.config.domains)

    @property
    def objective(self) -> str:
        return self.config.objective

    @property
    def sign(self) -> float:
        """+1 where lower is better, -1 where higher is better (``sign * y`` is minimised)."""
        return 1.0 if self.config.direction == "minimize" else -1.0

    @property
    def maximize(self) -> bool:
        return self.config.direction == "maximize"

    def bounds(self) -> np.ndarray:
        """(K, 2) per-domain weight bounds in domain order."""
        return np.asarray(self.config.bounds_array(), dtype=float)

    def fidelities(self) -> list[Fidelity]:
        """Every (model size, steps) on offer, cheapest first, with its cost."""
        out = []
        for mp, st in self.config.fidelities():
            c = self.config.cost(mp, steps=st)
            out.append(Fidelity(int(mp), int(st), float(c) if c is not None else float(6 * mp * st)))
        if not out:
            raise self._needs_edit("offers no scale to run at")
        return out

    def target(self) -> Fidelity:
        """The target fidelity (the study's [target], steps preferred)."""
        t = self.config.target
        if t is None:
            raise self._needs_edit("has no [target] scale")
        steps = t.steps if t.steps is not None else self.config.steps_for(t.tokens)
        if steps is None:
            raise ValidationError("the target gives tokens but the study has no tokens_per_step.",
                                  fix="give [target] steps, or tokens_per_step.")
        c = self.config.cost(t.model_params, steps=steps)
        return Fidelity(int(t.model_params), int(round(steps)), float(c) if c is not None else float("nan"))

    def _needs_edit(self, what: str) -> ValidationError:
        """The error of a study without scales or a target (e.g. made by `mixplan import`):
        the fix is `mixplan study edit` with an example patch built from its runs."""
        from engine.study_edit import needs_edit_message

        return ValidationError(f"study '{self.config.name}' {what}.",
                               fix=needs_edit_message(self.config, self.runs, "proposing runs"))

    def y(self) -> np.ndarray:
        """The objective on every run-table row (NaN where missing)."""
        if self.runs.empty:
            return np.zeros(0)
        try:
            return pd.to_numeric(objective_values(self.runs, self.objective), errors="coerce").to_numpy(float)
        except KeyError:
            return np.full(len(self.runs), np.nan)

    def usable_runs(self) -> pd.DataFrame:
        """Rows with a finite objective and a step count (what models are fitted on)."""
        if self.runs.empty:
            return self.runs
        y = self.y()
        ok = np.isfinite(y)
        if "steps" in self.runs.columns:
            ok &= self.runs["steps"].notna().to_numpy()
        return self.runs[ok].reset_index(drop=True)

    def run_summary(self) -> pd.DataFrame:
        """One row per run: run_id, model_params, steps (last), weights, objective at the last
        checkpoint (``y``)."""
        df = self.usable_runs()
        if df.empty:
            return pd.DataFrame(columns=["run_id", "model_params", "steps", "y"] + [f"w_{d}" for d in self.domains])
        df = df.assign(y=pd.to_numeric(objective_values(df, self.objective), errors="coerce"))
        df = df.sort_values(["run_id", "steps"], kind="stable")
        return df.groupby("run_id", sort=False).tail(1).reset_index(drop=True)

    def pending_weights(self) -> np.ndarray:
        """(n, K) mixtures of the pending trials (and rejected ones: :func:`with_rejections`)."""
        return np.array([[p.weights.get(d, 0.0) for d in self.domains] for p in self.pending],
                        dtype=float).reshape(len(self.pending), len(self.domains))

    def W(self, df: pd.DataFrame) -> np.ndarray:
        return df[[f"w_{d}" for d in self.domains]].to_numpy(dtype=float)

    def observed_incumbent(self) -> Incumbent | None:
        """The best observed value at the target fidelity; where no run reached it, at the
        highest (model size, steps) reached at the largest size observed. Model-free
        strategies judge their incumbent this way."""
        df = self.usable_runs()
        if df.empty:
            return None
        y = self.sign * pd.to_numeric(objective_values(df, self.objective), errors="coerce").to_numpy(float)
        t = self.target()
        mp = df["model_params"].to_numpy()
        st = df["steps"].to_numpy(dtype=float)
        at = (mp == t.model_params) & (st == t.steps)
        if not at.any():
            big = mp == mp.max()
            at = big & (st == st[big].max())
        i = int(np.flatnonzero(at)[np.argmin(y[at])])
        w = {d: float(df[f"w_{d}"].iloc[i]) for d in self.domains}
        return Incumbent(w, float(self.sign * y[i]), None, "observed")

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_store(cls, store: "Store", study: str) -> "StudyState":
        config = store.get_config(study)
        runs = store.runs_frame(study, meta=True)
        trials = tuple(store.trials(study))
        pending = tuple(trial_to_proposal(t) for t in trials if t.state in PENDING_STATES)
        return cls(config, runs, pending, trials)


def with_rejections(state: StudyState) -> StudyState:
    """``state`` with the trials a person rejected among its pending ones.

    Why: a rejection says "not this run"; a strategy that ignores it proposes (almost) the same
    mixture again at the next ask, as deterministic optimisers do. Seen as pending, a rejected
    run is excluded like any run already on its way: the GP strategies condition on it
    (kriging believer), so its neighbourhood loses its appeal, and random designs draw away
    from it. Autopilot's own rejections (a proposal over its budget) do not count."""
    rejected = tuple(trial_to_proposal(t) for t in state.trials
                     if t.state == TrialState.REJECTED and t.rejected_by != "autopilot")
    return replace(state, pending=state.pending + rejected) if rejected else state


def trial_to_proposal(t: Trial) -> Proposal:
    """A stored trial as a Proposal (to pass pending trials to a strategy)."""
    return Proposal(weights=dict(t.weights), model_params=t.model_params, steps=t.steps, tokens=t.tokens,
                    strategy=t.strategy or "manual", acq_value=t.acq_value, pred_mean=t.pred_mean,
                    pred_std=t.pred_std, cost=t.cost, reason=t.reason or "", run_id=t.run_id, seed=t.seed)


def _size_label(mp: int) -> str:
    if mp >= 1_000_000_000:
        return f"{mp / 1e9:g}B"
    if mp >= 1_000_000:
        return f"{mp / 1e6:g}M"
    if mp >= 1_000:
        return f"{mp / 1e3:g}k"
    return str(mp)


def weights_dict(domains: Sequence[str], w: np.ndarray) -> dict[str, float]:
    """Mixture array -> {domain: weight}, clipped to >= 0 and renormalised exactly."""
    w = np.clip(np.asarray(w, dtype=float), 0.0, None)
    w = w / w.sum()
    return {d: float(x) for d, x in zip(domains, w)}


# ---------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------
class Strategy(ABC):
    """Proposes the next runs. Options go to ``__init__`` (``seed`` always); state learned
    while asking lives in attributes ending in ``_`` (e.g. ``model_``, the last fitted model)."""

    name: ClassVar[str] = "base"
    #: whether the strategy judges its incumbent with a model (else: observed values)
    model_based: ClassVar[bool] = False

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = int(seed)
        self._asks = 0
        #: the incumbent computed during the last ask, where the strategy computes one anyway
        self.incumbent_: Incumbent | None = None

    def rng(self, state: StudyState) -> np.random.Generator:
        """A generator that differs per ask but is reproducible from (seed, study size)."""
        self._asks += 1
        return np.random.default_rng([self.seed, len(state.trials), len(state.runs), self._asks])

    @abstractmethod
    def ask(self, state: StudyState, q: int = 1) -> list[Proposal]:
        """Return up to ``q`` proposals (an empty list: the strategy has nothing more to run)."""

    def incumbent(self, state: StudyState) -> Incumbent | None:
        """The mixture believed best at the target fidelity given the state's runs."""
        return state.observed_incumbent()

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
_REGISTRY: dict[str, Callable[..., Strategy]] = {}


def register(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    def deco(cls: type[Strategy]) -> type[Strategy]:
        _REGISTRY[name] = cls
        return cls

    return deco


def strategy_names() -> list[str]:
    _load_all()
    return list(_REGISTRY)


def get_strategy(name: str, **options) -> Strategy:
    """A strategy by registry name (``mfms-bo``, ``autoscale``, ``random``, ``hyperband``,
    ``mf-bo``, ``bo``, ``mf-kg``) with its options (``seed=...``)."""
    _load_all()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        raise NotFoundError(f"no strategy named '{name}'. Strategies: {', '.join(_REGISTRY)}."
                            + (f" Did you mean '{close[0]}'?" if close else ""))
    return _REGISTRY[name](**options)


def _load_all() -> None:
    # importing the modules registers their classes (torch is imported lazily inside them)
    import importlib

    for mod in _MODULES:
        importlib.import_module(f"engine.strategies.{mod}")


_MODULES = ("mfms_bo", "autoscale", "random_search", "hyperband", "bo", "mf_kg")


# ---------------------------------------------------------------------------------------------
# Propose: ask and store
# ---------------------------------------------------------------------------------------------
def propose(store: "Store", study: str, strategy: str | Strategy, q: int = 1, seed: int | None = None,
            *, actor: str = "strategy", state: StudyState | None = None) -> list[Trial]:
    """Ask ``strategy`` for ``q`` proposals on the study's current runs and store them as
    trials in state ``proposed``; returns the stored trials (empty when it has nothing more)."""
    if q < 1:
        raise ValidationError(f"asked for {q} proposals.", fix="ask for at least one (-n 1).")
    strat = get_strategy(strategy, seed=0 if seed is None else seed) if isinstance(strategy, str) else strategy
    st = with_rejections(state if state is not None else StudyState.from_store(store, study))
    proposals = strat.ask(st, q)
    if not proposals:
        return []
    if seed is not None:
        proposals = [p if p.seed is not None else _with(p, seed=seed) for p in proposals]
    return store.add_trials(study, proposals, actor=actor)


def _with(p: Proposal, **kw) -> Proposal:
    from dataclasses import replace

    return replace(p, **kw)


__all__ = [
    "Fidelity", "Incumbent", "StudyState", "Strategy", "get_strategy", "strategy_names", "propose",
    "register", "trial_to_proposal", "weights_dict", "TrialState",
]
