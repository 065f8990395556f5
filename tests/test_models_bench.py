"""`mixplan bench predict` pieces: the RegMix reader, clean skips, and (slow) the RegMix bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.bench.predict import LinearRegression, mfms_bench, read_regmix_pair, regmix_bench

REGMIX = Path(__file__).resolve().parents[1] / ".." / "shared" / "benchmarks" / "regmix"


def test_read_regmix_pair(tmp_path):
    (tmp_path / "m.csv").write_text("index,train_the_pile_a,train_the_pile_b\n0,0.25,0.75\n1,0.5,0.501\n")
    (tmp_path / "l.csv").write_text("index,metric/the_pile_a_val_loss,metric/the_pile_b_val_loss\n1,3.0,4.0\n0,2.0,5.0\n")
    df = read_regmix_pair(tmp_path / "m.csv", tmp_path / "l.csv", 10**6, 1e9, "t")
    assert list(df.columns) == ["run_id", "model_params", "tokens", "w_a", "w_b", "loss_a", "loss_b"]
    assert df["w_a"].tolist() == pytest.approx([0.25, 0.5 / 1.001])
    assert df.set_index("run_id").loc["regmix-t-0", "loss_b"] == 5.0


def test_skips_cleanly_when_absent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIXPLAN_BENCHMARKS", str(tmp_path / "nothing"))
    import engine.bench.predict as bp

    monkeypatch.setattr(bp, "find_benchmarks", lambda path=None: None)
    assert regmix_bench(log=lambda *_: None) is None
    assert mfms_bench(tmp_path / "missing.json", log=lambda *_: None) is None


@pytest.mark.slow
@pytest.mark.skipif(not (REGMIX / "train_mixture_1m.csv").exists(), reason="../shared/benchmarks/regmix absent")
def test_models_beat_linear_regression_on_pile_cc():
    res = regmix_bench(REGMIX, models=("linear", "regmix", "mfms-gp"), targets=["pile_cc"], log=lambda *_: None)
    by = {r["model"]: r for r in res["rows"]}
    for m in ("regmix", "mfms-gp"):
        assert by[m]["r2_1m"] > by["linear"]["r2_1m"] + 0.1
        assert by[m]["spearman_1B"] > by["linear"]["spearman_1B"]
    assert np.isfinite(by["mfms-gp"]["fit_s"])
