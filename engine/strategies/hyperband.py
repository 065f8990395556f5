"""``hyperband``: Hyperband (Li et al. 2017; eta = 3) over steps at the target model size.

Rung budgets are the target size's offered step counts nearest to ``R / eta^k`` (R = the
target's steps). Bracket ``s`` (s = S .. 0) starts ``ceil((S+1)/(s+1) * eta^s)`` random
mixtures at rung ``S - s`` and promotes the best ``1/eta`` of each rung to the next (a
promoted configuration is a new run from scratch at the larger budget). Iterations of all
brackets repeat until the budget is spent.

The schedule lives in the store: every trial is named ``hb<iteration>.<bracket>-r<rung>-c<k>``
and a rung's results are read back from the run table, so any process can resume it. A rung
whose predecessors are still pending is skipped for now (the next bracket goes ahead).
"""

from __future__ import annotations

import math
import re

import numpy as np

from engine.records import Proposal, TrialState
from engine.strategies import space
from engine.strategies.base import Strategy, StudyState, register, weights_dict

_RID = re.compile(r"^hb(\d+)\.(\d+)-r(\d+)-c(\d+)$")


@register("hyperband")
class Hyperband(Strategy):
    name = "hyperband"

    def __init__(self, *, seed: int = 0, eta: int = 3, max_iterations: int = 50) -> None:
        super().__init__(seed=seed)
        self.eta = int(eta)
        self.max_iterations = max_iterations

    def budgets(self, state: StudyState) -> list[int]:
        t = state.target()
        offered = sorted({f.steps for f in state.fidelities() if f.model_params == t.model_params} | {t.steps})
        out = []
        k = 0
        while True:
            r = t.steps / self.eta**k
            if r < offered[0] * 0.75 and out:
                break
            near = min(offered, key=lambda s: abs(math.log(s / r)))
            if near not in out:
                out.append(near)
            if near == offered[0]:
                break
            k += 1
        return sorted(out)

    def ask(self, state: StudyState, q: int = 1) -> list[Proposal]:
        t = state.target()
        rungs = self.budgets(state)
        S = len(rungs) - 1
        # results and pending per run id
        values: dict[str, float] = {}
        summ = state.run_summary()
        for rid, y in zip(summ["run_id"].astype(str), summ["y"].to_numpy(float)):
            values[rid] = state.sign * y
        pending = {p.run_id for p in state.pending if p.run_id}
        failed = {tr.run_id for tr in state.trials if tr.state == TrialState.FAILED}
        for rid in failed:
            values.setdefault(rid, math.inf)
        weights_of: dict[str, dict[str, float]] = {}
        for tr in state.trials:
            weights_of[tr.run_id] = tr.weights
        for p in state.pending:
            if p.run_id:
                weights_of[p.run_id] = p.weights
        if "run_id" in summ.columns:
            for _, row in summ.iterrows():
                weights_of.setdefault(str(row["run_id"]), {d: float(row[f"w_{d}"]) for d in state.domains})
        taken = set(values) | pending | set(weights_of)

        out: list[Proposal] = []
        for it in range(self.max_iterations):
            for s in range(S, -1, -1):
                n0 = math.ceil((S + 1) / (s + 1) * self.eta**s)
                prev_ids: list[str] = []
                for i in range(s + 1):
                    n_i = max(1, math.floor(n0 * self.eta ** (-i)))
                    r_i = rungs[S - s + i]
                    ids = [f"hb{it}.{s}-r{i}-c{k}" for k in range(n_i)]
                    if i == 0:
                        rng = np.random.default_rng([self.seed, it, s])
                        W = space.sample(n0, state.bounds(), rng)
                        configs = [weights_dict(state.domains, w) for w in W]
                        why = [f"new random configuration of bracket {s}" for _ in ids]
                    else:
                        if any(pid not in values for pid in prev_ids):
                            break  # the previous rung is not finished: this bracket waits
                        ranked = sorted(prev_ids, key=lambda pid: values[pid])[:n_i]
                        configs = [weights_of[pid] for pid in ranked]
                        why = [f"promoted from {pid} (value {state.sign * values[pid]:.4g})" for pid in ranked]
                    for rid, w, y in zip(ids, configs, why):
                        if rid in taken:
                            continue
                        cost = state.config.require_cost(t.model_params, steps=r_i)
                        out.append(Proposal(dict(w), t.model_params, steps=r_i, strategy=self.name, cost=cost,
                                            run_id=rid, reason=f"hyperband iteration {it}, bracket {s}, rung {i} "
                                                               f"({r_i} steps): {y}"))
                        taken.add(rid)
                        if len(out) >= q:
                            return out
                    prev_ids = ids
        return out
