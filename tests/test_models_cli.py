"""`mixplan predict` / `mixplan optimum` on a stored study."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_models_synthetic import W_STAR, law, query, runs_table  # noqa: E402

from engine.cli.models import optimum_cmd, predict_cmd  # noqa: E402
from engine.config import parse_config  # noqa: E402
from engine.errors import ValidationError  # noqa: E402


@pytest.fixture()
def db(tmp_path):
    from engine.store import Store

    path = tmp_path / "t.duckdb"
    store = Store(path, create=True)
    store.create_study(parse_config('name = "syn"\ndomains = ["d0", "d1", "d2"]\nobjective = "loss_x"\n'
                                    '[bounds]\nd2 = [0.0, 0.1]\n'))
    store.import_runs("syn", runs_table(15, every=250))
    return str(path)


def test_predict_writes_pred_columns(db, tmp_path):
    q, y = query(4, 1e8, 1000)
    q.to_csv(tmp_path / "q.csv", index=False)
    predict_cmd(db, "syn", "mixing-law", tmp_path / "q.csv", tmp_path / "p.csv")
    out = pd.read_csv(tmp_path / "p.csv")
    assert {"pred_mean", "pred_std"} <= set(out.columns) and len(out) == 4


def test_optimum_respects_study_bounds_and_json(db):
    opt = optimum_cmd(db, "syn", "mfms-gp", 10**8, steps=1000)
    assert opt["weights"]["d2"] <= 0.1 + 1e-6 and sum(opt["weights"].values()) == pytest.approx(1)
    js = json.loads(json.dumps(opt))
    # the contract's keys, plus what the answer rests on (model, calibrated std, extrapolation)
    assert {"weights", "pred_mean", "pred_std"} <= set(js) and set(js["weights"]) == {"d0", "d1", "d2"}
    assert js["model"] == "mfms-gp" and js["pred_std"] >= js["pred_std_uncalibrated"] and "extrapolation" in js
    with pytest.raises(ValidationError, match="steps or --tokens"):
        optimum_cmd(db, "syn", "uniform", 10**8)
    with pytest.raises(ValidationError, match="unknown objective"):
        optimum_cmd(db, "syn", "uniform", 10**8, steps=10, objective="loss_nope")


@pytest.fixture()
def db_multi(tmp_path):
    """A study with two loss columns and a metric that rises where loss_x falls."""
    from engine.store import Store

    path = tmp_path / "m.duckdb"
    store = Store(path, create=True)
    store.create_study(parse_config('name = "multi"\ndomains = ["d0", "d1", "d2"]\nobjective = "mean_loss"\n'))
    df = runs_table(15, every=250)
    df["loss_y"] = df["loss_x"] + 0.5 * df["w_d0"]
    df["metric_acc"] = 10.0 - df["loss_x"]
    store.import_runs("multi", df)
    return str(path)


def test_cli_optimum_json_and_predict_with_mean_loss_and_a_metric(db_multi, tmp_path):
    from typer.testing import CliRunner

    from engine.cli import app

    runner = CliRunner()
    base = ["--db", db_multi, "--study", "multi", "--model", "mixing-law"]
    r = runner.invoke(app, ["optimum", *base, "--model-params", "1e8", "--steps", "1000", "--json"])
    assert r.exit_code == 0, r.output
    js = json.loads(r.stdout)
    assert {"weights", "pred_mean", "pred_std"} <= set(js) and sum(js["weights"].values()) == pytest.approx(1)
    # a metric objective is maximised: its optimum is loss_x's (metric = 10 - loss_x)
    gp = ["--db", db_multi, "--study", "multi", "--model", "mfms-gp"]
    r = runner.invoke(app, ["optimum", *gp, "--model-params", "1e8", "--steps", "1000", "--json",
                            "--objective", "metric_acc"])
    assert r.exit_code == 0, r.output
    jm = json.loads(r.stdout)
    assert np.abs(np.array(list(jm["weights"].values())) - W_STAR).max() < 0.1
    assert jm["pred_mean"] == pytest.approx(10.0 - law(W_STAR, 1e8, 1000), abs=0.05)
    q, y = query(6, 1e8, 1000)
    q.to_csv(tmp_path / "q.csv", index=False)
    for obj, truth in (("mean_loss", y + 0.25 * q["w_d0"].to_numpy()), ("metric_acc", 10.0 - y)):
        out = tmp_path / f"p_{obj}.csv"
        r = runner.invoke(app, ["predict", *gp, "--query", str(tmp_path / "q.csv"), "--out", str(out),
                                "--objective", obj])
        assert r.exit_code == 0, r.output
        p = pd.read_csv(out)
        assert len(p) == 6 and np.isfinite(p["pred_std"]).all()
        pm = p["pred_mean"].to_numpy()
        assert (np.abs(pm - truth) < 0.03 * truth).all(), obj  # 15 runs; two queries are near vertices
        if obj == "mean_loss":  # the mean of loss_x and loss_y, not loss_x alone
            assert np.abs(pm - truth).mean() < 0.5 * np.abs(pm - y).mean()
