"""`mixplan study create|list|show`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.cli.common import DEFAULT_DB, DbOption, JsonFlag, console, open_store, print_json

study_app = typer.Typer(help="Create and inspect studies.", no_args_is_help=True)


@study_app.command("create")
def create(
    config: Annotated[Path, typer.Option("--config", "-c", help="Study config (TOML); see the README's reference.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Create a study from a TOML config (validated: every problem names the key and the fix)."""
    from engine.config import load_config

    cfg = load_config(config)
    open_store(db, create=True).create_study(cfg, actor="cli")
    console.print(f"created study [bold]{cfg.name}[/] with domains {', '.join(cfg.domains)} in {db}")


@study_app.command("list")
def list_(db: DbOption = DEFAULT_DB, as_json: JsonFlag = False) -> None:
    """List the studies: domains, runs, checkpoints, runner (and validation runs, counted apart:
    held-out runs no model fits on)."""
    studies = open_store(db).list_studies()
    if as_json:
        print_json([{"name": s.name, "domains": s.domains, "runs": s.runs, "checkpoints": s.checkpoints,
                     "runner": s.runner, "validation_runs": s.validation_runs} for s in studies])
        return
    table = Table("study", "domains", "runs", "checkpoints", "validation runs", "runner")
    for s in studies:
        table.add_row(s.name, ", ".join(s.domains), str(s.runs), str(s.checkpoints), str(s.validation_runs),
                      s.runner)
    console.print(table if studies else f"no study in {db} yet: `mixplan study create --config FILE`.")


@study_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOption = DEFAULT_DB,
    as_json: JsonFlag = False,
) -> None:
    """Show a study's config, its trials by state and its latest events."""
    store = open_store(db)
    cfg = store.get_config(name)
    trials = store.trials_frame(name)
    counts = trials["state"].value_counts().to_dict() if len(trials) else {}
    spent = float(trials.loc[trials["state"] == "done", "cost"].fillna(0).sum()) if len(trials) else 0.0
    held = store.trials_frame(name, purpose="validation")
    val_counts = held["state"].value_counts().to_dict() if len(held) else {}
    domains = store.study_domains(name)
    if as_json:
        print_json({"config": cfg.to_dict(), "trials": counts, "validation_trials": val_counts, "cost_spent": spent,
                    "domains": domains})
        return
    console.print(f"[bold]{cfg.name}[/]  objective {cfg.objective} ({cfg.direction})")
    console.print(f"mixture domains: {', '.join(cfg.domains)}")
    if domains["eval"]:
        console.print(f"evaluation domains: {', '.join(domains['eval'])}")
    if domains["metric"]:
        console.print(f"metrics: {', '.join(domains['metric'])}")
    for s in cfg.scales:
        console.print(f"scale {s.model_params:,} params: steps {list(s.steps)}"
                      + (f", cost/step {s.cost_per_step:g}" if s.cost_per_step else ""))
    if cfg.target:
        console.print(f"target: {cfg.target.model_params:,} params, "
                      + (f"{cfg.target.steps} steps" if cfg.target.steps else f"{cfg.target.tokens:g} tokens"))
    console.print(f"runner: {cfg.runner.kind}; budget: {cfg.budget if cfg.budget else 'none'}; spent: {spent:g}")
    console.print("trials: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    if val_counts:
        console.print("validation runs (held out, never fitted on; `mixplan demo report`): "
                      + ", ".join(f"{k} {v}" for k, v in sorted(val_counts.items())))
    ev = store.events(name, limit=10)
    if len(ev):
        table = Table("event", "trial", "kind", "actor", "when")
        for r in ev.itertuples():
            table.add_row(str(r.event_id), "" if r.trial_id != r.trial_id or r.trial_id is None else str(int(r.trial_id)),
                          r.kind, r.actor, str(r.created_at)[:19])
        console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
