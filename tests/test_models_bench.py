"""`mixplan bench predict` pieces: the RegMix reader, clean skips, and (slow) the RegMix bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.bench.predict import mfms_bench, read_regmix_pair, regmix_bench

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


def _tiny_regmix(folder: Path, n_train=60, n_test=20, seed=0):
    """RegMix-format files (3 domains) whose losses follow a known mixing law."""
    rng = np.random.default_rng(seed)
    doms = ["a", "b", "c"]

    def write(name, n):
        W = rng.dirichlet(np.ones(3), n)
        mix = pd.DataFrame({"index": np.arange(n), **{f"train_the_pile_{d}": W[:, i] for i, d in enumerate(doms)}})
        loss = pd.DataFrame({"index": np.arange(n), **{f"metric/the_pile_{d}_val_loss": 2 + np.exp(-3 * W[:, i])
                                                       + rng.normal(0, 0.01, n) for i, d in enumerate(doms)}})
        mix.to_csv(folder / f"{name[0]}_mixture_{name[1]}.csv", index=False)
        loss.to_csv(folder / f"{name[0]}_pile_loss_{name[1]}.csv", index=False)

    write(("train", "1m"), n_train)
    for key in ("1m", "60m", "1B"):
        write(("test", key), n_test)


def _render(tables) -> str:
    from rich.console import Console

    con = Console(record=True, width=250)
    for t in tables:
        con.print(t)
    return con.export_text()


def test_regmix_bench_gives_every_model_a_row(tmp_path):
    from engine.bench.predict import REGMIX_MODELS, format_tables

    _tiny_regmix(tmp_path)
    res = regmix_bench(tmp_path, targets=["a", "b"], log=lambda *_: None)
    assert {r["model"] for r in res["rows"]} == set(REGMIX_MODELS) >= {"autoscale", "natural", "linear"}
    assert len(res["rows"]) == 2 * len(REGMIX_MODELS) and len(res["mean"]) == len(REGMIX_MODELS)
    for r in res["rows"]:
        assert np.isfinite(r["fit_s"]) and np.isfinite(r["predict_s"]), r
        assert r["model"] in ("uniform", "natural") or np.isfinite(r["spearman_1m"]), r
    assert all(np.isfinite(m["predict_s"]) for m in res["mean"])
    text = _render(format_tables({"regmix": res}))
    assert "predict s" in text and "fit s" in text
    for model in REGMIX_MODELS:
        assert model in text
    assert text.count("mean") >= len(REGMIX_MODELS)


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / ".." / "shared" / "benchmarks" / "mfms-sim"
                         / "weights.json").exists(), reason="../shared/benchmarks/mfms-sim absent")
def test_mfms_bench_gives_every_model_a_row():
    from engine.bench.predict import MFMS_MODELS, format_tables

    sim = Path(__file__).resolve().parents[1] / ".." / "shared" / "benchmarks" / "mfms-sim" / "weights.json"
    res = mfms_bench(sim, splits=("E1",), runs_per_size=12, n_test=20, checkpoint_every=1950, log=lambda *_: None)
    by = {r["model"]: r for r in res["summary"]}
    assert set(by) == set(MFMS_MODELS) >= {"autoscale", "natural"}
    for model, r in by.items():
        assert np.isfinite(r["predict_s"]) and np.isfinite(r["fit_s"]), (model, r)
        if model in ("dmsl", "dmsl-joint"):  # 12 runs of one size: fewer than the law's parameters
            assert not np.isfinite(r["regret_1B"]) and "needs at least 13 runs" in r["note"], (model, r)
        else:
            assert np.isfinite(r["regret_1B"]), (model, r)
    assert np.isfinite(by["autoscale"]["rmse"])  # it got per-domain token counts (tokens_per_step)
    text = _render(format_tables({"mfms": res}))
    assert "predict s" in text and all(m in text for m in MFMS_MODELS)


def test_extrapolation_bench_skips_cleanly_when_absent(monkeypatch):
    import engine.bench.extrapolation as ex

    monkeypatch.setattr(ex, "find_benchmarks", lambda path=None: None)
    monkeypatch.setattr(ex, "mfms_table", lambda *a, **k: None)
    assert ex.regmix_extrapolation(log=lambda *_: None) is None
    assert ex.mfms_extrapolation(log=lambda *_: None) is None


@pytest.mark.slow
@pytest.mark.skipif(not (REGMIX / "train_mixture_1m.csv").exists(), reason="../shared/benchmarks/regmix absent")
def test_regmix_leave_larger_out_fits_small_and_scores_the_1b_runs():
    """RegMix's 512 + 64 runs at 1M and 64 at 60M fitted, the 64 ~1B runs predicted: every row
    is a held-out 1B group, and DMSL ranks them (the paper's task) better than chance by far."""
    from engine.bench.extrapolation import regmix_extrapolation, regmix_table

    t = regmix_table(REGMIX)
    assert t.groupby("model_params")["run_id"].nunique().to_dict() == {1_000_000: 576, 60_000_000: 64,
                                                                        1_000_000_000: 64}
    res = regmix_extrapolation(REGMIX.parent, models=("dmsl", "regmix"), targets=["pile_cc"],
                               log=lambda *_: None)
    rows = {r["model"]: r for r in res["rows"]}
    assert set(rows) == {"dmsl", "regmix"} and all(r["model_params"] == 1_000_000_000 for r in rows.values())
    assert rows["dmsl"]["n"] == 64 and rows["dmsl"]["spearman"] > 0.9


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / ".." / "shared" / "benchmarks" / "mfms-sim"
                         / "weights.json").exists(), reason="../shared/benchmarks/mfms-sim absent")
