"""MFMS-GP's noise models: what an observation's noise variance is at each design point.

``sigma^2`` (learned; log-normal prior around 1e-3 in standardised units, at least
``noise_floor``) times a per-point factor:

- ``"count"`` (the loss model's default): ``1 / n_i``, with ``n_i`` the effective number of
  checkpoints behind design point i (a bin's value averages its checkpoints,
  :func:`engine.models.gp.binning.bin_checkpoints`): checkpoint noise is independent, so a bin
  of 40 checkpoints is known far better than one. A new observation is one checkpoint.
- ``"far"`` (the strategies' GP, for finding the optimum at the largest scale): every design
  point is one observation whose misfit grows with its distance below the largest (size,
  length) of the table, ``exp(far_m d_m + far_z d_z)`` with ``d = (u_ref - u)^+`` and
  ``far_m, far_z >= 0`` learned. Misfit is correlated along a run (averaging a bin does not
  shrink it) and matters least far from the target; the reasons and the measurements are in
  :mod:`engine.models.gp.settings`.

The same :meth:`ScaledNoise.variances` gives the training points' noise (the marginal
likelihood, the posterior's Cholesky) and a new observation's (conditioning on believed
points, ``posterior(observation_noise=True)``).
"""

from __future__ import annotations

import math

import torch
from gpytorch.constraints import GreaterThan, Positive
from gpytorch.likelihoods.noise_models import Noise
from gpytorch.priors import LogNormalPrior
from linear_operator.operators import DiagLinearOperator

DTYPE = torch.float64
#: the noise models (module docstring)
NOISE_MODELS = ("count", "far")


class ScaledNoise(Noise):
    """``sigma^2`` times a per-point factor (module docstring). As a GPyTorch noise model it
    serves the marginal likelihood, which passes the training inputs; their checkpoint counts
    are set with :meth:`set_train_counts` for the ``count`` model."""

    def __init__(self, kind: str, noise_floor: float, reference: torch.Tensor | None = None) -> None:
        super().__init__()
        if kind not in NOISE_MODELS:
            raise ValueError(f"unknown noise model {kind!r}")
        self.kind = kind
        self.register_parameter("raw_noise", torch.nn.Parameter(torch.zeros(1, dtype=DTYPE)))
        self.register_constraint("raw_noise", GreaterThan(noise_floor))
        self.register_prior("noise_prior", LogNormalPrior(math.log(1e-3), 2.0), lambda m: m.noise,
                            lambda m, v: m._set_noise(v))
        self._set_noise(max(1e-3, 2 * noise_floor))
        if kind == "far":
            self.register_parameter("raw_far", torch.nn.Parameter(torch.zeros(2, dtype=DTYPE)))
            self.register_constraint("raw_far", Positive())
            # the largest (u_m, u_z) of this fit's table: not part of the learned state (a warm
            # start brings its rates, not its table's reference)
            self.register_buffer("reference", torch.zeros(2, dtype=DTYPE) if reference is None
                                 else torch.as_tensor(reference, dtype=DTYPE).reshape(2), persistent=False)
        self._train_counts: torch.Tensor | None = None

    # ---- values --------------------------------------------------------------------------
    @property
    def noise(self) -> torch.Tensor:
        """sigma^2: the noise variance of one checkpoint (count) / at the largest scale (far)."""
        return self.raw_noise_constraint.transform(self.raw_noise)

    def _set_noise(self, value) -> None:
        value = torch.as_tensor(value, dtype=DTYPE).reshape(1)
        self.initialize(raw_noise=self.raw_noise_constraint.inverse_transform(value))

    @property
    def far(self) -> torch.Tensor:
        """(far_m, far_z): the log-noise growth per unit of u_m and u_z below the reference."""
        if self.kind != "far":
            return torch.zeros(2, dtype=DTYPE)
        return self.raw_far_constraint.transform(self.raw_far)

    def variances(self, X: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
        """Noise variances (..., n) at inputs X (..., n, K + 2), each point ``counts`` checkpoints
        (None: one)."""
        var = self.noise.reshape(()) * torch.ones(X.shape[:-1], dtype=X.dtype)
        if counts is not None:
            var = var / counts
        if self.kind == "far":
            dist = (self.reference - X[..., -2:]).clamp_min(0.0)
            var = var * torch.exp(dist @ self.far)
        return var

    # ---- GPyTorch's noise-model protocol (the marginal likelihood) -----------------------
    def set_train_counts(self, counts: torch.Tensor | None) -> None:
        """Checkpoint counts (n,) of the training inputs the likelihood will be asked about."""
        self._train_counts = counts

    def forward(self, *params, shape: torch.Size | None = None, **kwargs) -> DiagLinearOperator:
        X = params[0] if params and torch.is_tensor(params[0]) else None
        if X is None:
            raise ValueError("ScaledNoise needs the inputs (the marginal likelihood passes the training inputs)")
        counts = self._train_counts
        if counts is not None and X.shape[-2] != counts.shape[-1]:
            raise ValueError(f"ScaledNoise: {X.shape[-2]} inputs but {counts.shape[-1]} checkpoint counts")
        return DiagLinearOperator(self.variances(X, counts))

    def describe(self) -> str:
        out = f"noise {float(self.noise):.3g}"
        if self.kind == "far":
            out += f", far rates {', '.join(f'{float(x):.3g}' for x in self.far)}"
        return out


def make_likelihood(kind: str, noise_floor: float, reference: torch.Tensor | None = None):
    """A Gaussian likelihood whose noise is :class:`ScaledNoise`."""
    from engine.models.gp.compat import gaussian_likelihood

    return gaussian_likelihood(ScaledNoise(kind, noise_floor, reference))
