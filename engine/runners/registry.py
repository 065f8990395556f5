"""``make_runner(config)``: the runner a study's ``[runner] kind`` names.

Kinds and where they live (imported lazily, so choosing one never imports another's heavy
dependencies, e.g. torch for ``builtin``):

- ``command``  -> :class:`engine.runners.command.CommandRunner` (DESIGN.md contract 3)
- ``builtin``  -> :class:`engine.runners.builtin.BuiltinRunner` (the torch trainer)
- ``mfms-sim`` -> :mod:`engine.runners.mfms_sim` (the MFMS-BO simulator)
- ``table``    -> :mod:`engine.runners.table` (replays a stored run table)
- ``synthetic`` -> :mod:`engine.runners.synthetic` (the landscape that ships with mixplan)

A runner module offers one of, in this order: a module-level ``make_runner(config)``, or a
:class:`~engine.runners.base.Runner` subclass whose ``kind`` is the study's kind, built with
its ``from_config(config)`` classmethod (else ``cls(config)``).
"""

from __future__ import annotations

import importlib
import inspect

from engine.config import StudyConfig
from engine.errors import ConfigError, NotAvailableError
from engine.runners.base import Runner

#: kind -> module holding it.
RUNNER_MODULES: dict[str, str] = {
    "command": "engine.runners.command",
    "builtin": "engine.runners.builtin",
    "mfms-sim": "engine.runners.mfms_sim",
    "table": "engine.runners.table",
    "synthetic": "engine.runners.synthetic",
}
#: kinds that answer from a simulator or a table instead of training: cheap enough to run
#: in-process (autopilot) and able to say the truth (trajectories' ``incumbent_true``).
SIMULATED_KINDS: tuple[str, ...] = ("mfms-sim", "table", "synthetic")


def runner_class(kind: str) -> type[Runner] | None:
    """The Runner subclass of ``kind`` in its module (None if the module builds it otherwise)."""
    module = _module(kind)
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, Runner) and obj is not Runner and getattr(obj, "kind", None) == kind \
                and obj.__module__ == module.__name__:
            return obj
    return None


def _module(kind: str):
    if kind not in RUNNER_MODULES:
        raise ConfigError(f"key 'runner.kind': unknown runner {kind!r}.",
                          fix=f"use one of {', '.join(sorted(RUNNER_MODULES))}.")
    name = RUNNER_MODULES[kind]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise NotAvailableError(f"the '{kind}' runner is not available in this build ({name} is missing).") from exc
        raise NotAvailableError(f"the '{kind}' runner needs the Python package '{exc.name}', which is not "
                                f"installed. Install it (pip install {exc.name}) and try again.") from exc


def make_runner(config: StudyConfig) -> Runner:
    """The runner for ``config.runner.kind``, configured from the study config."""
    kind = config.runner.kind
    module = _module(kind)
    factory = getattr(module, "make_runner", None)
    if callable(factory):
        runner = factory(config)
    else:
        cls = runner_class(kind)
        if cls is None:
            raise NotAvailableError(f"{module.__name__} defines no runner of kind '{kind}'.")
        runner = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
    if not isinstance(runner, Runner):
        raise NotAvailableError(f"{module.__name__} built {type(runner).__name__}, not a Runner.")
    return runner
