"""`mixplan propose`, `mixplan autopilot`, `mixplan trajectory`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from engine.cli.common import (
    DEFAULT_DB,
    DbOption,
    JsonFlag,
    PlainTable,
    StudyOption,
    console,
    esc,
    open_store,
    print_json,
    say,
)

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
    wide: Annotated[bool, typer.Option("--wide", help="One table row per proposal, reasons in a column (for wide "
                                                      "terminals).")] = False,
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """Propose the next trials with a strategy; they are stored as `proposed` for approval."""
    from engine.study import propose
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
    from engine.costs import cost_unit

    unit = cost_unit(store.get_config(study))
    if wide:
        _proposal_table(trials, unit)
    else:
        for t in trials:
            _proposal_block(t, unit)
    console.print(f"approve with `mixplan approve --study {study} --all` (or name the ids).", markup=False)
    _say_extrapolation(store, study)


def _say_extrapolation(store, study: str) -> None:
    """How far the study's target lies beyond its runs (and what the backtest measured there, where
    a current recommendation has one): the predictions above are extrapolations by that much."""
    from engine.recommendation import target_extrapolation

    ext = target_extrapolation(store, study)
    if ext is not None and ext.beyond:
        say(ext.describe())


def _proposal_block(t, unit: str) -> None:
    """One proposal in a few lines that fit any terminal: what, the prediction and cost, the
    whole mixture, and the reason wrapped under it (a table column of reasons wraps one word
    per line at 80 columns)."""
    import textwrap

    from engine.cli.trials import size_label
    from engine.costs import format_cost

    width = max(40, console.width) - 1
    head = [f"#{t.trial_id}", t.strategy or "", f"{size_label(t.model_params)}/{t.steps or '-'} steps"]
    if t.pred_mean is not None:
        head.append(f"pred {t.pred_mean:.4g}±{(t.pred_std or 0):.2g}")
    if t.acq_value is not None:
        head.append(f"acq {t.acq_value:.3g}")
    if t.cost is not None:
        head.append(f"cost {format_cost(t.cost, unit)}")
    mix = " ".join(f"{d}={w:.3f}" for d, w in t.weights.items())
    for text, first, rest in (("  ".join(head), "", "    "), (mix, "    mixture: ", "      "),
                              (t.reason or "", "    why: ", "      ")):
        if text:
            console.print(textwrap.fill(text, width=width, initial_indent=first, subsequent_indent=rest,
                                        break_on_hyphens=False), markup=False, highlight=False, soft_wrap=True)


def _proposal_table(trials, unit: str) -> None:

    from engine.costs import number

    table = PlainTable("id", "mixture", "params", "steps", "pred", "acq", f"cost ({unit})", "why")
    for t in trials:
        mix = " ".join(f"{d}={w:.2f}" for d, w in t.weights.items())
        pred = "" if t.pred_mean is None else f"{t.pred_mean:.4g}±{(t.pred_std or 0):.2g}"
        table.add_row(str(t.trial_id), mix, f"{t.model_params:,}", str(t.steps or ""), pred,
                      "" if t.acq_value is None else f"{t.acq_value:.3g}", "" if t.cost is None else number(t.cost),
                      t.reason or "")
    console.print(table)


def autopilot_cmd(
    study: StudyOption,
    strategy: StrategyOption = "mfms-bo",
    budget: Annotated[float, typer.Option(
        "--budget", help="Cost to spend, in the study's cost unit (`mixplan study show` names it: FLOPs, or what "
                         "cost_per_step counts in).")] = ...,
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
    from engine.costs import cost_unit, format_cost, number
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
    unit = cost_unit(store.get_config(study))  # a missing study is an error before any progress bar is drawn
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[spent]}"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                  disable=as_json) as bar:
        task = bar.add_task(f"{esc(strategy)} on {esc(study)}", total=budget, spent=f"0/{format_cost(budget, unit)}", info="")

        def on(ev) -> None:
            inc = ev.incumbent
            info = f"{ev.n_done} done, {ev.n_failed} failed"
            if inc is not None and inc.pred_mean is not None:
                info += f", incumbent {inc.pred_mean:.4g}"
            bar.update(task, completed=min(ev.spent, budget), spent=f"{number(ev.spent)}/{format_cost(budget, unit)}",
                       info=info)

        with torch_threads(1):
            res = autopilot(store, study, strategy, budget, max_trials=max_trials, batch=batch, seed=seed, progress=on)
    if as_json:
        print_json(res.to_json())
        return
    console.print(f"stopped: {res.stopped}. spent {number(res.spent)} of {format_cost(budget, unit)}; "
                  f"{len(res.done)} done, {len(res.failed)} failed.", markup=False)
    if res.cheapest is not None and res.cheapest > budget:
        console.print(f"the cheapest run on offer costs {format_cost(res.cheapest, unit)}, more than the whole budget: "
                      f"give --budget in {unit} (e.g. --budget {number(20 * res.cheapest)} for about 20 such runs).",
                      markup=False)
    if res.incumbent is not None:
        mix = " ".join(f"{d}={w:.3f}" for d, w in res.incumbent.weights.items())
        sd = res.incumbent.pred_std
        pm = f"{res.incumbent.pred_mean:.4g}" + (f" +- {sd:.2g}" if sd is not None and sd > 0 else "")
        console.print(f"{strategy}'s incumbent at the target: {mix} (predicted {pm}; {res.incumbent.source})",
                      markup=False)
    _say_recommendation(store, study)


def _say_recommendation(store, study: str) -> None:
    """The study's one recommended mixture after the loop (what `mixplan optimum` and `export`
    give): the strategy's incumbent is its own search's belief, the recommendation is the
    backtest-chosen model's answer on every run."""
    from engine.errors import MixplanError
    from engine.recommendation import recommend

    try:
        with console.status("backtesting the models for the recommendation"):
            rec = recommend(store, study)
    except MixplanError as exc:
        console.print(f"no recommendation yet: {exc}", markup=False)
        return
    mix = " ".join(f"{d}={w:.3f}" for d, w in rec.weights.items())
    say(f"recommended mixture ({rec.model}; `mixplan export` gives it): {mix} (predicted "
        f"{rec.pred_mean:.4g} +- {rec.pred_std:.2g})")
    say(rec.extrapolation.describe())


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

    from engine.cli.trials import size_label, top_mixture
    from engine.costs import cost_unit, number
    from engine.trajectory import MODEL_AT_TARGET, OBSERVED_AT_TARGET

    cfg = open_store(db).get_config(study)
    has_true = any(e.get("incumbent_true") is not None for e in traj)
    table = PlainTable(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold underline")
    for name in ("trial", "size/steps", "cost", "cumul", "incumbent (top)", "value", "basis") + (
            ("true",) if has_true else ()):
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=19 if name.startswith("inc") else None)
    short = {MODEL_AT_TARGET: "model", OBSERVED_AT_TARGET: "observed"}
    fallback = ""
    for e in traj:
        basis = e.get("incumbent_basis")
        if basis and basis not in short:
            fallback = basis  # observed at a smaller scale: no run reached the target yet
        value = "" if e["incumbent_pred"] is None else f"{e['incumbent_pred']:.4g}" + (
            f"±{e['incumbent_std']:.2g}" if e.get("incumbent_std") else "")
        row = [str(e["trial_id"]), f"{size_label(int(e['model_params']))}/{e['steps'] or '-'}", number(e["cost"]),
               number(e["cumulative_cost"]), top_mixture(e["incumbent_weights"] or {}), value,
               short.get(basis, "observed*" if basis else "")]
        if has_true:
            row.append("" if e.get("incumbent_true") is None else f"{e['incumbent_true']:.4g}")
        table.add_row(*row)
    console.print(table)
    console.print(f"incumbent: the mixture believed best at the target; value: its {cfg.objective}, predicted by a "
                  "model at the target (basis model) or measured (observed); costs in " + cost_unit(cfg) + "."
                  + (" observed*: no run had reached the target yet, so the best run at the largest size and "
                     f"length reached stands in (e.g. {fallback.removesuffix(' (no target run yet)')})."
                     if fallback else ""), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("propose")(propose_cmd)
    app.command("autopilot")(autopilot_cmd)
    app.command("trajectory")(trajectory_cmd)
