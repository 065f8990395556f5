"""`mixplan backtest`: fit the models on a study's small sizes, score them on the larger ones.

    mixplan backtest --study S [--models dmsl,mfms-gp,...] [--cut auto|N] [--json] [--csv FILE]

One row per (model, cut, held-out size): Spearman, mean relative error, the regret of the
predicted best, +-1/+-2 std coverage (of the calibrated std mixplan reports), and the model to
trust with the reason (:mod:`engine.models.backtest`). ``--models`` is also the order of
preference: a later model must beat an earlier one clearly; by default the candidates of the
study's recommendation, so the model named is the one the recommendation uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.numbers import human
from engine.cli.common import (DEFAULT_DB, DbOption, JsonFlag, PlainTable, StudyOption, console, console_err, esc,
                               open_store, print_json, say)


def run_backtest(db: Path, study: str, models: list[str], cut: str, *, calibrate: bool = True,
                 show_progress: bool = True, objective: str | None = None):
    """The backtest of a stored study (its objective unless ``objective``, domains,
    tokens_per_step and direction), with a progress bar on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.models.backtest import backtest, size_cuts

    store = open_store(db)
    cfg = store.get_config(study)
    runs = store.runs_frame(study)
    if runs.empty:
        from engine.errors import ValidationError

        raise ValidationError(f"study '{study}' has no runs to backtest.", fix="import or run some trials first.")
    total = len(size_cuts(runs, cut)) * len(models)
    with Progress(TextColumn("[bold]backtest"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[now]}"),
                  TimeElapsedColumn(), console=console_err, transient=True, disable=not show_progress) as bar:
        task = bar.add_task("backtest", total=total, now="")
        seen = [0]

        def progress(msg: str) -> None:
            if seen[0]:
                bar.advance(task)
            seen[0] += 1
            bar.update(task, now=msg)

        objective = objective or cfg.objective
        res = backtest(runs, objective, models=models, cut=cut, domains=list(cfg.domains),
                       tokens_per_step=cfg.tokens_per_step, direction=cfg.direction_for(objective),
                       calibrate=calibrate, progress=progress)
        bar.advance(task)
    return res


def register(app: typer.Typer) -> None:
    @app.command("backtest")
    def backtest_cmd(
        study: StudyOption,
        models: Annotated[Optional[str], typer.Option(
            "--models", help="Comma-separated models to compare, the one to prefer first (a later one must beat "
                             "it clearly). Default: the candidates of the study's recommendation (`auto`), so "
                             "the model named here is the one the recommendation uses.")] = None,
        cut: Annotated[str, typer.Option("--cut", help="auto (every size boundary that leaves two sizes to fit) "
                                                       "or the largest model size to fit on, e.g. 60000000.")] = "auto",
        objective: Annotated[Optional[str], typer.Option("--objective", help="loss_<domain>, mean_loss or "
                                                         "metric_<name> (default: the study's).")] = None,
        csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write the rows as CSV here.")] = None,
        no_calibration: Annotated[bool, typer.Option("--no-calibration", help="Score each model's own std "
                                                     "(faster: no inner backtest per cut).")] = False,
        db: DbOption = DEFAULT_DB,
        as_json: JsonFlag = False,
    ) -> None:
        """Fit each model on the runs at sizes <= the cut and predict the final checkpoint of every larger
        run: per held-out size, Spearman, mean relative error, regret of the predicted best and +-1/+-2 std
        coverage; names the model to trust and why."""
        from engine.models import model_names
        from engine.models.auto import CANDIDATES

        names = model_names(models) if models else list(CANDIDATES)
        if csv is not None:  # a bad --csv is refused before the backtest runs, not after
            from engine.outfile import check_out_path

            check_out_path(csv, overwrite=True, example="backtest.csv")
        res = run_backtest(db, study, names, cut, calibrate=not no_calibration, show_progress=not as_json,
                           objective=objective)
        if csv is not None:
            from engine.outfile import database_files, write_out_file

            write_out_file(csv, lambda tmp: res.rows.to_csv(tmp, index=False), overwrite=True,
                           protect=database_files(db), example="backtest.csv")
        if as_json:
            print_json(res.to_records())
            return
        table = PlainTable("model", "fit <=", "held out", "n", "Spearman", "MRE", "regret", "±1σ", "±2σ",
                      title=f"backtest of {esc(study)} ({res.objective}, {res.direction})")
        for r in res.rows.itertuples():
            if isinstance(r.error, str):
                table.add_row(r.model, human(r.cut), human(r.model_params), str(r.n), "error", r.error[:60],
                              "", "", "")
                continue
            table.add_row(r.model, human(r.cut), human(r.model_params), str(r.n), _f(r.spearman, "{:.3f}"),
                          _f(r.mre, "{:.2%}"), _f(r.best_regret, "{:.4f}"), _f(r.coverage_1std, "{:.0%}"),
                          _f(r.coverage_2std, "{:.0%}"))
        console.print(table)
        if res.recommended:
            say(f"trust {res.recommended}: {res.reason}")
        else:
            say(res.reason)
        if csv is not None:
            console_err.print(f"wrote {len(res.rows)} rows to {csv}")


def _f(v, fmt: str) -> str:
    try:
        import math

        return "n/a" if v is None or not math.isfinite(float(v)) else fmt.format(float(v))
    except (TypeError, ValueError):
        return "n/a"

