"""The synthetic landscape that ships with mixplan, its runner, and the MFMS checkpoint converter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.config import config_from_dict, load_config
from engine.errors import ConfigError, NotFoundError, ValidationError
from engine.records import Trial, TrialState
from engine.simulators.landscape import Landscape

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "synthetic.toml"


def _trial(w, mp, steps, tid=1, run_id="t1", seed=0):
    return Trial(tid, "s", run_id, TrialState.RUNNING, dict(w), mp, steps, None, "strategy", None, None,
                 None, None, None, None, seed)


def test_landscape_optimum_is_the_best_and_moves_with_scale():
    land = Landscape.make(4, seed=0)
    small_w, small_v = land.optimum(20e6, 300)
    big_w, big_v = land.optimum(1e9, 19500)
    rng = np.random.default_rng(0)
    W = np.vstack([rng.dirichlet(np.ones(4), 4000), rng.dirichlet(np.full(4, 0.3), 4000)])
    assert land.objective(W, 1e9, 19500).min() >= big_v - 1e-9  # nothing sampled beats the optimum
    assert land.objective(W, 20e6, 300).min() >= small_v - 1e-9
    assert np.abs(small_w - big_w).sum() > 0.3  # the optimum moves with scale
    # "tune small, apply large" pays a regret at the target, larger than the noise we simulate
    assert land.objective(small_w[None], 1e9, 19500)[0] - big_v > 0.01
    # losses fall with size and with steps, at every mixture
    assert (land.objective(W[:50], 1e9, 19500) < land.objective(W[:50], 20e6, 19500)).all()
    assert (land.objective(W[:50], 20e6, 19500) < land.objective(W[:50], 20e6, 300)).all()


def test_landscape_is_fixed_by_its_seed_and_checks_input():
    a, b, c = Landscape.make(3, 1), Landscape.make(3, 1), Landscape.make(3, 2)
    W = np.array([[0.2, 0.3, 0.5]])
    assert a.losses(W, 1e8, 1000).tolist() == b.losses(W, 1e8, 1000).tolist()
    assert a.losses(W, 1e8, 1000).tolist() != c.losses(W, 1e8, 1000).tolist()
    with pytest.raises(ValidationError, match="3 domains"):
        a.losses(np.ones((1, 4)) / 4, 1e8, 1000)
    with pytest.raises(ValidationError, match="loss_x"):
        a.objective(W, 1e8, 1000, "metric_acc", domains=["x", "y", "z"])
    with pytest.raises(ValidationError):
        Landscape.make(1)


def test_synthetic_runner_from_the_example(tmp_path):
    from engine.runners.registry import make_runner

    cfg = load_config(EXAMPLE)
    runner = make_runner(cfg)
    assert runner.kind == "synthetic"
    w = {"web": 0.4, "code": 0.3, "books": 0.2, "science": 0.1}
    res = runner.run(_trial(w, 60_000_000, 700), tmp_path)
    assert [c.steps for c in res.checkpoints] == list(range(100, 701, 100))
    assert res.cost == pytest.approx(cfg.cost(60_000_000, steps=700)) == pytest.approx(0.42)
    assert res.checkpoints[2].cost == pytest.approx(0.18)
    again = runner.run(_trial(w, 60_000_000, 700), tmp_path)
    assert again.checkpoints[-1].losses == res.checkpoints[-1].losses  # the same run answers the same
    other = runner.run(_trial(w, 60_000_000, 700, tid=2, run_id="t2"), tmp_path)
    assert other.checkpoints[-1].losses != res.checkpoints[-1].losses  # noise differs per run
    true = runner.true_value(w, 60_000_000, 700, "mean_loss")
    measured = np.mean(list(res.checkpoints[-1].losses.values()))
    assert abs(measured - true) < 5 * 0.003  # noise = 0.003 per domain
    best_w, best_v = runner.true_optimum(1_000_000_000, 19500, "mean_loss")
    assert sum(best_w.values()) == pytest.approx(1.0) and best_v < runner.true_value(w, 1_000_000_000, 19500,
                                                                                       "mean_loss")


def test_synthetic_runner_config_is_checked():
    base = {"name": "s", "domains": ["a", "b"], "runner": {"kind": "synthetic", "nosie": 0.1}}
    with pytest.raises(ConfigError, match="did you mean 'noise'"):
        config_from_dict(base)
    from engine.runners.synthetic import SyntheticRunner

    with pytest.raises(ValidationError):
        SyntheticRunner(["a", "b"], noise=-1.0)


def test_autopilot_on_the_synthetic_study_records_true_regret(tmp_path):
    from engine.autopilot import autopilot
    from engine.store import Store
    from engine.trajectory import trajectory

    store = Store(tmp_path / "runs.duckdb")
    store.create_study(load_config(EXAMPLE))
    res = autopilot(store, "synthetic", "random", budget=700.0, seed=0)
    assert len(res.done) == 3  # random runs at the target: 195 each
    traj = trajectory(store, "synthetic")
    runner_best = None
    from engine.runners.registry import make_runner

    runner_best = make_runner(store.get_config("synthetic")).true_optimum(1_000_000_000, 19500, "mean_loss")[1]
    for e in traj:
        assert e["incumbent_regret"] == pytest.approx(e["incumbent_true"] - runner_best)
        assert e["incumbent_regret"] >= 0
    assert [e["incumbent_regret"] for e in traj] == sorted((e["incumbent_regret"] for e in traj), reverse=True)


def _fake_checkpoint(path: Path, *, numpy_stats: bool) -> dict:
    """A checkpoint laid out like the published one (random weights), and the weights.json it
    should become."""
    import torch

    rng = np.random.default_rng(0)
    shapes = {0: (16, 7), 3: (16, 16), 6: (16, 16), 9: (11, 16)}
    state = {}
    for k, (o, i) in shapes.items():
        state[f"layers.{k}.weight"] = torch.tensor(rng.normal(size=(o, i)), dtype=torch.float32)
        state[f"layers.{k}.bias"] = torch.tensor(rng.normal(size=o), dtype=torch.float32)
    stats = {"X_mean": rng.uniform(size=9), "X_std": rng.uniform(0.5, 2, size=9),
             "y_mean": rng.uniform(size=11), "y_std": rng.uniform(0.5, 2, size=11)}
    if not numpy_stats:
        stats = {k: torch.tensor(v) for k, v in stats.items()}
    run = path / "20250119_174726_j8mad2i5"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"model_state_dict": state, "normalization_stats": stats, "epoch": 24},
               run / "checkpoints" / "checkpoint_latest.pt")
    (run / "feature_mask.json").write_text(json.dumps({"feature_mask": [True] * 6 + [False, False, True]}))
    return {"state": state, "stats": stats, "run": run}


def test_mfms_checkpoint_converter_round_trip(tmp_path):
    pytest.importorskip("torch")
    from engine.simulators.mfms_sim import MFMSSimulator, convert_checkpoint

    fake = _fake_checkpoint(tmp_path, numpy_stats=False)
    out = convert_checkpoint(fake["run"], tmp_path / "weights.json")
    sim = MFMSSimulator.load(out)
    # the converted simulator computes the MLP of the checkpoint, by hand:
    W = np.array([[0.2, 0.2, 0.2, 0.2, 0.2]])
    x = np.array([0.2] * 5 + [60, 512, 8, 1000.0])
    st = {k: np.asarray(v, dtype=np.float64) for k, v in fake["stats"].items()}
    h = ((x - st["X_mean"]) / st["X_std"])[[0, 1, 2, 3, 4, 5, 8]]
    for i, k in enumerate((0, 3, 6, 9)):
        h = fake["state"][f"layers.{k}.weight"].double().numpy() @ h + fake["state"][f"layers.{k}.bias"].double().numpy()
        h = np.maximum(h, 0) if i < 3 else h
    assert sim.evaluate(W, 60, 1000)[0] == pytest.approx(h * st["y_std"] + st["y_mean"])


def test_mfms_checkpoint_converter_refuses_pickles_unless_trusted(tmp_path):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from engine.cli import app
    from engine.simulators.mfms_sim import convert_checkpoint

    fake = _fake_checkpoint(tmp_path, numpy_stats=True)  # numpy arrays: torch's safe loader refuses them
    with pytest.raises(ValidationError, match="--trust-pickle"):
        convert_checkpoint(fake["run"], tmp_path / "w.json")
    r = CliRunner().invoke(app, ["data", "mfms-weights", str(fake["run"]), "--out", str(tmp_path / "w.json"),
                                 "--trust-pickle"])
    assert r.exit_code == 0, r.output
    assert "MIXPLAN_MFMS_SIM" in r.output and (tmp_path / "w.json").exists()
    with pytest.raises(NotFoundError, match="data-recipes"):
        convert_checkpoint(tmp_path / "nowhere", tmp_path / "x.json")
