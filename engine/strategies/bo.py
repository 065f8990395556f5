"""Single- and multi-fidelity BO baselines at the target model size.

- ``bo``: standard single-fidelity BO. A GP (``mfms-gp`` machinery) on the runs observed at the
  target fidelity only; LogEI against the best predicted value among them; proposals at the
  target fidelity (q > 1 by kriging believer). Until three target runs exist it proposes
  random mixtures there.
- ``mf-bo``: standard multi-fidelity BO with steps as the only fidelity, at the target size:
  a GP over (mixture, log steps) on every checkpoint of the target-size runs, and the
  augmented expected improvement of Huang et al. (2006), the classic cost-aware
  multi-fidelity EI::

      a(w, z) = EI_target(w) * corr(f(w, z), f(w, target)) * cost(target) / cost(z)

  (in logs: log EI at the target + log corr - log cost ratio), maximised over the mixture
  for each offered step count. BoTorch's qMultiFidelityKnowledgeGradient was measured at
  53-85 s per proposal on this machine (FACTS.md), too slow for a 10-seed benchmark, so the
  baseline uses this cheaper standard acquisition instead.
"""

from __future__ import annotations

import numpy as np

from engine.records import Proposal
from engine.strategies.base import Fidelity, StudyState, register
from engine.strategies.mfms_bo import GPStrategy
from engine.strategies.surrogate import torch_threads


@register("bo")
class BO(GPStrategy):
    """Single-fidelity LogEI at the target fidelity."""

    name = "bo"

    def training_runs(self, state: StudyState):
        df = state.usable_runs()
        t = state.target()
        if df.empty:
            return df
        keep = (df["model_params"].to_numpy() == t.model_params) & (df["steps"].to_numpy(dtype=float) == t.steps)
        return df[keep].reset_index(drop=True)

    def offered(self, state: StudyState) -> list[Fidelity]:
        return [state.target()]

    def ask(self, state: StudyState, q: int = 1) -> list[Proposal]:
        with torch_threads(self.threads):
            return self._ask(state, q)

    def _ask(self, state: StudyState, q: int) -> list[Proposal]:
        from engine.strategies.search import fidelity_incumbents, select_batch

        fids = self.offered(state)
        sur = self.fit(state)
        if sur is None:
            return self.random_proposals(state, q, fids, "initial design (fewer than "
                                         f"{self.min_runs} runs at the target)")
        W_obs = self.observed_mixtures(state, self.run_summary(state))
        inc = self.model_incumbent(state, sur, W_obs)
        self.incumbent_ = inc
        best_f = fidelity_incumbents(sur.model, sur, W_obs, fids, state.maximize)
        around = np.vstack([np.array([inc.weights[d] for d in state.domains])[None], W_obs[-3:]])
        picks = select_batch(sur, fids, best_f, q, state.bounds(), self.rng(state), maximize=state.maximize,
                             pending_X=self.pending_X(state, sur), around=around, n_screen=self.n_screen,
                             n_coarse=self.n_coarse, n_fid=1, n_refine=1, n_starts=self.n_starts,
                             maxiter=self.maxiter)
        return self.to_proposals(state, sur, picks, inc)

    def reason(self, p, incumbent, state: StudyState) -> str:
        return (f"LogEI best at the target {p.fidelity.label()}: logEI {p.log_ei:.3g} vs incumbent "
                f"{p.best_f:.4g} (single-fidelity BO)")


@register("mf-bo")
class MFBO(BO):
    """Multi-fidelity BO over steps at the target size (augmented EI; module docstring)."""

    name = "mf-bo"

    def training_runs(self, state: StudyState):
        df = state.usable_runs()
        if df.empty:
            return df
        return df[df["model_params"].to_numpy() == state.target().model_params].reset_index(drop=True)

    def offered(self, state: StudyState) -> list[Fidelity]:
        t = state.target()
        return [f for f in state.fidelities() if f.model_params == t.model_params]

    def _ask(self, state: StudyState, q: int) -> list[Proposal]:
        from engine.strategies.search import select_augmented

        fids = self.offered(state)
        t = state.target()
        sur = self.fit(state)
        if sur is None:
            return self.random_proposals(state, q, fids, f"initial design (fewer than {self.min_runs} runs at "
                                         "the target size)")
        W_obs = self.observed_mixtures(state, self.run_summary(state))
        inc = self.model_incumbent(state, sur, W_obs)
        self.incumbent_ = inc
        picks = select_augmented(sur, fids, t, inc.pred_mean, q, state.bounds(), self.rng(state),
                                 maximize=state.maximize, pending_X=self.pending_X(state, sur),
                                 around=np.array([inc.weights[d] for d in state.domains])[None],
                                 n_screen=self.n_screen)
        return self.to_proposals(state, sur, picks, inc)

    def reason(self, p, incumbent, state: StudyState) -> str:
        return augmented_reason(p, state.target(), incumbent)


def augmented_reason(p, target: Fidelity, incumbent) -> str:
    """Why an augmented-EI pick was chosen (mf-bo, and mfms-bo with acquisition="augmented")."""
    f = p.fidelity
    return (f"augmented EI best at {f.label()}: log(EI at the target x corr with the target) {p.log_ei:.3g}, "
            f"cost {f.cost:.3g} vs target {target.cost:.3g}, score {p.score:.3g}; target incumbent "
            f"{incumbent.pred_mean:.4g}")
