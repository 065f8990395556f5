"""The MFMS-BO simulator against FORMAT.md's check values (skipped where the file is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import ValidationError
from engine.simulators.mfms_sim import DOMAINS, OUTPUTS, MFMSSimulator, cost

WEIGHTS = Path(__file__).resolve().parents[1] / ".." / "shared" / "benchmarks" / "mfms-sim" / "weights.json"
pytestmark = pytest.mark.skipif(not WEIGHTS.is_file(), reason="../shared/benchmarks/mfms-sim absent")


@pytest.fixture(scope="module")
def sim():
    return MFMSSimulator.load(WEIGHTS)


def test_check_values(sim):
    out = sim.evaluate(np.full((2, 5), 0.2), [20, 1000], [6000, 19500])
    o = {name: out[:, j] for j, name in enumerate(OUTPUTS)}
    assert o["train_ce"] == pytest.approx([1.9747, 1.2882], abs=1e-4)
    assert o["loss_stackexchange"] == pytest.approx([1.4215, 0.9044], abs=1e-4)
    assert o["loss_github"] == pytest.approx([1.1517, 0.6656], abs=1e-4)
    assert o["metric_hellaswag"][0] == pytest.approx(0.2597, abs=1e-4)
    assert o["metric_arc_easy"][1] == pytest.approx(0.4671, abs=1e-4)


def test_run_table_and_noise(sim):
    W = np.random.default_rng(0).dirichlet(np.ones(5), 3)
    df = sim.run_table(W, [20, 60, 1000], [300, 1000, 250], checkpoint_every=100)
    assert len(df) == 3 + 10 + 3
    assert {f"w_{d}" for d in DOMAINS} <= set(df.columns) and "loss_stackexchange" in df
    last = df.groupby("run_id").tail(1)
    assert last["cost"].tolist() == pytest.approx(cost(np.array([20, 60, 1000]), np.array([300, 1000, 250])))
    assert cost(1000, 100) == pytest.approx(1.0)
    a = sim.evaluate(W, 20, 1000, noise=0.01, rng=np.random.default_rng(1))
    assert 0 < np.abs(a - sim.evaluate(W, 20, 1000)).max() < 0.1


def test_env_var_and_bad_size(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("MIXPLAN_MFMS_SIM", str(WEIGHTS))
    assert MFMSSimulator.load().path == str(WEIGHTS)
    monkeypatch.setenv("MIXPLAN_MFMS_SIM", str(tmp_path / "nope.json"))
    with pytest.raises(Exception, match="MIXPLAN_MFMS_SIM"):
        MFMSSimulator.load()
    from engine.simulators.mfms_sim import size_in_m
    with pytest.raises(ValidationError, match="no model of 42M"):
        size_in_m(42e6)
