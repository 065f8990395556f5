"""Prior means of MFMS-GP: the trend the GP extrapolates along, the kernel modelling the residual.

Far from its runs a GP reverts to its prior mean, so at a target scale larger than any run the
mean *is* the prediction. The mean is pluggable: ``MFMSGP(mean=...)`` takes a registered name
(``"scaling"``, the default; ``"linear"``) or a :class:`GPMean` object, e.g. a parametric
scaling law fitted elsewhere and held fixed.

A mean works in the objective's own units on the GP's encoded inputs ``X = [w_1..w_K, u_m, u_z]``
(:class:`engine.models.base.Encoding`; ``u_m``, ``u_z`` are log size and log length rescaled so
the training data spans [0, 1]; :meth:`GPMean.scales` maps them back). Its life in a fit:

1. :meth:`GPMean.fit` on the GP's design (after binning), before the kernel's hyperparameters:
   ``X`` (n, K + 2), the targets ``y`` (n,) in objective units, the :class:`Encoding`, the
   objective's name, and the previous fit's mean where the GP is warm-started (``keep`` says
   the hyperparameters will not be re-learned this time);
2. if :attr:`GPMean.learnable`, the marginal likelihood moves its parameters with the kernel's;
   otherwise they stay as ``fit`` left them (a fixed prior-mean law);
3. :meth:`GPMean.constrain` after the likelihood (a loss law stays a loss law).

Example: a Chinchilla-form law in model size N and tokens D, held fixed, as the GP's prior mean
(the GP then models the mixture effect and the law's misfit as the residual)::

    import torch
    from engine.models import get_model
    from engine.models.gp.means import GPMean

    class ChinchillaMean(GPMean):
        learnable = False            # the law is given: the likelihood must not move it

        def __init__(self, E, A, alpha, B, beta):
            super().__init__()
            self.E, self.A, self.alpha, self.B, self.beta = E, A, alpha, B, beta

        def forward(self, X):
            N, D = self.scales(X, tokens=True)          # model_params, tokens (tensors)
            return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    gp = get_model("mfms-gp", mean=ChinchillaMean(1.7, 400.0, 0.34, 410.0, 0.28))
    gp.fit(runs, "loss_web", tokens_per_step=262_144)

A learnable law registers its constants as ``torch.nn.Parameter`` and sets ``learnable = True``;
:meth:`GPMean.fit` is where it would be initialised on the design (least squares, say).
:func:`register_mean` makes a class available by name (``MFMSGP(mean="my-law")``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from gpytorch.means import Mean

from engine.errors import ValidationError

DTYPE = torch.float64


def standardisation(y: np.ndarray) -> tuple[float, float]:
    """(mean, std) the GP standardises its targets with (std 1 where the targets do not vary)."""
    y_mean = float(np.mean(y))
    y_std = float(np.std(y, ddof=1)) if len(y) > 1 else 1.0
    if not np.isfinite(y_std) or y_std < 1e-12:
        y_std = 1.0
    return y_mean, y_std


def is_loss(objective: str) -> bool:
    """A cross-entropy objective (``loss_<domain>``, ``mean_loss``): non-negative, falling with scale."""
    return objective == "mean_loss" or objective.startswith("loss_")


class GPMean(Mean):
    """A prior mean of MFMS-GP, in the objective's units (module docstring).

    Subclasses implement :meth:`forward` (encoded inputs (..., n, K + 2) -> (..., n),
    differentiable in X) and may override :meth:`initialise` (fit on the design) and
    :meth:`constrain`. ``encoding_`` and ``objective_`` are set by :meth:`fit`.
    """

    #: whether the marginal likelihood may move this mean's parameters
    learnable: bool = True

    def fit(self, X: np.ndarray, y: np.ndarray, *, encoding, objective: str, warm: "GPMean | None" = None,
            keep: bool = False) -> "GPMean":
        """Fit on the GP's design before its hyperparameters (module docstring). ``warm``: the
        previous fit's mean (same class), where the GP is warm-started; ``keep``: the
        hyperparameters will not be re-learned, so a mean may keep ``warm``'s law as it is."""
        self.encoding_ = encoding
        self.objective_ = objective
        self.initialise(np.asarray(X, dtype=float), np.asarray(y, dtype=float), warm=warm, keep=keep)
        return self

    def initialise(self, X: np.ndarray, y: np.ndarray, *, warm: "GPMean | None", keep: bool) -> None:
        """Set the parameters from the design. Default: continue from ``warm``'s where given."""
        if warm is not None:
            self.load_state_dict(warm.state_dict())

    def constrain(self) -> None:
        """Put the parameters back where they must be after the likelihood moved them (default: nothing)."""

    def n_params(self, K: int) -> int:
        """Free parameters with K domains (what :meth:`MFMSGP.n_params` reports)."""
        return int(sum(p.numel() for p in self.parameters()))

    def scales(self, X: torch.Tensor, *, tokens: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(model_params, length) at encoded inputs X, as tensors differentiable in X. The
        length is on the fit's axis (``encoding_.z_kind``: steps, or tokens for tables without
        steps); ``tokens=True`` converts steps to tokens (needs the study's tokens_per_step)."""
        enc = self.encoding_
        K = len(enc.domains)
        m = torch.exp(X[..., K] * enc.log_m_span + enc.log_m_lo)
        z = torch.exp(X[..., K + 1] * enc.log_z_span + enc.log_z_lo)
        if tokens and enc.z_kind == "steps":
            if not enc.tokens_per_step:
                raise ValidationError("this mean needs tokens, but the runs are in steps and no tokens_per_step "
                                      "converts them.", fix="fit with tokens_per_step (the study's config sets it).")
            z = z * float(enc.tokens_per_step)
        return m, z


# ---------------------------------------------------------------------------------------------
# The registered means
# ---------------------------------------------------------------------------------------------
_MEANS: dict[str, Callable[[int], GPMean]] = {}


def register_mean(name: str) -> Callable:
    """Class decorator: make a :class:`GPMean` subclass available as ``mean="<name>"``. The
    class is built with the number of domains K (``cls(K)``)."""

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, GPMean)):
            raise TypeError(f"register_mean: {cls!r} is not a GPMean subclass")
        _MEANS[name] = cls
        cls.name = name
        return cls

    return deco


