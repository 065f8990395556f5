"""``autoscale``: the AutoScale design (Kang et al. 2025) at the target model size.

1. DDO designs at two small budgets (the target size's offered step counts nearest to
   1/27 and 1/9 of the target's steps): a base run (the uniform mixture, projected onto the
   bounds) and, for each domain, runs with that domain's tokens x0.2 and x3 **and every other
   domain's tokens unchanged** (as the paper does). The total changes, so a perturbed run's
   length is ``base steps * (1 + (c - 1) w_i)`` and its mixture is renormalised: these design
   runs are the one place a strategy proposes step counts that are not on the study's grid
   (the model size is). Run ids: ``as<budget>-base``, ``as<budget>-<domain>-x0.2|x3``.
2. Once every design run is in, the ``autoscale`` loss model (:mod:`engine.models.autoscale`)
   is fitted on them and its extrapolated mixture at the target budget is proposed at the
   target fidelity (``as-target``). After that the strategy has nothing more to propose.

The incumbent is the extrapolated mixture once known (its value observed at the target where
that run finished), else the best observed value at the largest fidelity reached.
"""

from __future__ import annotations

import math

import numpy as np

from engine.records import Proposal
from engine.strategies import space
from engine.strategies.base import Incumbent, Strategy, StudyState, register, weights_dict

FACTORS = (0.2, 3.0)


@register("autoscale")
class AutoScaleStrategy(Strategy):
    name = "autoscale"

    def __init__(self, *, seed: int = 0, fractions: tuple[float, float] = (1 / 27, 1 / 9)) -> None:
        super().__init__(seed=seed)
        self.fractions = tuple(fractions)
        self.model_ = None

    def budgets(self, state: StudyState) -> list[int]:
        t = state.target()
        offered = sorted({f.steps for f in state.fidelities() if f.model_params == t.model_params and f.steps < t.steps})
        if not offered:
            offered = sorted({max(100, int(round(t.steps * fr / 100.0)) * 100) for fr in self.fractions})
        out = []
        for fr in self.fractions:
            near = min(offered, key=lambda s: abs(math.log(s / (t.steps * fr))))
            if near not in out:
                out.append(near)
        if len(out) < 2:  # the grid is too coarse: take the two largest below the target
            out = offered[-2:] if len(offered) >= 2 else out
        return sorted(out)

    def design(self, state: StudyState) -> list[Proposal]:
        t = state.target()
        b = state.bounds()
        base = space.project(np.full((1, len(state.domains)), 1.0 / len(state.domains)), b)[0]
        out = []
        for steps in self.budgets(state):
            out.append(Proposal(weights_dict(state.domains, base), t.model_params, steps=int(steps),
                                strategy=self.name, run_id=f"as{steps}-base",
                                cost=state.config.require_cost(t.model_params, steps=steps),
                                reason=f"AutoScale DDO base run at {steps} steps (uniform mixture)"))
            for i, d in enumerate(state.domains):
                for c in FACTORS:
                    tok = base.copy()
                    tok[i] *= c  # tokens of domain i scaled, the others unchanged
                    total = tok.sum()
                    st = int(round(steps * total))
                    w = tok / total
                    if not space.in_bounds(w[None], b)[0]:
                        continue
                    out.append(Proposal(weights_dict(state.domains, w), t.model_params, steps=st,
                                        strategy=self.name, run_id=f"as{steps}-{d}-x{c:g}",
                                        cost=state.config.require_cost(t.model_params, steps=st),
                                        reason=f"AutoScale DDO perturbation at budget {steps} steps: "
                                               f"{d} tokens x{c:g}, the rest unchanged ({st} steps)"))
        return out

    def _fit(self, state: StudyState, design_ids: set[str]):
        from engine.models.autoscale import AutoScale

        runs = state.usable_runs()
        runs = runs[runs["run_id"].astype(str).isin(design_ids)]
        tps = state.config.tokens_per_step or 1
        cols = ["run_id", "model_params", "steps"] + [f"w_{d}" for d in state.domains]
        obj = [c for c in runs.columns if c.startswith(("loss_", "metric_"))]
        objective = state.objective
        if state.maximize:  # the DDO law is a loss: fit the negated metric as a loss column
            objective = "loss_negated_" + state.objective
            runs = runs.assign(**{objective: -runs[state.objective]})
            obj = [objective]
        model = AutoScale(seed=self.seed).fit(runs[cols + obj], objective, domains=state.domains,
                                              tokens_per_step=tps)
        self.model_ = model
        return model

    def extrapolated(self, state: StudyState, design_ids: set[str]):
        t = state.target()
        model = self._fit(state, design_ids)
        opt = model.optimum(t.model_params, steps=t.steps, bounds=list(map(tuple, state.bounds())))
        return opt

    def ask(self, state: StudyState, q: int = 1) -> list[Proposal]:
        design = self.design(state)
        have = set(state.runs["run_id"].astype(str)) if not state.runs.empty else set()
        have |= {p.run_id for p in state.pending if p.run_id} | {tr.run_id for tr in state.trials}
        todo = [p for p in design if p.run_id not in have]
        if todo:
            return todo[:q]
        if "as-target" in have:
            return []
        done = set(state.run_summary()["run_id"].astype(str))
        if not all(p.run_id in done for p in design):
            return []  # design runs still pending (or failed): nothing new to propose yet
        opt = self.extrapolated(state, {p.run_id for p in design})
        t = state.target()
        pm = -opt.pred_mean if state.maximize else opt.pred_mean
        stage = getattr(self.model_, "last_info_", None)
        return [Proposal(dict(opt.weights), t.model_params, steps=t.steps, strategy=self.name, run_id="as-target",
                         pred_mean=float(pm), pred_std=float(opt.pred_std), cost=t.cost,
                         reason=f"AutoScale extrapolated mixture at the target {t.label()} from DDO optima at "
                                f"{' and '.join(map(str, self.budgets(state)))} steps"
                                + (f" ({stage})" if stage else ""))]

    def incumbent(self, state: StudyState) -> Incumbent | None:
        design = self.design(state)
        done = set(state.run_summary()["run_id"].astype(str)) if not state.runs.empty else set()
        if design and all(p.run_id in done for p in design):
            try:
                opt = self.extrapolated(state, {p.run_id for p in design})
            except Exception:  # noqa: BLE001 - a law that cannot be fitted: fall back
                return state.observed_incumbent()
            pm = -opt.pred_mean if state.maximize else opt.pred_mean
            return Incumbent(dict(opt.weights), float(pm), float(opt.pred_std), "model")
        return state.observed_incumbent()
