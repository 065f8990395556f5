"""The validation and regret figures (pure functions: Verdict / trajectory frame -> plotly Figure)."""

from __future__ import annotations

import pandas as pd
import pytest

from engine.plots import plot_regret_trajectory, plot_validation, plot_validation_curves
from engine.validation import ArmResult, Verdict


def _arm(labels, pred, std, observed, speedup=None):
    curve = pd.concat([pd.DataFrame({"steps": [100, 200, 300], "value": [v + 0.4, v + 0.1, v], "seed": s})
                       for s, v in enumerate(observed)], ignore_index=True)
    return ArmResult(labels, "k" + labels[0][:3], {"a": 0.5, "b": 0.5}, "how", True, ["r0", "r1"],
                     list(range(len(observed))), observed, pred, std, speedup, None, curve)


def _verdict() -> Verdict:
    arms = [_arm(["recommended"], 2.40, 0.05, [2.45, 2.47], 1.2), _arm(["uniform"], 2.50, 0.04, [2.50, 2.52], 1.0)]
    return Verdict("s", "mean_loss", "minimize", "mfms-gp", (3_000_000, 300), 1_000_000, arms, "summary", 10)


def test_predicted_vs_observed_has_both_intervals_and_every_seed():
    fig = plot_validation(_verdict())
    pred = next(t for t in fig.data if t.name and t.name.startswith("predicted by mfms-gp"))
    assert list(pred.y) == [2.40, 2.50] and list(pred.error_y.array) == [0.05, 0.04]
    two = next(t for t in fig.data if t.name == "predicted +- 2 std")
    assert list(two.error_y.array) == [0.10, 0.08]
    seeds = next(t for t in fig.data if t.name == "observed (each seed)")
    assert list(seeds.y) == [2.45, 2.47, 2.50, 2.52]
    assert "3x the largest size" in fig.layout.title.text


def test_curves_mark_uniforms_final_loss_and_name_the_speedup():
    fig = plot_validation_curves(_verdict())
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert names == ["recommended (1.20x)", "uniform (1.00x)"]
    assert len(fig.data) == 6  # a thin line per seed, a thick one per mixture
    assert fig.layout.shapes[0].y0 == pytest.approx(2.51)  # uniform's final loss (seed mean)


def test_regret_trajectory_log_axes_and_a_floor_for_zero_regret():
    df = pd.DataFrame({"strategy": ["a", "a", "b"], "cumulative_cost": [1.0, 2.0, 3.0],
                       "incumbent_regret": [0.1, 0.0, 0.05]})
    fig = plot_regret_trajectory(df, target_label="1B")
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert list(fig.data[0].y) == [0.1, 1e-6] and fig.data[1].name == "b"
    empty = plot_regret_trajectory(df.drop(columns="incumbent_regret"))
    assert "no true regret" in empty.layout.annotations[0].text
