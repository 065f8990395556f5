"""Loss models: fit a run table, predict mean/std at (mixture, size, length), find the optimum.

    from engine.models import get_model
    model = get_model("mfms-gp").fit(runs, "loss_stackexchange")
    mean, std = model.predict(query)
    best = model.optimum(1_000_000_000, steps=19_500)

Names (``MODELS``): ``auto`` (the candidate with the best backtest, calibrated: mixplan's default),
``mfms-gp``, ``mfms-gp-exact``, ``mfms-gp-law``, ``dmsl``, ``dmsl-joint``, ``autoscale``,
``mixing-law``, ``regmix``, ``uniform``, ``natural``; :func:`register_model` adds one
(``engine.registry``). See :mod:`engine.models.base` for the interface.
"""

from __future__ import annotations

import os

# Two-thread OpenMP spins and collapses 10-17x when the other core is busy (FACTS.md); only
# effective where torch is not imported yet. Set it in the environment to be sure.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from engine.models.base import LossModel, Optimum  # noqa: E402
from engine.registry import Registry  # noqa: E402

_MODELS: dict[str, tuple[str, str]] = {
    "auto": ("engine.models.auto", "AutoModel"),
    "mfms-gp": ("engine.models.mfms_gp", "MFMSGP"),
    "mfms-gp-exact": ("engine.models.mfms_gp", "MFMSGPExact"),
    "mfms-gp-law": ("engine.models.mfms_gp", "MFMSGPLaw"),
    "dmsl": ("engine.models.dmsl", "DMSL"),
    "dmsl-joint": ("engine.models.dmsl", "DMSLJoint"),
    "autoscale": ("engine.models.autoscale", "AutoScale"),
    "mixing-law": ("engine.models.mixing_law", "MixingLaw"),
    "regmix": ("engine.models.regmix", "RegMix"),
    "uniform": ("engine.models.fixed", "Uniform"),
    "natural": ("engine.models.fixed", "Natural"),
}
#: model names accepted by :func:`get_model`
MODELS: tuple[str, ...] = tuple(_MODELS)


#: the models by name (its storage is ``_MODELS``: entries may be lazy ``(module, class)`` pairs)
REGISTRY = Registry("model", _MODELS)


def register_model(name: str, target=None):
    """Make a :class:`LossModel` subclass available as ``get_model(name)`` (directly, as a class
    decorator, or lazily as ``"package.module:Class"``)."""
    global MODELS
    if target is None:
        return lambda cls: register_model(name, cls)
    REGISTRY.register(name, target)
    MODELS = tuple(REGISTRY.names())
    return target


def model_class(name: str) -> type[LossModel]:
    """The class registered under ``name``."""
    return REGISTRY.get(name)


def get_model(name: str, **kwargs) -> LossModel:
    """A new, unfitted model by registry name; ``kwargs`` go to its constructor."""
    return model_class(name)(**kwargs)


def model_names(text: str) -> list[str]:
    """The models of a comma-separated ``--models`` value, each checked against the registry (so a
    typo is refused before minutes of fitting, not after)."""
    from engine.errors import NotFoundError

    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in REGISTRY.names()]
    if unknown or not names:
        raise NotFoundError(f"unknown model(s) {', '.join(unknown) or repr(text)}. "
                            f"Models: {', '.join(REGISTRY.names())}.")
    return names


__all__ = ["LossModel", "MODELS", "Optimum", "REGISTRY", "get_model", "model_class", "model_names",
           "register_model"]
