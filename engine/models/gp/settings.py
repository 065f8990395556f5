"""MFMS-GP's settings: one frozen record, its defaults here and nowhere else, and two named presets.

Two jobs use the GP, and they want different things from it:

- ``"table"`` (:data:`TABLE`, what ``mfms-gp`` is by default: ``mixplan predict``, ``mixplan
  optimum``, the app's Landscape and Scaling pages, ``mixplan bench predict``): a model of the
  whole run table, every size and length. Checkpoint noise is independent, so a bin of n
  checkpoints is n times better known than one (``noise="count"``); up to 3,000 design points
  (every run kept up to 3,000 runs); hyperparameters on 400 of them.
- ``"search"`` (:data:`SEARCH`, the strategies' surrogate: ``mixplan propose``, autopilot,
  ``mixplan bench optimize``): finding the best mixture at the target, the largest scale, again
  after every result. There the residual is the model's misfit, correlated along a run and
  growing away from the target, so every design point is one observation whose noise grows
  below the largest scale (``noise="far"``); the design is capped at 600 points and the
  hyperparameters are re-learned (8 warm steps) only every 3 new runs, so an ask stays in
  seconds at 500 runs.

Why the two differ is measured, not assumed (README, "Benchmarks"): ``far`` fits the final
checkpoints near the target to ~0.0015 where ``count`` missed them by 0.002-0.006 (more than
good mixtures differ), and it raised mfms-bo's speed-ups; ``count`` keeps the predict
benchmark's held-out figures across sizes. ``mixplan optimum`` answers from the table model
(what the study's data says at any scale); a proposal's incumbent is the search model's. Ask
``get_model("mfms-gp", preset="search")`` for the search model's view of a table.

Every field can be overridden one by one (``get_model("mfms-gp", noise="far")``); unknown
fields and bad values are refused with the fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from engine.errors import ValidationError
from engine.models.gp.likelihood import NOISE_MODELS


@dataclass(frozen=True)
class GPSettings:
    """How an MFMS-GP is built and fitted (module docstring for the presets).

    - ``mean``: the prior mean, a registered name (``scaling``, ``linear``) or a
      :class:`~engine.models.gp.means.GPMean` object.
    - ``noise``: ``count`` or ``far`` (:mod:`engine.models.gp.likelihood`).
    - ``exact``: every checkpoint a design point, no binning (small tables only).
    - ``bins_per_run``, ``max_points``: the design (:mod:`engine.models.gp.binning`).
    - ``max_fit_points``: design points the hyperparameters are learned on (whole runs).
    - ``maxiter``: L-BFGS steps of a cold fit; ``warm_maxiter`` of a warm-started one (0: the
      warm start's hyperparameters are kept as they are).
    - ``refit_every``: in a sequence of fits (the strategies' surrogate), hyperparameters are
      re-learned once this many runs have arrived since they last were; 1: every fit.
    - ``noise_floor``: the least noise variance (standardised units).
    - ``seed``: the design's run subsample and the hyperparameters' subset.
    """

    mean: Any = "scaling"
    noise: str = "count"
    exact: bool = False
    bins_per_run: int = 8
    max_points: int = 3000
    max_fit_points: int = 400
    maxiter: int = 60
    warm_maxiter: int = 10
    refit_every: int = 1
    noise_floor: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        from engine.models.gp.means import check_mean

        check_mean(self.mean)
        if self.noise not in NOISE_MODELS:
            raise ValidationError(f"mfms-gp: unknown noise model '{self.noise}'.",
                                  fix=f"use one of {', '.join(NOISE_MODELS)}.")
        for name in ("bins_per_run", "max_points", "max_fit_points", "refit_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValidationError(f"mfms-gp: {name} must be a whole number >= 1, got {v!r}.")
        for name in ("maxiter", "warm_maxiter", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValidationError(f"mfms-gp: {name} must be a whole number >= 0, got {v!r}.")
        if not (isinstance(self.noise_floor, (int, float)) and 0 < float(self.noise_floor) < 1):
            raise ValidationError(f"mfms-gp: noise_floor must be in (0, 1), got {self.noise_floor!r}.")

    def with_(self, **overrides) -> "GPSettings":
        """These settings with some fields replaced (unknown fields refused)."""
        known = {f.name for f in fields(self)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValidationError(f"mfms-gp: unknown setting(s) {', '.join(bad)}.",
                                  fix=f"settings are: {', '.join(sorted(known))}.")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: the loss model of a study's whole table (module docstring)
TABLE = GPSettings()
#: the strategies' surrogate, refitted at every ask (module docstring)
SEARCH = GPSettings(noise="far", max_points=600, max_fit_points=300, warm_maxiter=8, refit_every=3)
#: every checkpoint a design point, hyperparameters on all of them (``mfms-gp-exact``; small tables)
EXACT = GPSettings(exact=True, max_fit_points=10 ** 9, maxiter=100, warm_maxiter=15)
PRESETS: dict[str, GPSettings] = {"table": TABLE, "search": SEARCH, "exact": EXACT}


def preset(name: str) -> GPSettings:
    if name not in PRESETS:
        raise ValidationError(f"mfms-gp: unknown preset '{name}'.", fix=f"use one of {', '.join(PRESETS)}.")
    return PRESETS[name]
