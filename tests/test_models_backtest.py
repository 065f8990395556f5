"""The backtest (fit small, predict larger) and the calibration of std beyond the data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from engine.errors import ValidationError
from engine.models.backtest import backtest, final_rows, score, size_cuts
from engine.models.calibration import Calibration, distance, fit_calibration
from tests.test_models_dmsl import law_table


def test_score_counts_coverage_regret_and_errors_exactly():
    obs = np.array([1.0, 2.0, 3.0, 4.0])
    mean = np.array([1.05, 2.5, 3.0, 5.0])
    std = np.array([0.1, 0.1, 0.1, 0.5])
    s = score(obs, mean, std)
    # |err| = .05, .5, 0, 1: within 1 std {0, 2}; within 2 std {0, 2, 3}
    assert s["coverage_1std"] == 0.5 and s["coverage_2std"] == 0.75
    assert s["mre"] == pytest.approx(np.mean([0.05, 0.25, 0.0, 0.25]))
    assert s["best_regret"] == 0.0 and s["spearman"] == pytest.approx(1.0)
    # the predicted best (smallest mean) is the run observed at 3.0: regret 2.0
    s = score(obs, np.array([2.0, 2.5, 0.5, 5.0]), std)
    assert s["best_regret"] == pytest.approx(2.0) and s["rel_regret"] == pytest.approx(2.0)
    # maximise: the predicted best is the largest mean
    s = score(obs, np.array([2.0, 2.5, 0.5, 5.0]), std, maximize=True)
    assert s["best_regret"] == 0.0


def test_cuts_leave_two_sizes_to_fit_and_refuse_bad_cuts():
    runs = law_table(sizes=(1e6, 3e6, 10e6, 30e6), n_mix=3)
    assert size_cuts(runs) == [3_000_000, 10_000_000]
    assert size_cuts(runs.query("model_params <= 3e6")) == [1_000_000]
    assert size_cuts(runs, 1e6) == [1_000_000]
    with pytest.raises(ValidationError, match="leaves no runs on one side"):
        size_cuts(runs, 30e6)
    with pytest.raises(ValidationError, match="two model sizes at least"):
        size_cuts(runs.query("model_params == 1e6"))
    with pytest.raises(ValidationError, match="'auto' or a model size"):
        size_cuts(runs, "big")


def test_held_out_runs_never_enter_the_fit():
    """Poisoning every run above the cut changes the observed values, never the predictions."""
    runs = law_table(sizes=(1e6, 3e6, 10e6, 30e6), n_mix=12)
    clean = backtest(runs, "loss_x", models=["dmsl"], cut=3e6, calibrate=False)
    poisoned = runs.copy()
    big = poisoned["model_params"] > 3e6
    poisoned.loc[big, "loss_x"] = poisoned.loc[big, "loss_x"] * 10 + 100
    bad = backtest(poisoned, "loss_x", models=["dmsl"], cut=3e6, calibrate=False)
    np.testing.assert_allclose(bad.predictions["pred_mean"], clean.predictions["pred_mean"])
    assert (bad.predictions["observed"] > 100).all()
    # and the held-out rows are each run's final checkpoint
    fin = final_rows(runs[big])
    assert len(clean.predictions) == fin["run_id"].nunique() == len(fin)
    assert set(clean.rows["model_params"]) == {10_000_000, 30_000_000}


def test_backtest_scores_a_law_that_extrapolates_and_recommends_it():
    runs = law_table(sizes=(1e6, 3e6, 10e6, 30e6), n_mix=12)
    res = backtest(runs, "loss_x", models=["dmsl", "regmix"], cut="auto")
    assert res.cuts == [3_000_000, 10_000_000]
    d = res.rows[res.rows["model"] == "dmsl"]
    # three sizes pin the law: 3x beyond them the level is within 0.2%; two sizes cannot
    # separate E, A and alpha, so the extrapolation from them is worse (and the backtest says so)
    assert d[d["cut"] == 10_000_000]["mre"].max() < 0.002
    assert d[d["cut"] == 3_000_000]["mre"].max() < 0.08 and (d["spearman"] > 0.9).all()
    assert res.recommended == "dmsl" and "held-out level" in res.reason
    # the coverage columns are those of the calibrated std; the raw ones are kept beside them
    assert d["coverage_1std"].between(0, 1).all() and d["coverage_1std_raw"].notna().all()
    # every model keeps its predictions (the calibration's inner backtests once replaced them
    # with the last model's, and the Backtest page plotted "no predictions" for the others)
    p = res.predictions
    assert set(p["model"]) == {"dmsl", "regmix"}
    for model in ("dmsl", "regmix"):
        mine = p[p["model"] == model]
        assert len(mine) == int(res.rows[res.rows["model"] == model]["n"].sum()) and mine["pred_std"].gt(0).all()
    recs = res.to_records()
    assert {"model", "cut", "model_params", "n", "spearman", "mre", "best_regret", "coverage_1std",
            "coverage_2std", "recommended"} <= set(recs[0])


def test_calibration_reuses_the_fits_of_the_cuts_below():
    """A cut's calibration backtests the cuts below it; those fits are the backtest's own, so
    each model is fitted once per cut (plus once below the first), and the calibrated std is
    the one separate inner backtests give."""
    from engine.models import get_model
    from engine.models.backtest import INNER_CUTS
    from engine.models.calibration import calibration_from_backtest

    runs = law_table(sizes=(1e6, 2e6, 3e6, 5e6, 10e6, 30e6), n_mix=8)
    fits = []

    def make(name):
        m = get_model(name)
        fit = m.fit
        m.fit = lambda df, *a, **k: (fits.append(df["model_params"].max()), fit(df, *a, **k))[1]
        return m

    res = backtest(runs, "loss_x", models=["dmsl"], make_model=make)
    assert res.cuts == [2_000_000, 3_000_000, 5_000_000, 10_000_000]
    # 4 cuts + the first cut's inner cut (1M); separate inner backtests fitted 4 + 1 + 1 + 2 + 2
    assert sorted(fits) == [1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000]
    p = res.predictions
    for c in res.cuts:
        fit_runs = runs[runs["model_params"] <= c].reset_index(drop=True)
        inner = [backtest(fit_runs, "loss_x", models=["dmsl"], cut=ic, calibrate=False).predictions
                 for ic in size_cuts(fit_runs)[-INNER_CUTS:]]
        cal = calibration_from_backtest(pd.concat(inner, ignore_index=True), "dmsl")
        mine = p[p["cut"] == c]
        want = cal.apply(mine["pred_mean"].to_numpy(), mine["pred_std_raw"].to_numpy(), mine["distance"].to_numpy())
        np.testing.assert_allclose(mine["pred_std"], want, rtol=1e-9)


def _held_out(obs, preds: dict, cut=1_000_000, size=60_000_000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A backtest's predictions and summary for one held-out group (``preds``: model -> means)."""
    from engine.models.backtest import summarise

    frames, rows = [], []
    for name, mean in preds.items():
        frames.append(pd.DataFrame({"model": name, "cut": cut, "run_id": [f"r{i}" for i in range(len(obs))],
                                    "model_params": size, "observed": obs, "pred_mean": mean}))
        rows.append({"model": name, "cut": cut, "model_params": size,
                     **score(obs, mean, np.full(len(obs), 0.01)), "coverage_1std_raw": None,
                     "coverage_2std_raw": None, "error": None})
    return pd.concat(frames, ignore_index=True), summarise(pd.DataFrame(rows))