def test_simulator_leave_larger_out_scores_models_against_the_noise_ceiling():
    """One split of the simulator: every held-out size gets a row per model and one for the
    noise-free simulator, which ranks the noisy runs nearly perfectly (the ceiling) and whose
    figures are not those of any model."""
    from engine.bench.extrapolation import CEILING, format_extrapolation_tables, mfms_extrapolation

    res = mfms_extrapolation(models=("dmsl",), objectives=("mean_loss",), splits=("E5",), log=lambda *_: None)
    rows = pd.DataFrame(res["rows"])
    assert set(rows["model"]) == {"dmsl", CEILING}
    assert set(rows["model_params"]) == {700_000_000, 1_000_000_000}
    ceiling = rows[rows["model"] == CEILING]
    dmsl = rows[rows["model"] == "dmsl"]
    assert (ceiling["spearman"] > 0.95).all() and (ceiling["mre"] < 0.01).all()
    assert ceiling["coverage_1std"].isna().all() and dmsl["coverage_1std"].notna().all()
    assert (ceiling["spearman"].to_numpy() >= dmsl["spearman"].to_numpy()).all()
    assert list(ceiling["n"]) == list(dmsl["n"]) == [20, 20]
    text = _render(format_extrapolation_tables({"mfms": res}))
    assert CEILING in text and "nan" not in text


@pytest.mark.slow
@pytest.mark.skipif(not (REGMIX / "train_mixture_1m.csv").exists(), reason="../shared/benchmarks/regmix absent")
def test_extrapolation_backtests_in_parallel_give_the_serial_rows_in_order(tmp_path, monkeypatch):
    """``--jobs 2`` runs the per-domain backtests in two processes: the same rows, in the same
    order, as one process, and a log line per domain; also where ``__main__`` is a script that
    must not run again (a Streamlit page run in-process by the app's tests stays ``__main__``)."""
    import sys
    import types

    from engine.bench.extrapolation import regmix_extrapolation

    page = tmp_path / "page.py"
    page.write_text("raise SystemExit('a page that must not run in a worker')\n")
    main = types.ModuleType("__main__")
    main.__file__, main.__spec__ = str(page), None
    monkeypatch.setitem(sys.modules, "__main__", main)
    lines: list[str] = []
    kw = dict(models=("dmsl",), targets=["github", "pile_cc"])
    serial = regmix_extrapolation(REGMIX.parent, jobs=1, log=lambda *_: None, **kw)
    parallel = regmix_extrapolation(REGMIX.parent, jobs=2, log=lines.append, **kw)
    assert [r["target"] for r in parallel["rows"]] == ["github", "pile_cc"]
    for a, b in zip(serial["rows"], parallel["rows"]):
        assert {k: v for k, v in a.items() if k != "fit_s"} == {k: v for k, v in b.items() if k != "fit_s"}
    assert sorted(line.split()[1] for line in lines) == ["github", "pile_cc"]


def test_backtest_speed_bench_times_each_model_against_one_fit(monkeypatch):
    """`mixplan bench backtest`: per model the fits a calibrated backtest made (one per cut and
    one below the first: the calibration reuses the cuts' own fits), its seconds and the ratio
    to one fit on every run; a typo in --models is refused before any fitting."""
    import json

    from typer.testing import CliRunner

    import engine.bench.extrapolation as ex
    from engine.cli import app as cli
    from engine.errors import NotFoundError

    monkeypatch.setattr(ex, "mfms_table", lambda *a, **k: None)  # the product's own study only
    r = CliRunner().invoke(cli, ["bench", "backtest", "--quick", "--models", "dmsl,regmix", "--json"])
    assert r.exit_code == 0, r.output
    (tab,) = json.loads(r.output)["tables"]
    assert tab["table"] == "synthetic" and tab["runs"] == 100 and tab["checkpoints"] == 2000
    assert [row["model"] for row in tab["rows"]] == ["dmsl", "regmix"]
    for row in tab["rows"]:
        assert row["fits"] == len(tab["cuts"]) + 1
        assert row["backtest_s"] > 0 and row["one_fit_s"] > 0
        assert row["ratio"] == pytest.approx(row["backtest_s"] / row["one_fit_s"])
    assert tab["total_s"] >= sum(row["backtest_s"] for row in tab["rows"]) and tab["recommended"] in ("dmsl", "regmix")
    bad = CliRunner().invoke(cli, ["bench", "backtest", "--models", "dmsl,nope"])  # `mixplan` exits 2 on it
    assert isinstance(bad.exception, NotFoundError) and "unknown model(s) nope" in str(bad.exception)
