"""The true optimum of the MFMS simulator at a fidelity (for regret), cached on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def simulator_optimum(runner, objective: str, model_params: int, steps: int, *, maximize: bool,
                      n_random: int = 20000, n_starts: int = 24, seed: int = 0) -> tuple[np.ndarray, float]:
    """Best mixture of the simulator at (model_params, steps): random Dirichlet screening of
    ``n_random`` mixtures (several concentrations), then SLSQP on the simplex from the
    ``n_starts`` best. Returns (weights in the simulator's domain order, value)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    K = 5
    parts = [np.eye(K), np.full((1, K), 1.0 / K)]
    for alpha, frac in ((1.0, 0.4), (0.3, 0.3), (0.1, 0.15), (3.0, 0.15)):
        parts.append(rng.dirichlet(np.full(K, alpha), size=int(n_random * frac)))
    C = np.vstack(parts)
    sign = -1.0 if maximize else 1.0
    v = sign * runner.true_values(C, model_params, steps, objective)
    order = np.argsort(v)
    best_w, best_v = C[order[0]], v[order[0]]

    def f(w):
        return float(sign * runner.true_values(np.clip(w, 0, None)[None], model_params, steps, objective)[0])

    cons = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(K)}]
    for i in order[:n_starts]:
        res = minimize(f, C[i], method="SLSQP", bounds=[(0.0, 1.0)] * K, constraints=cons,
                       options={"maxiter": 300, "ftol": 1e-12, "eps": 1e-7})
        w = np.clip(res.x, 0, None)
        w = w / w.sum()
        val = f(w)
        if val < best_v:
            best_w, best_v = w, val
    return best_w, float(sign * best_v)


def cached_optimum(cache: Path | None, runner, objective: str, model_params: int, steps: int, *,
                   maximize: bool) -> tuple[np.ndarray, float]:
    """:func:`simulator_optimum`, remembered in the JSON file ``cache`` (keyed by objective and
    fidelity) so every seed and process shares one computation."""
    key = f"{objective}@{model_params}/{steps}"
    data = {}
    if cache is not None and cache.exists():
        try:
            data = json.loads(cache.read_text())
        except json.JSONDecodeError:
            data = {}
    if key in data:
        return np.array(data[key]["weights"]), float(data[key]["value"])
    w, v = simulator_optimum(runner, objective, model_params, steps, maximize=maximize)
    if cache is not None:
        data[key] = {"weights": w.tolist(), "value": v}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(data, indent=1))
    return w, v
