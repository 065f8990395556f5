"""Models that judge themselves by extrapolation: a calibrated wrapper and ``auto``.

- :class:`CalibratedModel` wraps one registry model: it fits it on every run and widens its std
  by what a backtest of it on the same runs showed (:mod:`engine.models.calibration`), so a
  prediction 3x beyond the runs carries the error such extrapolations had on this study.
- :class:`AutoModel` (registry name ``auto``, mixplan's default) first backtests its candidate
  models on the runs (fit the small sizes, predict the larger: :mod:`engine.models.backtest`),
  keeps the one with the best held-out level plus regret, and is that model, calibrated.
  ``auto`` inside a backtest is therefore evaluated exactly as a user gets it: the choice and
  the calibration are made on the fitted sizes alone.

Both keep the optimum near the mixtures the runs explored (:data:`EXPLORE_MARGIN`): a law or a
GP asked about a corner no run came near answers with its functional form, not with data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from engine.errors import ValidationError
from engine.models.base import LossModel, Optimum, Prepared, check_bounds

#: the models ``auto`` chooses among (in this order where no backtest is possible: runs at one size)
CANDIDATES: tuple[str, ...] = ("dmsl", "dmsl-joint", "mixing-law", "mfms-gp-law", "mfms-gp", "regmix")
#: how far beyond the explored share of each domain an optimum may go: 0.1 lets it lean past the
#: explored edge (and the recommendation says when it sits there) without trusting a law's corner
EXPLORE_MARGIN = 0.1


def narrow_to_explored(explored: np.ndarray, bounds: np.ndarray, margin: float = EXPLORE_MARGIN) -> np.ndarray:
    """(K, 2) bounds narrowed to the explored share range of each domain (``explored``: (K, 2)
    min and max over the runs) widened by ``margin``; ``bounds`` unchanged where the narrowed
    box holds no mixture."""
    b = np.asarray(bounds, float)
    lo = np.maximum(b[:, 0], np.clip(explored[:, 0] - margin, 0, 1))
    hi = np.minimum(b[:, 1], np.clip(explored[:, 1] + margin, 0, 1))
    if (lo > hi).any() or lo.sum() > 1 + 1e-9 or hi.sum() < 1 - 1e-9:
        return b
    return np.column_stack([lo, hi])


class CalibratedModel(LossModel):
    """One registry model, fitted on every run, its std widened by its own backtest."""

    name = "calibrated"
    #: a backtest of this model needs no extra calibration step: it calibrates itself on the
    #: runs it is fitted on
    self_calibrated = True

    def __init__(self, model: str = "dmsl", *, explore_margin: float = EXPLORE_MARGIN, calibration=None,
                 **model_options):
        self.model = model
        self.explore_margin = explore_margin
        #: a Calibration to use instead of backtesting (a cached one, e.g. the recommendation's)
        self.calibration = calibration
        self.model_options = model_options

    # ---- fitting -------------------------------------------------------------------------
    def fit(self, runs: pd.DataFrame, objective: str = "mean_loss", *, domains: list[str] | None = None,
            tokens_per_step: int | None = None, warm_start=None) -> "CalibratedModel":
        from engine.models.base import prepare

        prep = prepare(runs, objective, domains=domains, tokens_per_step=tokens_per_step)
        self.domains_ = list(prep.domains)
        self.objective_ = objective
        self.encoding_ = prep.encoding()
        self.n_runs_ = prep.n_runs
        self._fit_calibrated(runs, objective, prep, tokens_per_step)
        return self

    def _choose(self, runs, objective, prep, tokens_per_step):
        """(model name, reason, backtest or None): here the one wrapped model."""
        from engine.models.backtest import backtest, size_cuts

        if self.calibration is not None:
            return self.model, "", None
        try:
            size_cuts(runs)
        except ValidationError:
            return self.model, "", None
        bt = backtest(runs, objective, models=[self.model], domains=prep.domains, tokens_per_step=tokens_per_step,
                      calibrate=False, make_model=self._make)
        return self.model, "", bt

    def _make(self, name: str):
        from engine.models import get_model

        return get_model(name, **(self.model_options if name == self.model else {}))

    def _fit_calibrated(self, runs, objective, prep: Prepared, tokens_per_step) -> None:
        from engine.models.calibration import Calibration, calibration_from_backtest

        chosen, reason, bt = self._choose(runs, objective, prep, tokens_per_step)
        order = [chosen] + [c for c in getattr(self, "candidates", ()) if c != chosen]
        errors = []
        for name in order:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fitted = self._make(name).fit(runs, objective, domains=prep.domains,
                                                  tokens_per_step=tokens_per_step)
                break
            except Exception as exc:  # noqa: BLE001 - the next candidate is tried; none fitting is an error
                errors.append(f"{name}: {str(exc).splitlines()[0][:200]}")
        else:
            raise ValidationError("no loss model could be fitted to these runs: " + "; ".join(errors),
                                  fix="add runs (different mixtures, more sizes), or check the objective's values.")
        if name != chosen:
            reason += f" ({chosen} could not be fitted on every run: {errors[0]}; using {name})"
        self.chosen_, self.reason_, self.fitted_, self.backtest_ = name, reason, fitted, bt
        if self.calibration is not None and name == self.model:
            self.calibration_ = self.calibration
        elif bt is not None:
            self.calibration_ = calibration_from_backtest(bt.predictions, name)
        else:
            self.calibration_ = Calibration(note="not calibrated: the runs have one model size, so no size "
                                                 "could be held out")
        self.largest_size_ = float(prep.m.max())
        self.longest_ = float(prep.z.max()) if prep.z_kind else None
        self.explored_ = np.column_stack([prep.W.min(axis=0), prep.W.max(axis=0)])

    # ---- prediction ----------------------------------------------------------------------
    def _distance(self, m: np.ndarray, z: np.ndarray) -> np.ndarray:
        from engine.models.calibration import distance

        return distance(m, z if self.longest_ else None, self.largest_size_, self.longest_)

    def predict(self, query: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Mean and calibrated std (the wrapped model's own std: :meth:`predict_raw`)."""
        self._check_fitted()
        W, m, z = self.query_arrays(query)
        mean, std = self.fitted_.predict(query)
        return mean, self.calibration_.apply(mean, std, self._distance(m, z))

    def predict_raw(self, query: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.fitted_.predict(query)

    def predict_mean(self, query: pd.DataFrame) -> np.ndarray:
        return self.fitted_.predict_mean(query)

    def _fit(self, prep, *, warm_start=None):  # pragma: no cover - fit() is overridden
        raise NotImplementedError

    def _predict_arrays(self, W, m, z):
        mean, std = self.fitted_._predict_arrays(W, m, z)
        return mean, self.calibration_.apply(mean, std, self._distance(m, z))

    def explored_bounds(self, bounds: list[tuple[float, float]] | None = None) -> tuple[np.ndarray, list[str]]:
        """``bounds`` narrowed to the explored shares (:func:`narrow_to_explored`) and the
        domains that narrowed."""
        b = check_bounds(bounds, len(self.domains_))
        out = narrow_to_explored(self.explored_, b, self.explore_margin)
        return out, [d for d, o, n in zip(self.domains_, b, out) if tuple(o) != tuple(n)]

    def optimum(self, model_params: int, *, steps: int | None = None, tokens: float | None = None,
                bounds: list[tuple[float, float]] | None = None, direction: str | None = None) -> Optimum:
        """The wrapped model's optimum within the bounds narrowed to the explored mixtures, with
        the calibrated std; ``info["at_edge"]`` names the domains whose share sits at the
        explored edge (runs beyond it would tell whether to go further)."""
        self._check_fitted()
        narrowed, touched = self.explored_bounds(bounds)
        user = check_bounds(bounds, len(self.domains_))
        opt = self.fitted_.optimum(model_params, steps=steps, tokens=tokens, bounds=[tuple(x) for x in narrowed],
                                   direction=direction)
        z = self.encoding_.z_from(steps=steps, tokens=tokens)
        w = np.array([opt.weights[d] for d in self.domains_])
        std = float(self.calibration_.apply(np.array([opt.pred_mean]), np.array([opt.pred_std]),
                                            self._distance(np.array([float(model_params)]), np.array([z])))[0])
        edge = [d for d, x, (lo, hi), (ulo, uhi) in zip(self.domains_, w, narrowed, user)
                if d in touched and ((hi < uhi and x >= hi - 1e-3) or (lo > ulo and x <= lo + 1e-3))]
        info = dict(opt.info) | {"model": self.chosen_, "pred_std_uncalibrated": opt.pred_std, "at_edge": edge}
        return Optimum(opt.weights, opt.pred_mean, std, opt.model_params, opt.steps, opt.tokens, info)


class AutoModel(CalibratedModel):
    """The candidate with the best backtest (fit small sizes, predict larger ones), calibrated."""

    name = "auto"

    def __init__(self, *, candidates: tuple[str, ...] = CANDIDATES, explore_margin: float = EXPLORE_MARGIN):
        self.candidates = tuple(candidates)
        self.explore_margin = explore_margin
        self.model = None
        self.calibration = None
        self.model_options = {}

    def _choose(self, runs, objective, prep, tokens_per_step):
        from engine.models.backtest import backtest, size_cuts

        try:
            size_cuts(runs)
        except ValidationError:
            return (self.candidates[0], "the runs have one model size, so no model could be backtested across "
                    "sizes; using the first of mixplan's models that fits", None)
        bt = backtest(runs, objective, models=self.candidates, domains=prep.domains,
                      tokens_per_step=tokens_per_step, calibrate=False)
        if bt.recommended is None:
            return self.candidates[0], bt.reason, bt
        return bt.recommended, bt.reason, bt

    def _make(self, name: str):
        from engine.models import get_model

        return get_model(name)
