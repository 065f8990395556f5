"""``mf-kg``: multi-fidelity BO at the target size as BoTorch's tutorial builds it.

The baseline the MFMS-BO paper compares against, as BoTorch's multi-fidelity tutorial builds
it: steps are the only fidelity, model size is fixed at the target's, and

- the model is BoTorch's ``SingleTaskMultiFidelityGP`` (a Matern kernel over the mixture times
  the linear-truncated fidelity kernel over the normalised log step count; no scaling-law
  mean, no knowledge of other sizes), fitted by ``fit_gpytorch_mll`` on the target-size runs'
  checkpoints (a few log-spaced ones per run);
- the acquisition is ``qMultiFidelityKnowledgeGradient``: the gain in the best posterior mean
  at the target fidelity from observing (w, steps), divided by that run's cost
  (``InverseCostWeightedUtility``), optimised by ``optimize_acqf`` over the mixture on the
  simplex (an equality constraint) and a continuous step fidelity (cost interpolated between
  the offered step counts), then snapped to the offered step count that scores best;
- the incumbent is the best posterior mean at the target fidelity.

Small settings (8 fantasies, 2 restarts, 20 iterations) keep one ask to a few seconds.
``fixed_cost`` adds a per-run overhead (in the study's cost units) to every run's cost: without
one, cost-weighted KG keeps choosing the cheapest run. Why it is not the benchmark's
multi-fidelity baseline (``mf-bo`` is): ``docs/optimisation-notes.md``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from engine.records import Proposal
from engine.runtable.schema import objective_values
from engine.strategies import space
from engine.strategies.base import Fidelity, Incumbent, Strategy, StudyState, register, weights_dict
from engine.strategies.surrogate import torch_threads


class _MFData:
    """The target-size rows as the GP's inputs: mixture columns, then the fidelity
    s = log(steps / lo) / log(target / lo) in [0, 1] (1 = the target's step count)."""

    def __init__(self, state: StudyState, fids: list[Fidelity], per_run: int, max_points: int) -> None:
        t = state.target()
        self.K = len(state.domains)
        self.lo = float(min(f.steps for f in fids))
        self.hi = float(t.steps)
        df = state.usable_runs()
        df = df[(df["model_params"].to_numpy() == t.model_params)
                & (df["steps"].to_numpy(dtype=float) >= self.lo)].copy()
        df["y"] = state.sign * pd.to_numeric(objective_values(df, state.objective), errors="coerce").to_numpy(float)
        self.runs = df
        self.n_runs = int(df["run_id"].nunique()) if len(df) else 0
        rows = []
        for _, g in df.sort_values("steps").groupby("run_id", sort=False):
            if len(g) > per_run:  # log-spaced checkpoints, always the last one
                z = np.log(g["steps"].to_numpy(float))
                marks = np.linspace(z[0], z[-1], per_run)
                g = g.iloc[np.unique([int(np.argmin(np.abs(z - m))) for m in marks])]
            rows.append(g)
        pts = pd.concat(rows) if rows else df
        if len(pts) > max_points:  # keep every run's last checkpoint, thin the rest
            last = pts.groupby("run_id").tail(1)
            rest = pts.drop(last.index)
            pts = pd.concat([last, rest.sample(max(0, max_points - len(last)), random_state=0)])
        self.W = state.W(pts)
        self.s = self.fidelity(pts["steps"].to_numpy(float))
        self.sign = state.sign
        self.y = -pts["y"].to_numpy(float)  # BoTorch maximises: the GP models -sign * objective

    def value(self, gp_mean: float) -> float:
        """A GP mean (of -sign * objective) back in the objective's units."""
        return -self.sign * float(gp_mean)

    def fidelity(self, steps) -> np.ndarray:
        span = math.log(self.hi / self.lo) if self.hi > self.lo else 1.0
        return np.clip(np.log(np.asarray(steps, dtype=float) / self.lo) / span, 0.0, 1.0)

    def X(self, W: np.ndarray, s) -> "torch.Tensor":  # noqa: F821
        import torch

        W = np.atleast_2d(W)
        return torch.as_tensor(np.column_stack([W, np.broadcast_to(s, (len(W),))]), dtype=torch.float64)


@register("mf-kg")
class MFKG(Strategy):
    """Multi-fidelity knowledge gradient over steps at the target size (module docstring)."""

    name = "mf-kg"
    model_based = True

    def __init__(self, *, seed: int = 0, min_runs: int = 3, num_fantasies: int = 8, num_restarts: int = 2,
                 maxiter: int = 20, per_run: int = 6, max_points: int = 200, n_screen: int = 2048,
                 fixed_cost: float = 0.0, threads: int | None = 1) -> None:
        super().__init__(seed=seed)
        self.min_runs = min_runs
        self.num_fantasies = num_fantasies
        self.num_restarts = num_restarts
        self.maxiter = maxiter
        self.per_run = per_run
        self.max_points = max_points
        self.n_screen = n_screen
        self.fixed_cost = float(fixed_cost)
        self.threads = threads
        self.model_ = None

    # ---- model ---------------------------------------------------------------------------
    def offered(self, state: StudyState) -> list[Fidelity]:
        t = state.target()
        return [f for f in state.fidelities() if f.model_params == t.model_params]

    def fit(self, state: StudyState):
        """The fitted SingleTaskMultiFidelityGP and its data, or None before ``min_runs``."""
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskMultiFidelityGP
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        data = _MFData(state, self.offered(state), self.per_run, self.max_points)
        if data.n_runs < self.min_runs:
            return None, data
        X = data.X(data.W, data.s)
        Y = torch.as_tensor(data.y, dtype=torch.float64).unsqueeze(-1)
        model = SingleTaskMultiFidelityGP(X, Y, data_fidelities=[data.K], outcome_transform=Standardize(m=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(self.seed)
            try:
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            except Exception:  # noqa: BLE001 - an unconverged fit still predicts; it is a baseline
                pass
        model.eval()
        self.model_ = model
        return model, data

    def _best_at_target(self, state: StudyState, model, data: _MFData) -> Incumbent:
        """The best posterior mean at the target fidelity over the observed mixtures and a
        random screen."""
        import torch

        rng = np.random.default_rng([self.seed, len(state.runs)])
        W = np.vstack([space.unique_rows(data.W), space.sample(self.n_screen, state.bounds(), rng)])
        with torch.no_grad():
            post = model.posterior(data.X(W, 1.0))
            mu = post.mean.reshape(-1).numpy()
            sd = post.variance.clamp_min(0).sqrt().reshape(-1).numpy()
        i = int(np.argmax(mu))
        return Incumbent(weights_dict(state.domains, W[i]), data.value(mu[i]), float(sd[i]), "model")

    # ---- the interface -------------------------------------------------------------------
    def incumbent(self, state: StudyState) -> Incumbent | None:
        with torch_threads(self.threads):
            model, data = self.fit(state)
            if model is None:
                return state.observed_incumbent()
            return self._best_at_target(state, model, data)

    def ask(self, state: StudyState, q: int = 1) -> list[Proposal]:
        with torch_threads(self.threads):
            return self._ask(state, q)

    def _ask(self, state: StudyState, q: int) -> list[Proposal]:
        import torch

        fids = self.offered(state)
        model, data = self.fit(state)
        rng = self.rng(state)
        if model is None:
            out = []
            for w in space.sample(q, state.bounds(), rng):
                f = fids[int(rng.integers(len(fids)))]
                out.append(Proposal(weights_dict(state.domains, w), f.model_params, steps=f.steps,
                                    strategy=self.name, cost=f.cost,
                                    reason=f"initial design (fewer than {self.min_runs} runs at the target size): "
                                           f"random mixture at {f.label()}"))
            return out
        inc = self._best_at_target(state, model, data)
        self.incumbent_ = inc
        w_inc = np.array([inc.weights[d] for d in state.domains])
        out = []
        pending: list = [data.X(np.array([p.weights.get(d, 0.0) for d in state.domains]),
                                data.fidelity(p.steps)) for p in state.pending if p.steps is not None]
        for _ in range(q):
            w, f, value = self._best_pick(state, model, data, fids, data.value(inc.pred_mean), w_inc, rng, pending)
            x = data.X(w, data.fidelity(f.steps))
            pending.append(x)
            with torch.no_grad():
                post = model.posterior(x)
            out.append(Proposal(weights_dict(state.domains, w), f.model_params, steps=f.steps, strategy=self.name,
                                acq_value=value, pred_mean=data.value(post.mean.reshape(-1)[0]),
                                pred_std=float(post.variance.clamp_min(0).sqrt().reshape(-1)[0]), cost=f.cost,
                                reason=f"multi-fidelity KG per unit cost best at {f.label()}: {value:.3g} "
                                       f"(cost {f.cost:.3g}); target incumbent {inc.pred_mean:.4g}"))
        return out

    def _best_pick(self, state: StudyState, model, data: _MFData, fids: list[Fidelity], current: float,
                   w_inc: np.ndarray, rng: np.random.Generator, pending: list):
        """One optimize_acqf of the one-shot MF-KG over (w, s) with s continuous (the cost
        interpolated log-linearly between the offered step counts), then the run's fidelity
        snapped to the offered step count that scores best with the optimised fantasy points."""
        import torch
        from botorch.acquisition import qMultiFidelityKnowledgeGradient
        from botorch.acquisition.cost_aware import InverseCostWeightedUtility
        from botorch.acquisition.utils import project_to_target_fidelity
        from botorch.models.deterministic import GenericDeterministicModel
        from botorch.optim import optimize_acqf

        K = data.K
        bounds = state.bounds()
        order = sorted(fids, key=lambda f: f.steps)
        s_pts = torch.tensor([float(data.fidelity(f.steps)) for f in order], dtype=torch.float64)
        logc = torch.tensor([math.log(max(f.cost + self.fixed_cost, 1e-300)) for f in order], dtype=torch.float64)

        def cost(X):
            return torch.exp(_interp(X[..., K], s_pts, logc)).unsqueeze(-1)

        acq = qMultiFidelityKnowledgeGradient(
            model, num_fantasies=self.num_fantasies, current_value=torch.tensor(current, dtype=torch.float64),
            cost_aware_utility=InverseCostWeightedUtility(cost_model=GenericDeterministicModel(cost, num_outputs=1)),
            project=lambda X: project_to_target_fidelity(X, target_fidelities={K: 1.0}, d=K + 1),
            X_pending=torch.cat(pending) if pending else None)
        lo = torch.tensor(list(bounds[:, 0]) + [float(s_pts.min())], dtype=torch.float64)
        hi = torch.tensor(list(bounds[:, 1]) + [1.0], dtype=torch.float64)
        nq = acq.get_augmented_q_batch_size(1)
        # starts: the incumbent and random mixtures at random offered fidelities for the run,
        # draws around the incumbent for the fantasy maximisers
        W0 = np.vstack([w_inc[None], space.sample(self.num_restarts, bounds, rng)])[: self.num_restarts]
        F0 = space.candidates(max(8, nq), bounds, rng, around=w_inc[None], local_scale=0.05)
        ics = []
        for r in range(self.num_restarts):
            fw = F0[rng.choice(len(F0), nq - 1, replace=len(F0) < nq - 1)]
            X0 = data.X(np.vstack([W0[r][None], fw]), 1.0)
            X0[0, K] = s_pts[int(rng.integers(len(s_pts)))]
            ics.append(X0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                tree, _ = optimize_acqf(
                    acq, bounds=torch.stack([lo, hi]), q=1, num_restarts=self.num_restarts,
                    batch_initial_conditions=torch.stack(ics), return_full_tree=True,
                    equality_constraints=[(torch.arange(K), torch.ones(K, dtype=torch.float64), 1.0)],
                    options={"maxiter": self.maxiter, "batch_limit": self.num_restarts})
            except Exception:  # noqa: BLE001 - a failed optimisation: a random cheap run
                return space.sample(1, bounds, rng)[0], order[0], float("nan")
        w = space.project(tree[0, :K].detach().numpy()[None], bounds)[0]
        trial = tree.detach().clone()
        trial[0, :K] = torch.as_tensor(w, dtype=torch.float64)
        batch = trial.unsqueeze(0).repeat(len(order), 1, 1)
        batch[:, 0, K] = s_pts
        with torch.no_grad():
            vals = acq(batch).numpy()
        j = int(np.nanargmax(vals)) if np.isfinite(vals).any() else 0
        return w, order[j], float(vals[j])


def _interp(x, xp, fp):
    """Piecewise-linear interpolation (torch, differentiable in x; constant outside xp)."""
    import torch

    x = x.clamp(float(xp[0]), float(xp[-1]))
    i = torch.searchsorted(xp, x.detach().contiguous()).clamp(1, len(xp) - 1)
    x0, x1, y0, y1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0).clamp_min(1e-12)
