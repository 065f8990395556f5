"""Shared plumbing of the GP strategies (``mfms-bo``, ``mf-bo``, ``bo``): fitting the surrogate
from the study's saved GP state, the model incumbent at the target, pending points, and picks
turned into proposals.
"""

from __future__ import annotations

import math

import numpy as np

from engine.records import Proposal
from engine.strategies import space
from engine.strategies.base import Fidelity, Incumbent, Strategy, StudyState, weights_dict
from engine.strategies.surrogate import Surrogate, torch_threads


def fidelity_filter(fids: list[Fidelity], target: Fidelity, max_fidelities: int | None) -> list[Fidelity]:
    """Keep at most ``max_fidelities`` (cheapest first, always including the target)."""
    if max_fidelities is None or len(fids) <= max_fidelities:
        return fids
    keep = fids[: max_fidelities - 1]
    if all((f.model_params, f.steps) != (target.model_params, target.steps) for f in keep):
        keep.append(next((f for f in fids if (f.model_params, f.steps) == (target.model_params, target.steps)),
                         fids[-1]))
    return keep


class GPStrategy(Strategy):
    """Shared plumbing of the GP strategies: fitting the surrogate, the model incumbent at the
    target, pending points, and turning picks into proposals."""

    model_based = True

    def __init__(self, *, seed: int = 0, min_runs: int = 3, n_screen: int = 256, n_coarse: int = 64,
                 n_fid: int = 4, n_refine: int = 1, n_starts: int = 2, maxiter: int = 30,
                 max_points: int | None = None, max_fit_points: int | None = None, refit_every: int | None = None,
                 threads: int | None = 1, incumbent_beta: float = 1.0) -> None:
        from engine.models.gp.settings import SEARCH

        super().__init__(seed=seed)
        self.threads = threads
        self.incumbent_beta = float(incumbent_beta)
        self.min_runs = min_runs
        self.n_screen = n_screen
        self.n_coarse = n_coarse
        self.n_fid = n_fid
        self.n_refine = n_refine
        self.n_starts = n_starts
        self.maxiter = maxiter
        # the surrogate's GP: the ``search`` preset (engine.models.gp.settings), with overrides
        overrides = {k: v for k, v in (("max_points", max_points), ("max_fit_points", max_fit_points),
                                       ("refit_every", refit_every)) if v is not None}
        self.gp_settings = SEARCH.with_(seed=self.seed, **overrides)
        self.surrogate_: Surrogate | None = None
        self.model_ = None

    # ---- hooks -----------------------------------------------------------------------------
    def training_runs(self, state: StudyState):
        """The rows the GP is fitted on (all of them here; subclasses restrict)."""
        return state.usable_runs()

    def offered(self, state: StudyState) -> list[Fidelity]:
        return state.fidelities()

    def needed_runs(self, state: StudyState) -> int:
        """Runs the GP waits for (``min_runs``)."""
        return self.min_runs

    # ---- plumbing ------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        """Where this strategy's GP state is saved in the study (``strategy_states``)."""
        return f"{self.name}:gp"

    def fit(self, state: StudyState) -> Surrogate | None:
        """The surrogate fitted on the study's runs, from the GP state the study saved after the
        last fit (its new state goes to ``states_``); None before ``needed_runs``."""
        runs = self.training_runs(state)
        if runs.empty or runs["run_id"].nunique() < self.needed_runs(state):
            return None
        sur = Surrogate(settings=self.gp_settings)
        self.states_[self.state_key] = sur.fit(runs, state.objective, state.domains, state.config.tokens_per_step,
                                               state=state.strategy_states.get(self.state_key))
        self.surrogate_, self.model_ = sur, sur.model_
        return sur

    def observed_mixtures(self, state: StudyState, runs=None) -> np.ndarray:
        df = state.run_summary() if runs is None else runs
        if df.empty:
            return np.zeros((0, len(state.domains)))
        return space.unique_rows(state.W(df))

    def model_incumbent(self, state: StudyState, sur: Surrogate, W_obs: np.ndarray) -> Incumbent:
        import torch

        t = state.target()
        optimum = getattr(self, "incumbent_mode", "observed") == "optimum"
        if optimum:
            # the best predicted mixture anywhere on the simplex (observed ones + a random screen)
            W_obs = np.vstack([W_obs, space.sample(2048, state.bounds(), np.random.default_rng(self.seed))])
        # the recommendation: best pessimistic value (mean + beta * std for a loss), so a
        # mixture whose good prediction at the target is an extrapolation does not win
        beta = float(getattr(self, "incumbent_beta", 0.0))
        sgn = -1.0 if state.maximize else 1.0

        def scored(W):
            with torch.no_grad():
                post = sur.model.posterior(sur.encode(W, t.model_params, t.steps).unsqueeze(-2))
            mu, sd = post.mean.reshape(-1).numpy(), post.variance.reshape(-1).sqrt().numpy()
            return mu, sd, sgn * mu + beta * sd

        mu, sd, score = scored(W_obs)
        if optimum:
            # a random screen of K >= 4 domains is coarse (2,048 draws lie ~0.15 apart), and a
            # screen-resolution miss of the predicted optimum is regret the model did not
            # cause: shrinking local searches around the best screened mixtures refine it
            # (docs/optimisation-notes.md)
            rng = np.random.default_rng([self.seed, len(W_obs)])
            for scale in (0.03, 0.01, 0.003):
                C = space.perturb(W_obs[np.argsort(score)[:8]], 32, scale, state.bounds(), rng)
                m2, s2, sc2 = scored(C)
                W_obs, mu, sd, score = (np.vstack([W_obs, C]), np.concatenate([mu, m2]), np.concatenate([sd, s2]),
                                        np.concatenate([score, sc2]))
        i = int(np.argmin(score))
        return Incumbent(weights_dict(state.domains, W_obs[i]), float(mu[i]), float(sd[i]), "model")

    def incumbent(self, state: StudyState) -> Incumbent | None:
        with torch_threads(self.threads):
            return self._incumbent(state)

    def _incumbent(self, state: StudyState) -> Incumbent | None:
        sur = self.fit(state)
        if sur is None:
            return state.observed_incumbent()
        return self.model_incumbent(state, sur, self.observed_mixtures(state, self.run_summary(state)))

    def run_summary(self, state: StudyState):
        df = state.run_summary()
        runs = self.training_runs(state)
        return df[df["run_id"].isin(set(runs["run_id"]))] if not df.empty else df

    def pending_X(self, state: StudyState, sur: Surrogate):
        import torch

        if not state.pending:
            return None
        rows = []
        for p in state.pending:
            steps = p.steps if p.steps is not None else state.config.steps_for(p.tokens)
            if steps is None:
                continue
            w = np.array([p.weights.get(d, 0.0) for d in state.domains])
            rows.append(sur.encode(w, p.model_params, steps))
        return torch.cat(rows) if rows else None

    def random_proposals(self, state: StudyState, q: int, fids: list[Fidelity], why: str) -> list[Proposal]:
        rng = self.rng(state)
        W = space.away_from(space.sample(q, state.bounds(), rng), state.pending_weights(), state.bounds(), rng)
        out = []
        for w in W:
            f = fids[int(rng.integers(len(fids)))]
            out.append(Proposal(weights_dict(state.domains, w), f.model_params, steps=f.steps, strategy=self.name,
                                cost=f.cost, reason=f"{why}: random mixture at {f.label()} (cost {f.cost:.3g})"))
        return out

    def to_proposals(self, state: StudyState, sur: Surrogate, picks, incumbent: Incumbent) -> list[Proposal]:
        out = []
        W = np.array([list(weights_dict(state.domains, p.w).values()) for p in picks])
        # one call of the model's own predict: what is stored is what the model says
        mu, sd = sur.predict(W, [p.fidelity.model_params for p in picks], [p.fidelity.steps for p in picks])
        for i, p in enumerate(picks):
            f = p.fidelity
            acq = p.score if math.isfinite(p.score) else None
            out.append(Proposal(
                dict(zip(state.domains, map(float, W[i]))), f.model_params, steps=f.steps, strategy=self.name,
                acq_value=acq, pred_mean=float(mu[i]), pred_std=float(sd[i]), cost=f.cost,
                reason=self.reason(p, incumbent, state)))
        return out

    def reason(self, p, incumbent: Incumbent, state: StudyState) -> str:
        f = p.fidelity
        return (f"EI/cost best at {f.label()}: logEI {p.log_ei:.3g} vs that fidelity's incumbent "
                f"{p.best_f:.4g}, cost {f.cost:.3g}, score {p.score:.3g}; target incumbent "
                f"{incumbent.pred_mean:.4g}")


def augmented_reason(p, target: Fidelity, incumbent) -> str:
    """Why an augmented-EI pick was chosen (mf-bo, and mfms-bo with acquisition="augmented")."""
    f = p.fidelity
    return (f"augmented EI best at {f.label()}: log(EI at the target x corr with the target) {p.log_ei:.3g}, "
            f"cost {f.cost:.3g} vs target {target.cost:.3g}, score {p.score:.3g}; target incumbent "
            f"{incumbent.pred_mean:.4g}")
