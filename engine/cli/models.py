"""`mixplan predict` and `mixplan optimum`: what the loss models say about a study.

    mixplan predict --study S --model mfms-gp --query Q.csv --out PRED.csv [--objective OBJ]
    mixplan optimum --study S --model mfms-gp --model-params 1e9 (--steps N | --tokens T) [--json]

Both fit the model on the study's checkpoints (rows without the objective are left out) with
the study's objective, domains and tokens_per_step unless ``--objective`` overrides it.
``predict_cmd`` / ``optimum_cmd`` / ``fit_study_model`` are plain functions so the app and the
strategies can call them without the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import (DEFAULT_DB, DbOption, JsonFlag, PlainTable, StudyOption, console, esc, print_json, say,
                               whole_number)
from engine.errors import ValidationError

ModelOption = Annotated[str, typer.Option(
    "--model", "-m", help="auto (the study's recommended model: the best in its backtest; `mixplan backtest`), "
                          "mfms-gp, dmsl, dmsl-joint, mixing-law, autoscale, regmix, uniform or natural.")]
ObjectiveOption = Annotated[str | None, typer.Option("--objective", help="loss_<domain>, mean_loss or "
                                                                          "metric_<name> (default: the study's).")]


def _read_table(path: Path):
    import pandas as pd

    if not Path(path).exists():
        raise ValidationError("file not found.", file=str(path), fix="check the --query path.")
    if str(path).endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    return pd.read_csv(path)


def fit_study_model(runs, config, model: str, objective: str | None = None, **model_kwargs):
    """Fit registry model ``model`` on a run table with a study's settings; returns the model."""
    import numpy as np

    from engine.models import get_model
    from engine.models.base import check_objective
    from engine.runtable.schema import objective_values

    objective = objective or config.objective
    if len(runs) == 0:
        raise ValidationError(f"study '{config.name}' has no checkpoints yet.",
                              fix="import runs (`mixplan import`) or run trials first.")
    check_objective(runs, objective)
    y = objective_values(runs, objective).to_numpy(dtype=float)
    runs = runs.loc[np.isfinite(y)].reset_index(drop=True)
    if len(runs) == 0:
        raise ValidationError(f"no checkpoint of study '{config.name}' has a value for '{objective}'.")
    kwargs = dict(model_kwargs)
    if model == "natural" and "domain_sizes" not in kwargs:
        sizes = (config.runner.options or {}).get("domain_sizes") if config.runner else None
        if sizes:
            kwargs["domain_sizes"] = sizes
    domains = [d for d in config.domains if f"w_{d}" in runs.columns] or None
    return get_model(model, **kwargs).fit(runs, objective, domains=domains,
                                          tokens_per_step=config.tokens_per_step)


def predict_cmd(db: str, study: str, model: str, query: Path, out: Path, objective: str | None = None):
    """Fit ``model`` (``auto``: the study's recommended one) on the study and write ``query``'s
    rows plus ``pred_mean``, ``pred_std`` (calibrated: widened by what the study's backtest
    showed at each row's distance beyond the runs), ``pred_std_uncalibrated`` (the model's
    own) and ``size_ratio`` (the row's size over the largest run's)."""
    from engine.recommendation import study_model
    from engine.store import Store

    from engine.outfile import check_out_path, database_files, write_out_file

    out = Path(out)
    # an existing PRED file is replaced (a prediction is recomputed at will), never the database
    check_out_path(out, overwrite=True, protect=database_files(db), example="pred.csv")
    store = Store(db, create=False)
    fitted, _ = study_model(store, study, model, objective)
    q = _read_table(query)
    mean, std = fitted.predict(q)
    res = q.copy()
    res["pred_mean"], res["pred_std"] = mean, std
    res["pred_std_uncalibrated"] = fitted.predict_raw(q)[1]
    res["size_ratio"] = q["model_params"].to_numpy(float) / fitted.largest_size_
    res.attrs["model"] = fitted.chosen_
    parquet = str(out).endswith((".parquet", ".pq"))
    write_out_file(out, (lambda tmp: res.to_parquet(tmp, index=False)) if parquet
                   else (lambda tmp: res.to_csv(tmp, index=False)), overwrite=True,
                   protect=database_files(db), example="pred.csv")
    return res