def test_a_lead_within_the_noise_keeps_the_model_listed_first():
    """RegMix's two-size table: every model fitted on one size misses the larger size's level by
    ~23% in the same way; a hair's lead (repeatable, but tiny beside the error) must not override
    the law listed first, while a clear lead does."""
    from engine.models.backtest import lead_shares, recommend_model

    rng = np.random.default_rng(0)
    obs = 3.0 + rng.normal(0, 0.05, 40)
    law = obs * 1.23 + rng.normal(0, 0.004, 40)
    hair = law - 0.005  # every run 0.2% closer: better in every resample, by ~0.6% of the cost
    pred, summary = _held_out(obs, {"law": law, "trees": hair})
    assert summary.set_index("model").loc["trees", "mre"] < summary.set_index("model").loc["law", "mre"]
    assert recommend_model(summary)[0] == "trees"  # the point estimate alone picks the hair's lead
    model, why = recommend_model(summary, pred, preference=["law", "trees"])
    assert model == "law" and "listed first" in why and "trees scored better" in why
    assert lead_shares(pred, ["law", "trees"], "trees", margin=0.0)["law"] == 1.0  # repeatable ...
    assert lead_shares(pred, ["law", "trees"], "trees")["law"] == 0.0  # ... but not by 10%
    # a clear lead (half the level error, same ranking) overrides the order
    close = obs * 1.10 + rng.normal(0, 0.004, 40)
    pred, summary = _held_out(obs, {"law": law, "gp": close})
    assert recommend_model(summary, pred, preference=["law", "gp"])[0] == "gp"
    # so does a better ranking at the same level, where it is repeatable
    ranked = obs * 1.23 + rng.normal(0, 0.0005, 40)
    noisy = obs * 1.23 + rng.normal(0, 0.06, 40)
    pred, summary = _held_out(obs, {"law": noisy, "gp": ranked})
    assert recommend_model(summary, pred, preference=["law", "gp"])[0] == "gp"
    # ... and with four runs of evidence it does not
    pred, summary = _held_out(obs[:4], {"law": noisy[:4] + np.array([0, 0.05, -0.05, 0]), "gp": ranked[:4]})
    assert recommend_model(summary, pred, preference=["law", "gp"])[0] == "law"


