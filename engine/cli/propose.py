"""`mixplan propose`, `mixplan autopilot`, `mixplan trajectory`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from engine.cli.common import (DEFAULT_DB, DbOption, JsonFlag, PlainTable, StudyOption, console, esc, open_store,
                               print_json)

STRATEGIES = "mfms-bo, autoscale, random, hyperband, mf-bo, bo, mf-kg"
StrategyOption = Annotated[str, typer.Option("--strategy", help=f"Strategy: {STRATEGIES}.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed of the strategy.")]


def _trial_json(t) -> dict:
    return {"trial_id": t.trial_id, "run_id": t.run_id, "state": t.state.value, "weights": t.weights,
            "model_params": t.model_params, "steps": t.steps, "tokens": t.tokens, "strategy": t.strategy,
            "acq_value": t.acq_value, "pred_mean": t.pred_mean, "pred_std": t.pred_std, "cost": t.cost,
            "reason": t.reason}


def propose_cmd(
    study: StudyOption,
    strategy: StrategyOption = "mfms-bo",
    n: Annotated[int, typer.Option("-n", "--n", help="How many proposals (a batch for parallel workers).")] = 1,
    seed: SeedOption = 0,
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """Propose the next trials with a strategy; they are stored as `proposed` for approval."""
    from engine.strategies import propose
    from engine.strategies.surrogate import torch_threads

    store = open_store(db)
    with torch_threads(1):
        trials = propose(store, study, strategy, n, seed, actor="cli")
    if as_json:
        print_json([_trial_json(t) for t in trials])
        return
    if not trials:
        console.print(f"[yellow]{esc(strategy)} has nothing more to propose for study '{esc(study)}'.[/]")
        return
    table = PlainTable("id", "mixture", "params", "steps", "pred", "acq", "cost", "why")
    for t in trials:
        mix = " ".join(f"{d}={w:.2f}" for d, w in t.weights.items())
        pred = "" if t.pred_mean is None else f"{t.pred_mean:.4g}±{(t.pred_std or 0):.2g}"
        table.add_row(str(t.trial_id), mix, f"{t.model_params:,}", str(t.steps or ""), pred,
                      "" if t.acq_value is None else f"{t.acq_value:.3g}", "" if t.cost is None else f"{t.cost:.3g}",
                      t.reason or "")
    console.print(table)
    console.print(f"approve with `mixplan approve --study {esc(study)} --all` (or name the ids).")


def autopilot_cmd(
    study: StudyOption,
    strategy: StrategyOption = "mfms-bo",
    budget: Annotated[float, typer.Option("--budget", help="Cost to spend (the study's cost unit).")] = ...,
    max_trials: Annotated[Optional[int], typer.Option("--max-trials", help="Stop after this many trials.")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Proposals per round (q).")] = 1,
    seed: SeedOption = 0,
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """Propose, approve and run until the budget is spent (simulators run in this process)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    import math

    from engine.autopilot import autopilot
    from engine.errors import ValidationError
    from engine.strategies.surrogate import torch_threads

    if not math.isfinite(budget) or budget <= 0:
        raise ValidationError(f"--budget must be a finite number > 0, got {budget:g}.",
                              fix="give the cost to spend in the study's cost unit, e.g. --budget 20.")
    if max_trials is not None and max_trials < 1:
        raise ValidationError(f"--max-trials must be >= 1, got {max_trials}.")
    if batch < 1:
        raise ValidationError(f"--batch must be >= 1, got {batch}.")
    store = open_store(db)
    store.get_config(study)  # a missing study is an error before any progress bar is drawn
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[spent]}"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                  disable=as_json) as bar:
        task = bar.add_task(f"{esc(strategy)} on {esc(study)}", total=budget, spent=f"0/{budget:g}", info="")

        def on(ev) -> None:
            inc = ev.incumbent
            info = f"{ev.n_done} done, {ev.n_failed} failed"
            if inc is not None and inc.pred_mean is not None:
                info += f", incumbent {inc.pred_mean:.4g}"
            bar.update(task, completed=min(ev.spent, budget), spent=f"{ev.spent:.4g}/{budget:g}", info=info)

        with torch_threads(1):
            res = autopilot(store, study, strategy, budget, max_trials=max_trials, batch=batch, seed=seed, progress=on)
    if as_json:
        print_json(res.to_json())
        return
    console.print(f"stopped: {esc(res.stopped)}. spent {res.spent:.4g} of {budget:g}; "
                  f"{len(res.done)} done, {len(res.failed)} failed.")
    if res.incumbent is not None:
        mix = " ".join(f"{d}={w:.3f}" for d, w in res.incumbent.weights.items())
        sd = res.incumbent.pred_std
        pm = f"{res.incumbent.pred_mean:.4g}" + (f" +- {sd:.2g}" if sd is not None and sd > 0 else "")
        console.print(f"incumbent at the target: {esc(mix)} (predicted {pm}; {esc(res.incumbent.source)})")


def trajectory_cmd(
    study: StudyOption,
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """The incumbent at the target fidelity along cumulative cost, one entry per finished trial."""
    from engine.trajectory import trajectory

    traj = trajectory(open_store(db), study)
    if as_json:
        print_json(traj)
        return
    table = PlainTable("trial", "params", "steps", "cost", "cumulative", "incumbent", "pred", "true")
    for e in traj:
        mix = " ".join(f"{w:.2f}" for w in (e["incumbent_weights"] or {}).values())
        table.add_row(str(e["trial_id"]), f"{e['model_params']:,}", str(e["steps"] or ""),
                      "" if e["cost"] is None else f"{e['cost']:.3g}", f"{e['cumulative_cost']:.4g}", mix,
                      "" if e["incumbent_pred"] is None else f"{e['incumbent_pred']:.4g}"
                      + (f" +- {e['incumbent_std']:.2g}" if e.get("incumbent_std") else ""),
                      "" if e.get("incumbent_true") is None else f"{e['incumbent_true']:.4g}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("propose")(propose_cmd)
    app.command("autopilot")(autopilot_cmd)
    app.command("trajectory")(trajectory_cmd)
