"""Checkpoints -> GP design points: how MFMS-GP scales to 100k checkpoint rows.

An exact GP on every checkpoint is O(n^3). Runs are learning curves, smooth in log steps, so
each run is summarised by at most ``bins_per_run`` points: its last checkpoint on its own, and
the (log step, objective) of its other checkpoints in equal-width bins of log steps, where a
bin's value is a local quadratic in log steps through all its checkpoints read at the bin's
mean log step (no bias from the curve's convexity, unlike a plain mean). Every checkpoint
contributes; noisy curves are averaged rather than thinned. A bin's value is known better than
one checkpoint's: it comes with its effective number of checkpoints ``n_i`` (the inverse of
the quadratic's variance factor; 1 for single checkpoints), which the ``count`` noise model
reads (:mod:`engine.models.gp.likelihood`).

:func:`design` keeps every run, i.e. every mixture, up to ``max_points`` runs: ``bins_per_run``
shrinks to ``max_points // runs``, down to 2 points per run and then to 1 (the last
checkpoint; the length axis is then learned only across runs of different lengths). Dropping
whole runs instead threw away mixtures, which are what the model is for. Only beyond
``max_points`` runs are runs subsampled (fixed seed, with a warning).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Design:
    """The GP's training points: encoded inputs, targets (objective units), effective
    checkpoint counts, and the run each point comes from."""

    X: np.ndarray  # (n, K + 2)
    y: np.ndarray  # (n,)
    counts: np.ndarray  # (n,)
    runs: np.ndarray  # (n,) run id per point
    points_per_run: int
    runs_dropped: int = 0


def design(prep, encoding, *, bins_per_run: int, max_points: int, exact: bool, seed: int) -> Design:
    """The design points of a prepared run table (module docstring); ``exact``: every
    checkpoint as it is (small tables)."""
    idx = np.arange(len(prep.y))
    if exact:
        X = encoding.encode(prep.W, prep.m, prep.z)
        return Design(X, prep.y.copy(), np.ones(len(prep.y)), prep.run_ids, 0)
    rng = np.random.default_rng(seed)
    runs = np.unique(prep.run_ids)
    R = len(runs)
    keep = np.ones(len(idx), bool)
    dropped = 0
    if R > max_points:
        chosen = rng.choice(runs, size=max_points, replace=False)
        keep = np.isin(prep.run_ids, chosen)
        dropped = R - max_points
        warnings.warn(f"mfms-gp: {R} runs exceed max_points={max_points}; {dropped} runs "
                      "(chosen at random, fixed seed) are left out of the GP. Raise max_points to keep them.",
                      stacklevel=4)
        R = max_points
    bpr = int(min(bins_per_run, max(1, max_points // max(R, 1))))
    if bpr == 1:  # the last checkpoint of every run
        df = pd.DataFrame({"r": prep.run_ids[keep], "z": prep.z[keep], "i": idx[keep]})
        rows = df.sort_values(["r", "z"], kind="stable").groupby("r", sort=False)["i"].last().to_numpy()
        lz, y, cnt = np.log(prep.z[rows]), prep.y[rows], np.ones(len(rows))
    else:
        rows, lz, y, cnt = bin_checkpoints(prep.run_ids[keep], prep.z[keep], prep.y[keep], idx[keep], bpr)
    X = encoding.encode(prep.W[rows], prep.m[rows], np.exp(lz))
    return Design(X, np.asarray(y, dtype=float), np.asarray(cnt, dtype=float), prep.run_ids[rows], bpr, dropped)


def fit_subset(runs: np.ndarray, max_fit_points: int, seed: int) -> np.ndarray:
    """Indices of the design points the hyperparameters are learned on: all of them up to
    ``max_fit_points``, else randomly chosen whole runs (their learning curves inform the
    length kernel) up to that many points."""
    n = len(runs)
    if n <= max_fit_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.unique(runs))
    counts = pd.Series(runs).value_counts()
    take = order[np.cumsum(counts.loc[order].to_numpy()) <= max_fit_points]
    if len(take):
        return np.flatnonzero(np.isin(runs, take))
    return np.sort(rng.choice(n, max_fit_points, replace=False))


def bin_checkpoints(run_ids: np.ndarray, z: np.ndarray, y: np.ndarray, idx_cols: np.ndarray,
                    bins_per_run: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Summarise each run's checkpoints by <= ``bins_per_run`` points (see the module docstring).

    Returns (run-row index per point, log z per point, y per point, effective checkpoint count
    per point: the noise of the point's value is that of one checkpoint over this count); the
    run-row index points at a representative row of the run (its weights and size).
    """
    lz = np.log(z)
    df = pd.DataFrame({"r": run_ids, "lz": lz, "y": y, "i": idx_cols})
    df = df.sort_values(["r", "lz"], kind="stable")
    g = df.groupby("r", sort=False)
    n = g["lz"].transform("size").to_numpy()
    last = (g.cumcount(ascending=False) == 0).to_numpy()
    lo = g["lz"].transform("min").to_numpy()
    # upper edge: the largest log z below the last checkpoint
    tmp = df["lz"].where(~last)
    hi = tmp.groupby(df["r"]).transform("max").to_numpy()
    nb = max(1, bins_per_run - 1)
    width = np.where(np.isfinite(hi) & (hi > lo), hi - lo, 1.0)
    b = np.floor((df["lz"].to_numpy() - lo) / width * nb).clip(0, nb - 1)
    small = n <= bins_per_run  # few checkpoints: keep each one
    rank = g.cumcount().to_numpy()
    key = np.where(last, -1, np.where(small, rank, b)).astype(np.int64)
    df["k"] = key
    grp = df.groupby(["r", "k"], sort=False)
    centre = grp["lz"].transform("mean").to_numpy()
    scale = grp["lz"].transform("std").fillna(0).to_numpy()
    t = (df["lz"].to_numpy() - centre) / np.where(scale > 0, scale, 1.0)
    yv = df["y"].to_numpy()
    mom = pd.DataFrame({"r": df["r"].to_numpy(), "k": key, "s1": t, "s2": t ** 2, "s3": t ** 3, "s4": t ** 4,
                        "t1": t * yv, "t2": t * t * yv})
    sums = mom.groupby(["r", "k"], sort=False).sum()
    out = grp.agg(lz=("lz", "mean"), y=("y", "mean"), i=("i", "first"), c=("y", "size"))
    # a local quadratic in log steps through each bin, read at the bin's mean log step: unlike
    # the plain mean it has no bias from the curve's convexity (exact for quadratics)
    n_ = out["c"].to_numpy().astype(float)
    S1, S2, S3, S4 = (sums[c].to_numpy() for c in ("s1", "s2", "s3", "s4"))
    T0 = out["y"].to_numpy() * n_
    T1, T2 = sums["t1"].to_numpy(), sums["t2"].to_numpy()
    A = np.stack([np.stack([n_, S1, S2], -1), np.stack([S1, S2, S3], -1), np.stack([S2, S3, S4], -1)], -2)
    rhs = np.stack([T0, T1, T2], -1)
    y_out = out["y"].to_numpy().copy()
    lz_out = out["lz"].to_numpy().copy()
    # bins of < 4 checkpoints: their middle checkpoint as it is (a mean would be biased)
    rank = grp.cumcount().to_numpy()
    size = grp["y"].transform("size").to_numpy()
    mid = (rank == size // 2) & (size < 4)
    small_bins = np.flatnonzero(n_ < 4)
    if len(small_bins):
        # groups appear in out in first-seen order, as do their middle rows in df
        y_out[small_bins] = yv[mid]
        lz_out[small_bins] = df["lz"].to_numpy()[mid]
    # effective checkpoint count per point, for the noise variance sigma^2 / n_eff: one for a
    # single checkpoint (the last, or the middle of a small bin), n for a plain mean, and for
    # the local quadratic 1 / (A^-1)_00, the variance of its value at the bin's mean log step
    # over sigma^2 (iid checkpoint noise; about n / 2.25 for evenly spread checkpoints)
    n_eff = np.ones(len(n_))
    ok = n_ >= 4
    if ok.any():
        n_eff[ok] = n_[ok]  # a plain mean where the quadratic is ill-conditioned
        det = np.linalg.det(A[ok])
        good = np.abs(det) > 1e-9 * np.maximum(1.0, n_[ok]) ** 3
        idx = np.flatnonzero(ok)[good]
        if len(idx):
            beta = np.linalg.solve(A[idx], rhs[idx][..., None])[..., 0]
            y_out[idx] = beta[:, 0]
            e0 = np.zeros((len(idx), 3, 1))
            e0[:, 0, 0] = 1.0
            n_eff[idx] = 1.0 / np.linalg.solve(A[idx], e0)[:, 0, 0]
    return out["i"].to_numpy(), lz_out, y_out, n_eff
