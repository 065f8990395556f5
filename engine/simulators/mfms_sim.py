"""The MFMS-BO simulator (Yen et al. 2025): an MLP from (mixture, size, steps) to 11 outputs.

Evaluates ``weights.json`` exactly as ``benchmarks/mfms-sim/FORMAT.md`` says, in numpy and
vectorised. mixplan ships no copy: the paper's authors publish the MLP as a PyTorch checkpoint
in github.com/namkoong-lab/data-recipes (folder :data:`PUBLISHED_RUN`);
:func:`convert_checkpoint` (``mixplan data mfms-weights RUN_DIR --out weights.json``) turns it
into ``weights.json``. Give its path (``[runner] path``), or set the environment variable
``MIXPLAN_MFMS_SIM``, or run from a directory where ``../shared/benchmarks/mfms-sim/weights.json``
exists (also tried relative to the repository).

    sim = MFMSSimulator.load()                       # or MFMSSimulator.load("path/weights.json")
    out = sim.evaluate(W, size_m=20, steps=6000)     # (n, 11) in OUTPUTS order
    df = sim.run_table(W, size_m=[20, 60], steps=...)   # run-table rows (w_*, loss_*, metric_*)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import NotFoundError, ValidationError

#: training domains, in the simulator's input order
DOMAINS = ("wikipedia", "stackexchange", "github", "arxiv", "book")
#: output columns, in the simulator's output order
OUTPUTS = (
    "train_ce", "loss_commoncrawl", "loss_c4", "loss_wikipedia", "loss_stackexchange", "loss_github",
    "loss_arxiv", "loss_book", "metric_hellaswag", "metric_piqa", "metric_arc_easy",
)
#: size in M -> (d_model, n_heads, layers)
ARCH = {20: (256, 8, 8), 60: (512, 8, 8), 150: (768, 12, 12), 300: (1024, 16, 16),
        500: (1280, 16, 16), 700: (1536, 16, 16), 1000: (2048, 16, 16)}
SIZES_M = tuple(ARCH)
#: relative cost per 100 steps (1B = 1), from the paper's code
COST_PER_100_STEPS = {20: 0.012963, 60: 0.032318, 150: 0.074844, 300: 0.147731, 500: 0.216622,
                      700: 0.298298, 1000: 1.0}
MIN_STEPS, MAX_STEPS = 100, 19_500
ENV_VAR = "MIXPLAN_MFMS_SIM"
DEFAULT_RELATIVE = Path("..") / "shared" / "benchmarks" / "mfms-sim" / "weights.json"
#: where the paper's simulator is published (a folder of github.com/namkoong-lab/data-recipes)
PUBLISHED_RUN = "opt_algos/data_models/20250119_174726_j8mad2i5"
#: what a study on this simulator needs, said the same way by examples/slimpajama-sim.toml's first
#: line, the README and the error when the weights are missing
NEEDS = ("the MFMS-BO paper's simulator weights (not shipped with mixplan): download the folder "
         f"{PUBLISHED_RUN} of github.com/namkoong-lab/data-recipes, convert it with "
         "`mixplan data mfms-weights FOLDER --out weights.json`, then set MIXPLAN_MFMS_SIM=weights.json "
         "(or path = \"weights.json\" under [runner]).")
#: the inputs the published MLP reads (its feature_mask.json): x[6], x[7] (d_model, n_heads) dropped
FEATURE_MASK = (True, True, True, True, True, True, False, False, True)


def find_weights(path: str | Path | None = None) -> Path:
    """Locate weights.json: the given path, $MIXPLAN_MFMS_SIM, or ../shared/benchmarks/... ."""
    tried = []
    cands = []
    if path is not None:
        cands.append(Path(path))
    elif os.environ.get(ENV_VAR):
        cands.append(Path(os.environ[ENV_VAR]))
    else:
        cands.append(Path.cwd() / DEFAULT_RELATIVE)
        cands.append(Path(__file__).resolve().parents[2] / DEFAULT_RELATIVE)
    for c in cands:
        c = c / "weights.json" if c.is_dir() else c
        tried.append(str(c))
        if c.is_file():
            return c
    raise NotFoundError(f"MFMS simulator weights not found (tried: {', '.join(tried)}). This study needs {NEEDS}")


def size_in_m(model_params: float | np.ndarray) -> np.ndarray:
    """Parameters -> the simulator's size in M (20 .. 1000); must be one of SIZES_M."""
    s = np.asarray(model_params, dtype=float) / 1e6
    s_round = np.round(s).astype(int)
    ok = np.isin(s_round, SIZES_M) & np.isclose(s, s_round, rtol=1e-6)
    if not ok.all():
        bad = np.asarray(s).ravel()[~ok.ravel()][0]
        raise ValidationError(f"the simulator has no model of {bad:g}M parameters.",
                              fix=f"use one of {', '.join(f'{x}M' for x in SIZES_M)} (model_params = size * 1e6).")
    return s_round


