"""`mixplan predict` / `mixplan optimum` on a stored study."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_models_synthetic import W_STAR, query, runs_table  # noqa: E402

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
    assert opt.weights["d2"] <= 0.1 + 1e-6 and sum(opt.weights.values()) == pytest.approx(1)
    js = json.loads(json.dumps(opt.to_json()))
    assert set(js) == {"weights", "pred_mean", "pred_std"} and set(js["weights"]) == {"d0", "d1", "d2"}
    with pytest.raises(ValidationError, match="steps or --tokens"):
        optimum_cmd(db, "syn", "uniform", 10**8)
    with pytest.raises(ValidationError, match="unknown objective"):
        optimum_cmd(db, "syn", "uniform", 10**8, steps=10, objective="loss_nope")