def mean_names() -> list[str]:
    return list(_MEANS)


def check_mean(spec) -> None:
    """Raise a ValidationError unless ``spec`` is a registered mean's name or a GPMean object."""
    if isinstance(spec, GPMean):
        return
    if isinstance(spec, str) and spec in _MEANS:
        return
    import difflib

    if isinstance(spec, str):
        close = difflib.get_close_matches(spec, list(_MEANS), n=1)
        raise ValidationError(f"mfms-gp: unknown mean '{spec}'." + (f" Did you mean '{close[0]}'?" if close else ""),
                              fix=f"use one of {', '.join(_MEANS)}, or pass a GPMean object "
                                  "(engine.models.gp.means).")
    raise ValidationError(f"mfms-gp: mean must be a name or a GPMean object, got {type(spec).__name__}.",
                          fix=f"use one of {', '.join(_MEANS)}, or subclass engine.models.gp.means.GPMean.")


def make_mean(spec, K: int) -> GPMean:
    """A fresh, unfitted mean: the registered class for a name, a deep copy of an object (the
    object given stays as it was, like an estimator's hyperparameter)."""
    check_mean(spec)
    mean = copy.deepcopy(spec) if isinstance(spec, GPMean) else _MEANS[spec](K)
    return mean.to(DTYPE)


def mean_kind(spec) -> str:
    """What identifies a mean for warm starts: its registered name, else its class."""
    if isinstance(spec, str):
        return spec
    return getattr(type(spec), "name", None) or f"{type(spec).__module__}.{type(spec).__qualname__}"


class _Standardised(Mean):
    """A :class:`GPMean` in the GP's standardised units: ``(mean(X) - y_mean) / y_std``."""

    def __init__(self, mean: GPMean, y_mean: float, y_std: float) -> None:
        super().__init__()
        self.inner = mean
        self.y_mean, self.y_std = float(y_mean), float(y_std)

    def forward(self, X):
        return (self.inner(X) - self.y_mean) / self.y_std


def standardised(mean: GPMean, y_mean: float, y_std: float) -> Mean:
    return _Standardised(mean, y_mean, y_std)


