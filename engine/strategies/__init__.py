"""Strategies that propose the next runs (Optuna-style ask; results "tell" through the store).

``get_strategy(name, seed=...)`` with name in ``mfms-bo``, ``autoscale``, ``random``,
``hyperband``, ``mf-bo``, ``bo``, ``mf-kg``. Asking a study and storing the proposals is
:meth:`engine.study.Study.ask` (``engine.study.propose``).
Importing this package does not import torch (the GP strategies import it when asked).
"""

from engine.strategies.base import (  # noqa: F401
    Fidelity,
    Incumbent,
    Strategy,
    StudyState,
    get_strategy,
    register,
    strategy_names,
)

__all__ = ["Fidelity", "Incumbent", "Strategy", "StudyState", "get_strategy", "register", "strategy_names"]