def test_a_failing_model_gets_rows_with_its_error():
    runs = law_table(sizes=(1e6, 3e6, 10e6), n_mix=4)
    res = backtest(runs, "loss_x", models=["dmsl", "mfms-gp"], cut=3e6, calibrate=False)
    bad = res.rows[res.rows["model"] == "dmsl"]
    assert bad["error"].str.contains("needs at least").all() and bad["mre"].isna().all()
    assert res.recommended == "mfms-gp"


def test_calibration_widens_with_distance_to_the_backtests_coverage():
    rng = np.random.default_rng(0)
    d = rng.uniform(0, 1.5, 400)
    mean = np.full(400, 3.0)
    err = rng.normal(0, 1, 400) * 3.0 * 0.02 * d  # 2% relative error per e-fold
    cal = fit_calibration(d, mean + err, mean, np.full(400, 1e-3))
    assert cal.fitted and cal.tau1 == pytest.approx(0.02, rel=0.3) and cal.d_max > 1.4
    s = cal.apply(mean, np.full(400, 1e-3), d)
    assert 0.6 <= np.mean(np.abs(err) <= s) <= 0.76 and 0.9 <= np.mean(np.abs(err) <= 2 * s) <= 0.99
    far = cal.apply(np.array([3.0, 3.0]), np.array([1e-3, 1e-3]), np.array([0.5, 2.0]))
    assert far[1] > 3 * far[0]
    # never narrower than the model's own std
    assert (cal.apply(mean, np.full(400, 0.5), d) >= 0.5).all()
    assert Calibration().apply(mean[:2], np.array([0.1, 0.2]), d[:2]).tolist() == [0.1, 0.2]


def test_distance_is_log_compute_beyond_the_data():
    assert distance(np.array([1e6, 4e6]), None, 2e6, None).tolist() == pytest.approx([0.0, np.log(2)])
    assert distance(np.array([4e6]), np.array([300.0]), 2e6, 100.0)[0] == pytest.approx(np.log(2) + np.log(3))