class _UnitMean(GPMean):
    """Shared by the built-in means: parameters live in the standardised units of the design
    they were fitted on (``loc``, ``scale`` buffers), which keeps their least-squares fit and the
    likelihood's steps on the scale of 1 whatever the objective's units."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros((), dtype=DTYPE))
        self.register_buffer("scale", torch.ones((), dtype=DTYPE))

    def _set_units(self, y: np.ndarray) -> tuple[float, float]:
        y_mean, y_std = standardisation(y)
        self.loc.fill_(y_mean)
        self.scale.fill_(y_std)
        return y_mean, y_std

    def forward(self, X):
        return self.loc + self.scale * self.standard(X)

    def standard(self, X):  # pragma: no cover - abstract
        raise NotImplementedError


@register_mean("linear")
class LinearMean(_UnitMean):
    """``b . x`` over all inputs (no separate bias: the K mixture weights sum to 1), initialised
    by least squares, then learned with the kernel."""

    def __init__(self, K: int) -> None:
        super().__init__()
        self.register_parameter("weights", torch.nn.Parameter(torch.zeros(K + 2, 1, dtype=DTYPE)))

    def n_params(self, K: int) -> int:
        return K + 2

    def standard(self, X):
        return (X @ self.weights).squeeze(-1)

    def initialise(self, X, y, *, warm, keep) -> None:
        y_mean, y_std = self._set_units(y)
        with torch.no_grad():
            if warm is not None:  # continue from the previous weights (in this fit's units)
                self.weights.copy_(warm.weights)
                return
            coef, *_ = np.linalg.lstsq(X, (y - y_mean) / y_std, rcond=None)
            self.weights.copy_(torch.as_tensor(coef, dtype=DTYPE).unsqueeze(-1))


def _physical_bounds(floor: float | None, n_mix: int, n_scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares bounds on ``[c, k, t_mix..., t_scale...]``: none for a metric; for a loss
    ``c >= floor`` (the irreducible loss is not negative), ``k >= 0`` and ``t_scale <= 0``."""
    n = 2 + n_mix + n_scale
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    if floor is not None:
        lo[0], lo[1] = floor, 0.0
        hi[2 + n_mix:] = 0.0
    return lo, hi


def _mean_columns(X: np.ndarray, mixture: bool) -> np.ndarray:
    """Which columns of the design ``[w_1..w_K, u_m, u_z]`` the scaling mean fits an exponent
    for: the mixture columns where ``mixture`` (enough distinct mixtures), each scale axis
    where the data varies it."""
    K = X.shape[1] - 2
    return np.r_[np.full(K, bool(mixture)), np.ptp(X[:, K]) > 0, np.ptp(X[:, K + 1]) > 0]


