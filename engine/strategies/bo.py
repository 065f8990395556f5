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

import math

import numpy as np

from engine.records import Proposal
from engine.strategies import space
from engine.strategies.base import Fidelity, Strategy, StudyState, register, weights_dict
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
        from engine.strategies.acquisition import fidelity_incumbents, select_batch

        fids = self.offered(state)
        sur = self.fit(state)
        if sur is None:
            return self.random_proposals(state, q, fids, "initial design (fewer than "
                                         f"{self.min_runs} runs at the target)")
        W_obs = self.observed_mixtures(state, self.run_summary(state))
        inc = self.model_incumbent(state, sur, W_obs)
        self.incumbent_ = inc
        best_f = fidelity_incumbents(sur, W_obs, fids, state.maximize)
        around = np.vstack([np.array([inc.weights[d] for d in state.domains])[None], W_obs[-3:]])
        picks = select_batch(sur, fids, best_f, q, state.bounds(), self.rng(state), maximize=state.maximize,
                             pending_X=self.pending_X(state, sur), around=around, n_screen=self.n_screen,
                             n_coarse=self.n_coarse, n_fid=1, n_refine=1, n_starts=self.n_starts,
                             maxiter=self.maxiter)
        return self.to_proposals(state, sur, picks, inc)

    def reason(self, p, incumbent) -> str:
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
        from engine.strategies.acquisition import believe

        fids = self.offered(state)
        t = state.target()
        sur = self.fit(state)
        if sur is None:
            return self.random_proposals(state, q, fids, f"initial design (fewer than {self.min_runs} runs at "
                                         "the target size)")
        W_obs = self.observed_mixtures(state, self.run_summary(state))
        inc = self.model_incumbent(state, sur, W_obs)
        self.incumbent_ = inc
        best_f = inc.pred_mean
        rng = self.rng(state)
        bounds = state.bounds()
        gp = believe(sur.gp, self.pending_X(state, sur))
        picks = []
        around = np.array([inc.weights[d] for d in state.domains])[None]
        for _ in range(q):
            C = space.candidates(self.n_screen, bounds, rng, around=around)
            best = None
            for _round in range(2):
                sc, info = self._scores(gp, sur, C, fids, t, best_f, state.maximize)
                i, j = np.unravel_index(np.argmax(sc), sc.shape)
                if best is None or sc[i, j] > best[0]:
                    best = (float(sc[i, j]), C[i], fids[j], info[0][i], info[1][j][i])
                # second round: local perturbations of the best mixtures
                top = C[np.argsort(-sc.max(axis=1))[:8]]
                C = space.candidates(64, bounds, rng, around=top, local_scale=0.03)
            score, w, f, lei_t, lcorr = best
            picks.append((w, f, score, lei_t, lcorr))
            gp = believe(gp, sur.encode(w, f.model_params, f.steps))
        W = np.array([p[0] for p in picks])
        mu, sd = sur.predict(W, [p[1].model_params for p in picks], [p[1].steps for p in picks])
        out = []
        for k, (w, f, score, lei_t, lcorr) in enumerate(picks):
            out.append(Proposal(weights_dict(state.domains, w), f.model_params, steps=f.steps, strategy=self.name,
                                acq_value=score if math.isfinite(score) else None, pred_mean=float(mu[k]),
                                pred_std=float(sd[k]), cost=f.cost,
                                reason=(f"augmented EI best at {f.label()}: logEI at target {lei_t:.3g}, "
                                        f"log corr {lcorr:.3g}, cost {f.cost:.3g} vs target {t.cost:.3g}; "
                                        f"incumbent {best_f:.4g}")))
        return out

    @staticmethod
    def _scores(gp, sur, C, fids, t, best_f, maximize):
        import torch

        from engine.strategies.acquisition import kernel_matrix, kernel_pairs, log_ei, view

        v = view(gp)
        with torch.no_grad():
            Xt = sur.encode(C, t.model_params, t.steps)
            Kt = kernel_matrix(v.covar, Xt, v.X)
            Vt = torch.linalg.solve_triangular(v.L, Kt.T, upper=False)
            mu_t = (v.mean(Xt) + (Kt @ v.alpha).squeeze(-1)) * v.y_std + v.y_mean
            var_t = (v.prior - (Vt * Vt).sum(0)).clamp_min(1e-18)
            lei_t = log_ei(mu_t, var_t.sqrt() * v.y_std, best_f, maximize).numpy()
            cols, lcorrs = [], []
            for f in fids:
                Xf = sur.encode(C, f.model_params, f.steps)
                Kf = kernel_matrix(v.covar, Xf, v.X)
                Vf = torch.linalg.solve_triangular(v.L, Kf.T, upper=False)
                var_f = (v.prior - (Vf * Vf).sum(0)).clamp_min(1e-18)
                # prior cross-covariance k((w, z), (w, target)), row by row
                k_ft = kernel_pairs(v.covar, Xf, Xt)
                cov = k_ft - (Vf * Vt).sum(0)
                corr = (cov / (var_f.sqrt() * var_t.sqrt())).clamp(1e-6, 1.0)
                lc = torch.log(corr).numpy()
                lcorrs.append(lc)
                cols.append(lei_t + lc - math.log(f.cost / t.cost))
        return np.column_stack(cols), (lei_t, lcorrs)