def test_backtest_cli_json(tmp_path):
    from engine.config import config_from_dict
    from engine.store import Store

    runs = law_table(sizes=(1e6, 3e6, 10e6), n_mix=10)
    db = tmp_path / "runs.duckdb"
    store = Store(db)
    store.create_study(config_from_dict({"name": "law", "domains": ["web", "code", "books"], "objective": "loss_x",
                                         "target": {"model_params": 30_000_000, "steps": 8000}}))
    store.import_runs("law", runs)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "backtest", "--study", "law", "--db", str(db),
                        "--models", "dmsl,regmix", "--json", "--csv", str(tmp_path / "bt.csv")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {row["model"] for row in rows} == {"dmsl", "regmix"} and rows[0]["recommended"] == "dmsl"
    assert {row["model_params"] for row in rows} == {10_000_000}
    assert len(pd.read_csv(tmp_path / "bt.csv")) == len(rows)
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "backtest", "--study", "law", "--db", str(db),
                          "--models", "dmsl,nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown model(s) nope" in bad.stderr


def test_auto_chooses_and_calibrates_on_the_fitted_sizes_only():
    """``auto`` inside a backtest chooses its model and calibrates its std on the fitted sizes:
    poisoning the held-out runs changes neither its choice nor its predictions."""
    from engine.models.auto import AutoModel

    runs = law_table(sizes=(1e6, 3e6, 10e6, 30e6), n_mix=10)
    made = []

    def make(name):
        m = AutoModel(candidates=("dmsl", "regmix"))
        made.append(m)
        return m

    clean = backtest(runs, "loss_x", models=["auto"], cut=10e6, make_model=make)
    poisoned = runs.copy()
    big = poisoned["model_params"] > 10e6
    poisoned.loc[big, "loss_x"] += 50
    bad = backtest(poisoned, "loss_x", models=["auto"], cut=10e6, make_model=make)
    assert made[0].chosen_ == made[1].chosen_ == "dmsl"
    np.testing.assert_allclose(bad.predictions["pred_mean"], clean.predictions["pred_mean"])
    np.testing.assert_allclose(bad.predictions["pred_std"], clean.predictions["pred_std"])
    # its reported std is the calibrated one, at least its model's own
    p = clean.predictions
    assert (p["pred_std"] >= p["pred_std_raw"] - 1e-12).all() and (p["pred_std"] > p["pred_std_raw"]).any()
    assert made[0].calibration_.fitted


def _import_regmix(folder, db):
    for mix, loss in (("train_mixture_1m.csv", "train_pile_loss_1m.csv"), ("test_mixture_60m.csv", "test_pile_loss_60m.csv"),
                      ("test_mixture_1B.csv", "test_pile_loss_1B.csv")):
        r = subprocess.run([sys.executable, "-m", "engine.cli", "import", str(folder / mix), str(folder / loss),
                            "--study", "pile", "--db", str(db)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr


def test_backtest_cli_on_an_imported_regmix_study(tmp_path, data_dir):
    """RegMix's layout (mixture + loss pairs, tokens only, three sizes) imported through the CLI:
    the backtest fits 1M + 60M and scores the ~1B runs."""
    db = tmp_path / "pile.duckdb"
    _import_regmix(data_dir / "regmix", db)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "backtest", "--study", "pile", "--db", str(db),
                        "--models", "mixing-law,regmix", "--objective", "loss_pile_cc", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {row["model_params"] for row in rows} == {1_000_000_000} and {row["cut"] for row in rows} == {60_000_000}
    assert all(row["n"] == 3 for row in rows)


@pytest.mark.slow
def test_backtest_cli_on_the_real_regmix_tables(tmp_path, regmix_dir):
    db = tmp_path / "pile.duckdb"
    _import_regmix(regmix_dir, db)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "backtest", "--study", "pile", "--db", str(db),
                        "--models", "dmsl,regmix", "--objective", "loss_pile_cc", "--cut", "60000000", "--json"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    rows = {row["model"]: row for row in json.loads(r.stdout)}
    assert rows["dmsl"]["n"] == 64 and rows["dmsl"]["spearman"] > 0.9 and rows["dmsl"]["recommended"]
