"""Plot functions of mixplan: pure functions from run tables / model outputs to Plotly figures.

Optuna-style: each takes plain DataFrames (or a fitted loss model) and returns a
``plotly.graph_objects.Figure``, so charts are testable without a browser and reusable in a
notebook. The app (``app/``) only lays them out.
"""

from engine.plots._common import final_checkpoints, human, objectives_of, with_objective
from engine.plots.backtest import backtest_table, plot_backtest
from engine.plots.landscape import (
    line_grid,
    observed_at,
    plot_line,
    plot_slice,
    plot_ternary,
    predict_grid,
    scale_label,
    simplex_grid,
    slice_grid,
)
from engine.plots.runs import plot_loss_curves, plot_parallel_coordinates
from engine.plots.scaling import ScalePoint, budget_points, plot_scaling, scaling_table, size_points
from engine.plots.trajectory import (
    plot_regret_curves,
    plot_regret_trajectory,
    plot_trajectory,
    speedup_value,
    speedups,
    trajectory_frame,
)
from engine.plots.validation import plot_validation, plot_validation_curves

__all__ = [
    "backtest_table", "plot_backtest", "ScalePoint", "budget_points", "final_checkpoints", "human", "line_grid", "objectives_of",
    "observed_at", "plot_line", "plot_loss_curves", "plot_parallel_coordinates", "plot_regret_curves", "plot_scaling",
    "plot_regret_trajectory", "plot_slice", "plot_ternary", "plot_trajectory", "plot_validation",
    "plot_validation_curves", "predict_grid", "scale_label", "scaling_table",
    "simplex_grid", "size_points", "slice_grid", "speedup_value", "speedups", "trajectory_frame", "with_objective",
]