def optimum_cmd(db: str, study: str, model: str, model_params: int, *, steps: int | None = None,
                tokens: float | None = None, objective: str | None = None) -> dict:
    """The best mixture at a scale within the study's bounds (and near the mixtures its runs
    explored), in the study's direction: ``{"weights", "pred_mean", "pred_std", "model",
    "extrapolation", ...}`` (:func:`engine.recommendation.study_optimum`; ``auto`` at the
    study's target is the study's one recommended mixture)."""
    from engine.recommendation import study_optimum
    from engine.store import Store

    if steps is None and tokens is None:
        raise ValidationError("give --steps or --tokens.", fix="e.g. --steps 19500.")
    store = Store(db, create=False)
    return study_optimum(store, study, model, int(model_params), steps=steps, tokens=tokens, objective=objective)


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict(
        study: StudyOption,
        query: Annotated[Path, typer.Option("--query", help="CSV/Parquet rows: w_*, model_params, steps or tokens.")],
        out: Annotated[Path, typer.Option("--out", help="Where to write the rows with pred_mean and pred_std.")],
        model: ModelOption = "auto",
        objective: ObjectiveOption = None,
        db: DbOption = DEFAULT_DB,
    ) -> None:
        """Predict the objective (mean, std) at each query row with a model fitted on the study."""
        res = predict_cmd(str(db), study, model, query, out, objective)
        console.print(f"wrote {len(res)} prediction(s) of {esc(res.attrs.get('model', model))} to {esc(out)}")
        far = float(res["size_ratio"].max()) if len(res) else 1.0
        if far > 1.0:
            say(f"the largest query size is {far:.3g}x the largest run: pred_std is calibrated by the "
                "study's backtest (pred_std_uncalibrated is the model's own)")

    @app.command("optimum")
    def optimum(
        study: StudyOption,
        model_params: Annotated[float, typer.Option("--model-params", help="Model size in parameters (1e9 ok).")],
        model: ModelOption = "auto",
        steps: Annotated[int | None, typer.Option("--steps", help="Training steps at the target.")] = None,
        tokens: Annotated[float | None, typer.Option("--tokens", help="Training tokens at the target.")] = None,
        objective: ObjectiveOption = None,
        db: DbOption = DEFAULT_DB,
        as_json: JsonFlag = False,
    ) -> None:
        """The mixture with the best predicted objective at a scale (within the study's bounds)."""
        model_params = whole_number(model_params, "--model-params")
        opt = optimum_cmd(str(db), study, model, model_params, steps=steps, tokens=tokens, objective=objective)
        if as_json:
            print_json({k: v for k, v in opt.items() if k != "extrapolation_detail"})
            return
        what = f"{opt['model']} (recommended)" if opt.get("recommended") else opt["model"]
        table = PlainTable("domain", "weight", title=f"{esc(what)} optimum at {int(model_params):,} params, "
                      + (f"{steps:,} steps" if steps is not None else f"{tokens:,.0f} tokens"))
        for d, w in opt["weights"].items():
            table.add_row(d, f"{w:.4f}")
        console.print(table)
        from engine.store import Store

        shown = objective or Store(db, create=False).get_config(study).objective
        say(f"predicted {shown}: {opt['pred_mean']:.4f} +- {opt['pred_std']:.4f} (1 std, calibrated; "
            f"the model's own: {opt['pred_std_uncalibrated']:.4f})")
        say(opt["extrapolation"])
        if opt.get("reason"):
            say("why this model: " + opt["reason"])