def cost(size_m: float | np.ndarray, steps: float | np.ndarray) -> np.ndarray:
    """Relative cost of a run (1B for 100 steps = 1)."""
    s = np.asarray(size_m)
    per = np.vectorize(lambda x: COST_PER_100_STEPS[int(x)])(s)
    return per * np.asarray(steps, dtype=float) / 100.0


@dataclass
class MFMSSimulator:
    """The simulator's MLP. ``noise`` adds Gaussian noise of that std to every output."""

    layers: list[tuple[np.ndarray, np.ndarray]]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    path: str = ""

    @classmethod
    def load(cls, path: str | Path | None = None) -> "MFMSSimulator":
        p = find_weights(path)
        raw = json.loads(p.read_text())
        layers = []
        for k in (0, 3, 6, 9):
            layers.append((np.asarray(raw[f"layers.{k}.weight"], dtype=np.float64),
                           np.asarray(raw[f"layers.{k}.bias"], dtype=np.float64)))
        x_std = np.asarray(raw["norm_X_std"], dtype=np.float64).ravel()
        x_std = np.where(x_std == 0, 1e-8, x_std)
        return cls(layers, np.asarray(raw["norm_X_mean"], dtype=np.float64).ravel(), x_std,
                   np.asarray(raw["norm_y_mean"], dtype=np.float64).ravel(),
                   np.asarray(raw["norm_y_std"], dtype=np.float64).ravel(), str(p))

    def evaluate(self, W: np.ndarray, size_m: float | np.ndarray, steps: float | np.ndarray, *,
                 noise: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """(n, 11) outputs (OUTPUTS order) for mixtures W (n, 5) at sizes (in M) and steps."""
        W = np.atleast_2d(np.asarray(W, dtype=np.float64))
        if W.shape[1] != len(DOMAINS):
            raise ValidationError(f"the simulator takes 5 weights ({', '.join(DOMAINS)}), got {W.shape[1]}.")
        n = W.shape[0]
        s = np.broadcast_to(np.asarray(size_m, dtype=np.float64), (n,))
        st = np.broadcast_to(np.asarray(steps, dtype=np.float64), (n,))
        arch = np.array([ARCH[int(x)] for x in s], dtype=np.float64).reshape(n, 3)
        x = np.column_stack([W, s, arch[:, 0], arch[:, 1], st])
        h = (x - self.x_mean) / self.x_std
        h = h[:, [0, 1, 2, 3, 4, 5, 8]]
        for i, (Wk, bk) in enumerate(self.layers):
            h = h @ Wk.T + bk
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        out = h * self.y_std + self.y_mean
        if noise > 0:
            rng = rng or np.random.default_rng()
            out = out + rng.normal(0.0, noise, size=out.shape)
        return out

    def run_table(self, W: np.ndarray, size_m: float | np.ndarray, steps: float | np.ndarray,
                  checkpoint_every: int | None = 100, *, noise: float = 0.0, seed: int | None = None,
                  run_prefix: str = "sim") -> pd.DataFrame:
        """Run-table rows for runs (mixture i, size i, final steps i); with ``checkpoint_every``
        every multiple of it up to the final step is a checkpoint (as in the paper's protocol)."""
        W = np.atleast_2d(np.asarray(W, dtype=np.float64))
        n = len(W)
        s = np.broadcast_to(np.asarray(size_m, dtype=np.float64), (n,))
        fin = np.broadcast_to(np.asarray(steps, dtype=np.float64), (n,))
        run_idx, st = [], []
        for i in range(n):
            grid = (np.arange(checkpoint_every, fin[i] + 1e-9, checkpoint_every) if checkpoint_every
                    else np.array([]))
            if not len(grid) or grid[-1] != fin[i]:
                grid = np.append(grid, fin[i])
            run_idx.append(np.full(len(grid), i))
            st.append(grid)
        ri = np.concatenate(run_idx)
        st = np.concatenate(st)
        rng = np.random.default_rng(seed)
        out = self.evaluate(W[ri], s[ri], st, noise=noise, rng=rng)
        df = pd.DataFrame({"run_id": [f"{run_prefix}-{i}" for i in ri],
                           "model_params": (s[ri] * 1e6).astype(np.int64), "steps": st.astype(np.int64)})
        for j, d in enumerate(DOMAINS):
            df[f"w_{d}"] = W[ri, j]
        for j, name in enumerate(OUTPUTS):
            df[name] = out[:, j]
        df["cost"] = cost(s[ri], st)
        return df


def convert_checkpoint(source: str | Path, out: str | Path, *, trust_pickle: bool = False) -> Path:
    """Write ``weights.json`` from the published PyTorch checkpoint.

    ``source``: the run folder (holding ``checkpoints/checkpoint_latest.pt`` and
    ``feature_mask.json``) or the ``.pt`` file itself. The checkpoint holds ``model_state_dict``
    (``layers.{0,3,6,9}.{weight,bias}``) and ``normalization_stats`` (``X_mean``, ``X_std``,
    ``y_mean``, ``y_std``); they become the keys :meth:`MFMSSimulator.load` reads. A checkpoint
    whose statistics are pickled numpy arrays cannot be read by torch's safe loader; loading it
    fully runs code from the file, so it is done only with ``trust_pickle=True``."""
    import torch

    src = Path(source)
    pt = src / "checkpoints" / "checkpoint_latest.pt" if src.is_dir() else src
    if not pt.is_file():
        raise NotFoundError(f"no checkpoint at {pt}. Fix: give the folder {PUBLISHED_RUN} of "
                            "github.com/namkoong-lab/data-recipes, or its checkpoints/checkpoint_latest.pt.")
    mask_file = (src if src.is_dir() else pt.parent.parent) / "feature_mask.json"
    if mask_file.is_file():
        raw_mask = json.loads(mask_file.read_text()).get("feature_mask", list(FEATURE_MASK))
        if isinstance(raw_mask, dict):
            raw_mask = [bool(raw_mask.get(str(i), True)) for i in range(len(FEATURE_MASK))]
        if tuple(bool(x) for x in raw_mask) != FEATURE_MASK:
            raise ValidationError(f"{mask_file}: feature mask {raw_mask} is not the published model's "
                                  f"{list(FEATURE_MASK)}; mixplan evaluates only that model.")
    try:
        ckpt = torch.load(pt, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ...
        if trust_pickle:
            raise ValidationError(f"{pt}: not a readable PyTorch checkpoint ({exc}).") from exc
        raise ValidationError(f"{pt}: torch's safe loader refused the checkpoint ({type(exc).__name__}).",
                              fix="if you trust the file (a pickle can run code), pass --trust-pickle.") from exc
    try:
        state, stats = ckpt["model_state_dict"], ckpt["normalization_stats"]
        out_dict: dict[str, list] = {}
        for k in (0, 3, 6, 9):
            for part in ("weight", "bias"):
                out_dict[f"layers.{k}.{part}"] = np.asarray(state[f"layers.{k}.{part}"], dtype=np.float64).tolist()
        for name in ("X_mean", "X_std", "y_mean", "y_std"):
            out_dict[f"norm_{name}"] = np.asarray(stats[name], dtype=np.float64).ravel().tolist()
    except (KeyError, TypeError) as exc:
        raise ValidationError(f"{pt}: not the MFMS-BO simulator's checkpoint (missing {exc}).",
                              fix="it needs model_state_dict (layers.0/3/6/9) and normalization_stats.") from exc
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(out_dict))
    MFMSSimulator.load(out).evaluate(np.full((1, len(DOMAINS)), 0.2), SIZES_M[0], 1000)
    return out


def runtable_columns() -> list[str]:
    """Output columns that are run-table objectives (``train_ce`` is kept as an extra column)."""
    return [o for o in OUTPUTS if o.startswith(("loss_", "metric_"))]