@register_mean("scaling")
class ScalingMean(_UnitMean):
    """``c + k exp(t . x)``: the data mixing law extended with scale terms (a power law in size
    and length times an exponential in the mixture; :mod:`engine.models.mixing_law`),
    initialised by least squares on the design, then learned with the kernel.

    The mixture exponents are fitted only where the design has at least K + 2 distinct
    mixtures (``mixture_terms_``; fewer cannot identify them: they stay 0, the mean is the scale
    trend alone and the kernel carries the mixture effect); an axis the data does not vary
    gets no exponent. For a loss the law is a loss's (:func:`_physical_bounds`): it falls with
    size and length towards an irreducible loss that is not negative, so a few runs cannot
    extrapolate it below zero at a larger target."""

    def __init__(self, K: int) -> None:
        super().__init__()
        self.register_parameter("c", torch.nn.Parameter(torch.zeros((), dtype=DTYPE)))
        self.register_parameter("k", torch.nn.Parameter(torch.zeros((), dtype=DTYPE)))
        self.register_parameter("t", torch.nn.Parameter(torch.zeros(K + 2, dtype=DTYPE)))
        # 1 where an exponent is fitted, 0 where the data cannot identify it (held at 0, also
        # while the kernel's hyperparameters are learned)
        self.register_buffer("mask", torch.ones(K + 2, dtype=DTYPE))
        self.mixture_terms_ = False

    def n_params(self, K: int) -> int:
        return K + 4

    def standard(self, X):
        return self.c + self.k * torch.exp((X @ (self.t * self.mask)).clamp(-50, 50))

    def _floor(self) -> float | None:
        """A loss's zero in the mean's standardised units (None for a metric)."""
        return -float(self.loc) / float(self.scale) if is_loss(self.objective_) else None

    def initialise(self, X, y, *, warm, keep) -> None:
        K = X.shape[1] - 2
        old = (float(warm.loc), float(warm.scale)) if warm is not None else None
        y_mean, y_std = self._set_units(y)
        self.mixture_terms_ = len(np.unique(X[:, :K].round(6), axis=0)) >= K + 2
        cols = _mean_columns(X, self.mixture_terms_)
        if warm is not None and keep and np.array_equal(cols, warm.mask.numpy().astype(bool)):
            # nothing is re-learned this time: keep the previous law, re-expressed in this fit's
            # units (objective = loc + scale (c + k e)), instead of a least-squares refit on the
            # new data alone, which swung a small study's extrapolation (docs/optimisation-notes.md)
            with torch.no_grad():
                self.c.fill_((old[0] + old[1] * float(warm.c.detach()) - y_mean) / y_std)
                self.k.fill_(float(warm.k.detach()) * old[1] / y_std)
                self.t.copy_(warm.t)
                self.mask.copy_(warm.mask)
            return
        self._least_squares(X, (y - y_mean) / y_std, cols, warm)

    def _least_squares(self, X: np.ndarray, ys: np.ndarray, cols: np.ndarray, warm: "ScalingMean | None") -> None:
        """Least squares of ``c + k exp(X @ t)`` on the standardised design, over the exponents
        of ``cols`` (the others 0), warm-started from ``warm``'s parameters; within
        :func:`_physical_bounds` for a loss."""
        from scipy.optimize import least_squares

        K = X.shape[1] - 2
        F = X[:, cols]
        d = F.shape[1]
        lam = 1e-3

        def res(p):
            return np.r_[p[0] + p[1] * np.exp(np.clip(F @ p[2:], -50, 50)) - ys, lam * p[2:]]

        def jac(p):
            e = np.exp(np.clip(F @ p[2:], -50, 50))
            J = np.column_stack([np.ones(len(F)), e, p[1] * e[:, None] * F])
            return np.vstack([J, np.column_stack([np.zeros((d, 2)), lam * np.eye(d)])])

        floor = self._floor()
        n_mix = int(cols[:K].sum())
        lo, hi = _physical_bounds(floor, n_mix, d - n_mix)
        starts = []
        if warm is not None:
            starts.append(np.r_[float(warm.c.detach()), float(warm.k.detach()), warm.t.detach().numpy()[cols]])
        else:
            # a decreasing (k > 0, t < 0 along the scale axes) and, for a metric, an increasing start
            t0 = np.zeros(d)
            t0[n_mix:] = -1.0  # the scale axes follow the (active) mixture columns
            starts.append(np.r_[-1.0 if floor is None else max(-1.0, floor + 0.5), 1.0, t0])
            if floor is None:
                starts.append(np.r_[1.0, -1.0, t0])
        best = None
        for p0 in starts:
            try:
                r = least_squares(res, np.clip(p0, lo, hi), jac=jac, method="trf", bounds=(lo, hi),
                                  max_nfev=200 if warm is None else 50)
            except (ValueError, FloatingPointError):
                continue
            if best is None or r.cost < best.cost:
                best = r
        t = np.zeros(K + 2)
        if best is not None and np.isfinite(best.x).all():
            t[cols] = best.x[2:]
            c, k = best.x[0], best.x[1]
        else:
            c, k = 0.0, 0.0
        with torch.no_grad():
            self.c.fill_(float(c))
            self.k.fill_(float(k))
            self.t.copy_(torch.as_tensor(t, dtype=DTYPE))
            self.mask.copy_(torch.as_tensor(cols, dtype=DTYPE))

    def constrain(self) -> None:
        """For a loss, back inside :func:`_physical_bounds` after the likelihood moved the law
        (the exponents of the size and length columns, the last two)."""
        floor = self._floor()
        if floor is None:
            return
        with torch.no_grad():
            self.c.clamp_(min=floor)
            self.k.clamp_(min=0.0)
            self.t[-2:].clamp_(max=0.0)


__all__ = ["GPMean", "LinearMean", "ScalingMean", "check_mean", "is_loss", "make_mean", "mean_kind", "mean_names",
           "register_mean", "standardisation", "standardised"]

from engine.models.gp import law_mean  # noqa: E402,F401 - registers mean="dmsl"
