"""A synthetic study for tests, the app's screenshots and render-time measurements.

Not a simulator of anything real: losses follow a smooth power law in model size and steps plus a
mixture term whose optimum shifts with scale, with a little noise, so every page has something to
draw. Real studies come from ``mixplan import`` or the runners.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.config import config_from_dict
from engine.records import Proposal

DEFAULT_DOMAINS = ("web", "code", "books")
SIZES = (20_000_000, 60_000_000, 150_000_000, 400_000_000, 1_000_000_000)


TOKENS_PER_STEP = 262144


def config_dict(name: str = "synthetic", domains=DEFAULT_DOMAINS, *, checkpoints: int = 20,
                length: str = "both") -> dict:
    """The study config (as a dict). ``length="tokens"``: a study of token counts only (as from
    RegMix's tables): no tokens_per_step, no [[scales]] (they list steps), the target in tokens."""
    steps = [int(x) for x in np.unique(np.round(np.geomspace(500, 20000, checkpoints), -1))]
    cfg = {
        "name": name, "domains": list(domains), "objective": "mean_loss", "tokens_per_step": TOKENS_PER_STEP,
        "scales": [{"model_params": s, "steps": [steps[len(steps) // 2], steps[-1]],
                    "cost_per_step": round(s / 1e9, 6)} for s in SIZES],
        "target": {"model_params": SIZES[-1], "steps": steps[-1]},
        "runner": {"kind": "table"}, "budget": 250000.0,
        "description": "synthetic demo study (smooth power laws + mixture term + noise)",
    }
    if length == "tokens":
        del cfg["tokens_per_step"], cfg["scales"]
        cfg["target"] = {"model_params": SIZES[-1], "tokens": float(steps[-1] * TOKENS_PER_STEP)}
    return cfg


def losses(W: np.ndarray, m: np.ndarray, s: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """(n, K) per-domain losses for mixtures W at sizes m and steps s."""
    W = np.atleast_2d(W)
    K = W.shape[1]
    scale = 1.6 * (m / 2e7) ** -0.12 * (s / 500.0) ** -0.10
    # transfer: domain 1 ("code") helps every domain more at larger sizes: the optimum moves with scale
    big = np.clip(np.log10(m / 2e7) / np.log10(50), 0, 1)
    share = W + 0.15 * (big[:, None] * W[:, [min(1, K - 1)]])
    mix = 0.35 * (1.0 - np.clip(share, 0, 1)) ** 2 + 0.08 * (1 - W) * np.linspace(0.5, 1.5, K)
    out = 1.8 + scale[:, None] + mix
    if rng is not None:
        out = out + rng.normal(0, 0.004, out.shape)
    return out


def runs_table(n_runs: int = 60, domains=DEFAULT_DOMAINS, *, checkpoints: int = 20, seed: int = 0,
               metrics: bool = False, length: str = "both") -> pd.DataFrame:
    """A run table: ``n_runs`` runs (Dirichlet mixtures, sizes from :data:`SIZES`, longer runs for
    smaller models) with ``checkpoints`` checkpoints each. ``metrics``: add ``metric_acc`` (higher
    is better, falls as the mean loss rises). ``length``: ``"both"`` (steps and tokens),
    ``"steps"`` or ``"tokens"`` (only that column)."""
    if length not in ("both", "steps", "tokens"):
        raise ValueError(f"length must be 'both', 'steps' or 'tokens', got {length!r}")
    rng = np.random.default_rng(seed)
    K = len(domains)
    cfg = config_dict("x", domains, checkpoints=checkpoints)
    grid = np.unique(np.round(np.geomspace(500, 20000, checkpoints), -1))
    rows = []
    for r in range(n_runs):
        w = rng.dirichlet(np.ones(K))
        m = SIZES[min(r % len(SIZES), len(SIZES) - 1) if r % 3 else 0]
        steps = grid
        L = losses(np.repeat(w[None], len(steps), 0), np.full(len(steps), m, float), steps.astype(float), rng)
        for k, st in enumerate(steps):
            row = {"run_id": f"r{r:04d}", "model_params": m, "steps": int(st),
                   "tokens": int(st) * cfg["tokens_per_step"], "cost": round(m / 1e9 * st, 6)}
            row.update({f"w_{d}": w[i] for i, d in enumerate(domains)})
            row.update({f"loss_{d}": L[k, i] for i, d in enumerate(domains)})
            if metrics:
                row["metric_acc"] = float(np.clip(1.3 - 0.3 * L[k].mean() + rng.normal(0, 0.002), 0, 1))
            rows.append(row)
    df = pd.DataFrame(rows)
    return df.drop(columns={"both": [], "steps": ["tokens"], "tokens": ["steps"]}[length])


def create_study(store, name: str = "synthetic", *, n_runs: int = 60, domains=DEFAULT_DOMAINS,
                 checkpoints: int = 20, proposals: int = 2, seed: int = 0, metrics: bool = False,
                 length: str = "both") -> None:
    """Create study ``name`` in ``store`` with ``n_runs`` runs and ``proposals`` proposed trials
    (``metrics``, ``length``: see :func:`runs_table`; ``length="tokens"`` makes a tokens-only study)."""
    cfg = config_from_dict(config_dict(name, domains, checkpoints=checkpoints, length=length))
    table = runs_table(n_runs, domains, checkpoints=checkpoints, seed=seed, metrics=metrics, length=length)
    store.import_runs(name, table, source="synthetic", config=cfg, actor="synthetic")
    rng = np.random.default_rng(seed + 1)
    props = []
    for i in range(proposals):
        w = rng.dirichlet(np.ones(len(domains)))
        length_kw = ({"steps": int(cfg.scales[0].steps[-1])} if cfg.scales
                     else {"tokens": float(table["tokens"].max())})
        props.append(Proposal(weights={d: float(x) for d, x in zip(domains, w)}, model_params=SIZES[i % 2],
                              **length_kw, strategy="random", pred_mean=2.9, pred_std=0.05,
                              reason="synthetic proposal for the demo"))
    if props:
        store.add_trials(name, props, actor="synthetic")
