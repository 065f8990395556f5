"""``mfms-bo``: multi-fidelity multi-scale BO (Yen et al. 2025).

One GP (``mfms-gp``) over (mixture, log size, log steps) learns from every checkpoint, and
expected improvement per unit cost picks both the mixture and the fidelity (size, steps) of the
next run; the incumbent is judged at the target fidelity. Two acquisitions
(:mod:`engine.strategies.acquisition`):

- ``acquisition="augmented"`` (the default): for every (w, fidelity) on offer,
  ``log EI_target(w) + p * log corr(f(w, fidelity), f(w, target)) - log(cost / target cost)``:
  the improvement is measured where it matters (at the target, against the target incumbent)
  and a cheaper run is worth what it tells about the target per unit of cost (the augmented EI
  of Huang et al. 2006, over size and steps; ``corr_power`` p = 2 by default, the share of the
  target's variance an observation explains, where p = 1 is Huang's form).
- ``acquisition="fidelity"``: log EI at each fidelity against that fidelity's own incumbent,
  minus log cost (``target_corr=True`` adds log corr with the target), as the issue's first
  design had it.

Why these choices (the measurements): ``docs/optimisation-notes.md``.

The incumbent is judged at the target fidelity: the best posterior mean there
(``incumbent_beta = 0``; a positive beta judges by mean + beta std, pessimistically, as the
single-target ``bo`` / ``mf-bo`` baselines do with beta = 1) over the observed mixtures and,
with ``incumbent="optimum"`` (the default here), a random screen of the simplex.

Until the study has ``min_runs`` runs with the objective (default K + 2 for K domains: what the
GP's mixture-law mean needs to identify its mixture exponents; with fewer, its extrapolation to
the target is a guess), proposals are random mixtures at random cheap fidelities (an initial
design).
"""

from __future__ import annotations


import numpy as np

from engine.errors import ValidationError
from engine.records import Proposal
from engine.strategies.base import Incumbent, StudyState, register
from engine.strategies.gp import GPStrategy, augmented_reason, fidelity_filter
from engine.strategies.surrogate import torch_threads


#: The acquisitions of mfms-bo (module docstring).
ACQUISITIONS = ("fidelity", "augmented")


@register("mfms-bo")
class MFMSBO(GPStrategy):
    """EI per unit cost over (mixture, model size, steps); see the module docstring.
    ``max_fidelities`` screens only the cheapest fidelities (plus the target) when set."""

    name = "mfms-bo"

    def __init__(self, *, max_fidelities: int | None = None, target_corr: bool = True,
                 incumbent: str = "optimum", acquisition: str = "augmented", corr_power: float = 2.0,
                 incumbent_beta: float = 0.0, min_runs: int | None = None, **kw) -> None:
        super().__init__(incumbent_beta=incumbent_beta, min_runs=min_runs or 0, **kw)
        self.min_runs = min_runs
        if incumbent not in ("observed", "optimum"):
            raise ValidationError(f"mfms-bo: unknown incumbent '{incumbent}'.", fix="use 'observed' or 'optimum'.")
        if acquisition not in ACQUISITIONS:
            raise ValidationError(f"mfms-bo: unknown acquisition '{acquisition}'.",
                                  fix=f"use one of {', '.join(ACQUISITIONS)}.")
        self.max_fidelities = max_fidelities
        self.target_corr = bool(target_corr)
        self.incumbent_mode = incumbent
        self.acquisition = acquisition
        self.corr_power = float(corr_power)

    def needed_runs(self, state: StudyState) -> int:
        return self.min_runs if self.min_runs is not None else len(state.domains) + 2

    def ask(self, state: StudyState, q: int = 1) -> list[Proposal]:
        with torch_threads(self.threads):
            return self._ask(state, q)

    def _ask(self, state: StudyState, q: int) -> list[Proposal]:
        from engine.strategies.search import fidelity_incumbents, select_augmented, select_batch

        fids = fidelity_filter(self.offered(state), state.target(), self.max_fidelities)
        sur = self.fit(state)
        if sur is None:
            return self.random_proposals(state, q, fids[: max(1, len(fids) // 2)], "initial design")
        W_obs = self.observed_mixtures(state, self.run_summary(state))
        inc = self.model_incumbent(state, sur, W_obs)
        self.incumbent_ = inc
        around = np.vstack([np.array([inc.weights[d] for d in state.domains])[None], W_obs[-3:]])
        if self.acquisition == "augmented":
            picks = select_augmented(sur, fids, state.target(), inc.pred_mean, q, state.bounds(), self.rng(state),
                                     maximize=state.maximize, pending_X=self.pending_X(state, sur), around=around,
                                     n_screen=self.n_screen, corr_power=self.corr_power)
            return self.to_proposals(state, sur, picks, inc)
        best_f = fidelity_incumbents(sur.model, sur, W_obs, fids, state.maximize)
        tcols = sur.target_columns(state.target()) if self.target_corr else None
        picks = select_batch(sur, fids, best_f, q, state.bounds(), self.rng(state), maximize=state.maximize,
                             pending_X=self.pending_X(state, sur), around=around, n_screen=self.n_screen,
                             n_coarse=self.n_coarse, n_fid=self.n_fid, n_refine=self.n_refine,
                             n_starts=self.n_starts, maxiter=self.maxiter, target_cols=tcols)
        return self.to_proposals(state, sur, picks, inc)

    def reason(self, p, incumbent: Incumbent, state: StudyState) -> str:
        if self.acquisition == "augmented":
            return augmented_reason(p, state.target(), incumbent)
        f = p.fidelity
        what = "log(EI x corr with the target)" if self.target_corr else "log EI"
        return (f"EI/cost best at {f.label()}: {what} {p.log_ei:.3g} vs that fidelity's incumbent "
                f"{p.best_f:.4g}, cost {f.cost:.3g}, score {p.score:.3g}; target incumbent "
                f"{incumbent.pred_mean:.4g}")
