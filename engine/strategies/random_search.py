"""``random``: random search, Dirichlet(1) mixtures (projected onto the bounds) at the target
fidelity. Its incumbent is the best value observed at the target."""

from __future__ import annotations

from engine.records import Proposal
from engine.strategies import space
from engine.strategies.base import Strategy, StudyState, register, weights_dict


@register("random")
class RandomSearch(Strategy):
    name = "random"

    def __init__(self, *, seed: int = 0, alpha: float = 1.0) -> None:
        super().__init__(seed=seed)
        self.alpha = alpha

    def ask(self, state: StudyState, q: int = 1) -> list[Proposal]:
        t = state.target()
        rng = self.rng(state)
        W = space.away_from(space.sample(q, state.bounds(), rng, self.alpha), state.pending_weights(), state.bounds(),
                            rng, alpha=self.alpha)
        return [Proposal(weights_dict(state.domains, w), t.model_params, steps=t.steps, strategy=self.name,
                         cost=t.cost, reason=f"random mixture (Dirichlet({self.alpha:g})) at the target {t.label()}, "
                                             f"cost {t.cost:.3g}")
                for w in W]
